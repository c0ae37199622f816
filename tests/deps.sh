#!/bin/sh
# Installs what the tests need: Debian packages (when root and missing) and a
# virtual environment with tox.  Called by `make check`.
set -e
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages the tests drive: the POP3 clients, the delivery agents,
# cwrap (fake passwd/shadow, PAM and root for the tests), strace (what the
# server does before it becomes the user), and the C toolchain with the
# crypt and PAM headers the cffi extensions are built with; rsyslog (LOCAL1
# through a real syslog daemon, started by tests/test_rsyslog.py itself);
# GNU cpio, bsdtar and checkbashisms, which check the SVR4 package.
PACKAGES="curl fetchmail getmail6 mpop procmail liblockfile-bin
          libnss-wrapper libpam-wrapper libuid-wrapper libpam-modules passwd strace
          gcc libcrypt-dev libpam0g-dev util-linux rsyslog
          cpio libarchive-tools devscripts"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deps: installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "deps: missing Debian packages:$missing (the tests that need them are skipped)"
    fi
fi

if [ ! -x "$VENV/bin/tox" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q tox
fi
