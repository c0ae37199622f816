#!/bin/sh
# What the benchmarks need beyond the tests' packages (tests/deps.sh), and
# that make check must not depend on: Dovecot's POP3 server, which
# bench/tls.py and bench/harness.py run with a private configuration of
# their own beside popper, openssl for tls.py's test CA, and popa3d, which
# bench/harness.py runs under systemd-socket-activate --inetd on loopback.
# As root on Debian, installed when missing.
#
# Debian's popa3d and dovecot-pop3d conflict (both provide pop3-server;
# installing one removes the other), so popa3d is not installed as a
# package: its .deb is fetched with apt-get download and unpacked into
# bench/out/popa3d/, and what its postinst would make is made here: the
# system user popa3d (it drops to it before the login) and its chroot
# /var/lib/popa3d.  It authenticates with PAM as service "popa3d" (Debian's
# /etc/pam.d/other when its own file is missing: the same common-auth).
# popa3d serves only real users (the system's passwd and shadow, its mail
# in /var/mail/<user>), so bench/harness.py's users are made here, once,
# with the harness's password and its uid/gid 4242 (group popper-bench):
# "bench", whose mailbox the harness puts in /var/mail/bench for the run,
# and pb000 ... pb199, the many clients at once (no mail).
# Debian's dovecot-pop3d starts the system's Dovecot where services are
# started (policy-rc.d allowing); the benchmarks do not use it (their own
# base_dir and ports): stop it if you do not want it (systemctl disable --now dovecot).
set -e
here=$(cd "$(dirname "$0")" && pwd)
PACKAGES="dovecot-pop3d openssl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
popa3d="$here/out/popa3d/usr/sbin/popa3d"
USERS="bench $(seq -f 'pb%03g' 0 199)"
[ -z "$missing" ] && [ -x "$popa3d" ] && [ -d /var/lib/popa3d ] && getent passwd popa3d >/dev/null \
    && getent passwd pb199 >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "bench deps: as root on Debian: apt-get install$missing; popa3d unpacked into $here/out/popa3d"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$missing" ]; then
    echo "bench deps: installing$missing"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -x "$popa3d" ]; then
    echo "bench deps: popa3d into $here/out/popa3d"
    mkdir -p "$here/out/popa3d"
    (cd "$here/out" && rm -f popa3d_*.deb && apt-get download -q popa3d >/dev/null)
    dpkg-deb -x "$here"/out/popa3d_*.deb "$here/out/popa3d"
    rm -f "$here"/out/popa3d_*.deb
fi
getent passwd popa3d >/dev/null || useradd --system --user-group --home-dir /var/lib/popa3d \
    --no-create-home --shell /usr/sbin/nologin popa3d
mkdir -p /var/lib/popa3d
chmod 755 /var/lib/popa3d
getent group 4242 >/dev/null || groupadd -g 4242 popper-bench
new=""
for u in $USERS; do
    getent passwd "$u" >/dev/null || new="$new$u:x:4242:4242::/:/usr/sbin/nologin
"
done
if [ -n "$new" ]; then
    echo "bench deps: the benchmark's system users (uid 4242): bench, pb000 ... pb199"
    printf '%s' "$new" | newusers
    for u in $USERS; do echo "$u:bench-password"; done | chpasswd -c SHA512   # as the harness's own user database
fi
