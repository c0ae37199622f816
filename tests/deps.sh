#!/bin/sh
# Installs what the tests need: Debian packages (when root and missing) and a
# virtual environment with tox.  Called by `make check` and (DEPS=build) `make demo`.
set -e
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages that building popper needs (make demo: DEPS=build): the C
# toolchain with the Python, crypt and PAM headers the cffi extensions are
# built with, and python3-venv for .venv.
BUILD="gcc libcrypt-dev libpam0g-dev python3 python3-venv python3-dev"
# ... and that the tests drive (make check): the POP3 clients, the delivery
# agents, cwrap (fake passwd/shadow, PAM and root for the tests), strace
# (what the server does before it becomes the user), rsyslog (LOCAL1 through
# a real syslog daemon, started by tests/test_rsyslog.py itself); GNU cpio,
# bsdtar and checkbashisms, which check the SVR4 package;
# systemd-socket-activate and xinetd (the shipped units and xinetd file),
# python3-cffi (make install with Debian's own python3).
PACKAGES="$BUILD curl fetchmail getmail6 mpop procmail liblockfile-bin
          libnss-wrapper libpam-wrapper libuid-wrapper libpam-modules passwd strace
          util-linux rsyslog cpio libarchive-tools devscripts systemd xinetd python3-cffi"
if [ "$DEPS" = build ]; then
    PACKAGES=$BUILD
fi
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
        echo "deps: missing Debian packages:$missing (as root: apt-get install$missing);"
        echo "      without python3-venv and python3-dev neither make demo nor make check can"
        echo "      build popper; without the others the tests that need them are skipped"
    fi
fi

if [ ! -x "$VENV/bin/tox" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q tox
fi
