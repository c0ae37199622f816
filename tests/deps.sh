#!/bin/sh
# Installs what the tests need: Debian packages (when root and missing), a
# virtual environment with tox, and the Python 3.6 and 3.13 interpreters.
# Called by `make check` and (DEPS=build: the packages building needs, and
# tox's virtual environment) `make demo`.
set -e
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

# Debian packages that building popper needs (make demo: DEPS=build): the C
# toolchain with the Python, crypt and PAM headers the cffi extensions are
# built with, python3-venv for .venv, and openssl (make demo's certificate).
BUILD="gcc libcrypt-dev libpam0g-dev python3 python3-venv python3-dev openssl"
# ... and that the tests drive (make check): the POP3 clients, the delivery
# agents, cwrap (fake passwd/shadow, PAM and root for the tests), strace
# (what the server does before it becomes the user), rsyslog (LOCAL1 through
# a real syslog daemon, started by tests/test_rsyslog.py itself); GNU cpio,
# bsdtar and checkbashisms, which check the SVR4 package;
# systemd-socket-activate and xinetd (the shipped units and xinetd file),
# python3-cffi (make install with Debian's own python3); mutt (the TLS
# tests' client with Debian's default configuration).
PACKAGES="$BUILD curl fetchmail getmail6 mpop msmtp mutt procmail liblockfile-bin
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

# tox, with the last virtualenv that can make Python 3.6 environments (20.22
# dropped 3.6) and the newest tox that works with it; reinstalled when the
# pins change.
TOOLS="tox==4.5.1.1 virtualenv==20.21.1"
if [ "$(cat "$VENV/.tools" 2>/dev/null)" != "$TOOLS" ]; then
    [ -x "$VENV/bin/pip" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q $TOOLS
    echo "$TOOLS" > "$VENV/.tools"
fi

# The interpreters of the py36 (the oldest the server runs on, SCO's) and
# py313 environments: pyenv's, or on PATH, or built by pyenv when it is
# there.  Named in $VENV/pythons, which make check puts first on PATH;
# $VENV/envs names the tox environments make check runs -- without the one
# whose interpreter cannot be had, said here.
PYENV=$(command -v pyenv || echo "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")
find_python() {
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python"$1" \
                     "$(command -v python"$1")"; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys, venv' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
}
[ "$DEPS" = build ] && exit 0
rm -rf "$VENV/pythons"
mkdir -p "$VENV/pythons"
envs=native,pure
for version in 3.6 3.13; do
    python=$(find_python $version)
    env=py$(echo $version | tr -d .)
    why="no pyenv to build it"
    if [ -z "$python" ] && [ -x "$PYENV" ]; then
        echo "deps: building Python $version with pyenv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                make gcc libssl-dev zlib1g-dev libbz2-dev libreadline-dev libsqlite3-dev \
                libffi-dev liblzma-dev >/dev/null || true
        fi
        "$PYENV" install -s "$("$PYENV" latest -k $version)" >"$VENV/pyenv-$version.log" 2>&1 ||
            why="pyenv could not build it: $VENV/pyenv-$version.log says why"
        python=$(find_python $version)
    fi
    if [ -n "$python" ]; then
        # A script, not a link: through a link 3.6 reports the link as its
        # sys.executable, and virtualenv cannot find its installation.
        printf '#!/bin/sh\nexec "%s" "$@"\n' "$python" >"$VENV/pythons/python$version"
        chmod +x "$VENV/pythons/python$version"
        envs="$envs,$env"
    else
        echo "deps: no Python $version here ($why): make check skips $env"
    fi
done
echo "$envs" > "$VENV/envs"
