#!/bin/sh
# What the benchmarks need beyond the tests' packages (tests/deps.sh), and
# that make check must not depend on: Dovecot's POP3 server, which
# bench/tls.py runs with a private configuration of its own beside popper,
# and openssl for its test CA.  As root on Debian, installed when missing.
# Debian's package starts the system's Dovecot where services are started
# (policy-rc.d allowing); bench/tls.py does not use it (its own base_dir and
# ports): stop it if you do not want it (systemctl disable --now dovecot).
set -e
PACKAGES="dovecot-pop3d openssl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "bench deps: missing Debian packages:$missing (as root: apt-get install$missing)"
    exit 1
fi
