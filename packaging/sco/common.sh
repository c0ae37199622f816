
# --- common.sh: what postinstall and preremove share ---------------------------
# Bourne shell for every target (OpenServer 5.0.7 and 6, UnixWare 7, Solaris 10
# and 11.4, illumos): backquotes, no local, no "if !", signal numbers.  Every
# file is taken under $PKG_INSTALL_ROOT (pkgadd -R), so that the scripts can
# run on a scratch root.

ROOT=${PKG_INSTALL_ROOT:-}
if [ "$ROOT" = / ]; then
    ROOT=
fi

INETD_LINE='pop3	stream	tcp	nowait	root	/etc/popper	popper'
INETD_MARK='# popper package: the next line is its pop3 service; pkgrm removes both'
SYSLOG_MARK='# popper package: the next line logs its LOCAL1 messages; pkgrm removes both'
# The daemons' pid files: OpenServer, UnixWare (/etc/saf/inetd/_pid under
# SAF), Solaris (/etc/syslog.pid), BSD and Linux inetds and syslogds.
INETD_PIDS='/etc/inetd.pid /etc/saf/inetd/_pid /var/run/inetd.pid /run/inetd.pid'
SYSLOGD_PIDS='/etc/syslog.pid /var/run/syslog.pid /var/run/syslogd.pid /run/syslogd.pid /run/rsyslogd.pid'
# Solaris 10 and later, illumos: inetd is an SMF service, inetconv turns the
# line into network/pop3/tcp and its manifest.
SMF_SERVICE=network/pop3/tcp
SMF_MANIFEST=/var/svc/manifest/network/pop3-tcp.xml

say() {
    echo "popper: $*"
}

# first PATH...: the first of these files that exists under $ROOT
first() {
    for f in "$@"; do
        if [ -f "$ROOT$f" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

INETD_CONF=`first /etc/inet/inetd.conf /etc/inetd.conf`
SYSLOG_CONF=`first /etc/syslog.conf`
# The manual page's log file; Solaris and illumos link /usr/adm to /var/adm.
if [ -d "$ROOT/usr/adm" ]; then
    SYSLOG_FILE=/usr/adm/syslog
else
    SYSLOG_FILE=/var/adm/syslog
fi
SYSLOG_LINE="local1.debug	$SYSLOG_FILE"

# has_mark FILE MARK: FILE holds the package's MARK line
has_mark() {
    grep "^$2\$" "$1" >/dev/null 2>&1
}

# add_lines FILE MARK LINE: MARK and LINE go at the top of FILE, so that
# taking them off again gives back its bytes, however it ends.  Written
# through FILE (cat, not mv): a symbolic link (Solaris's /etc/inetd.conf),
# its owner and its mode stay as they are.
add_lines() {
    tmp="$1.popper$$"
    rm -f "$tmp"
    if { echo "$2"; echo "$3"; cat "$1"; } > "$tmp" && cat "$tmp" > "$1"; then
        rm -f "$tmp"
        return 0
    fi
    rm -f "$tmp"
    say "could not write $1"
    return 1
}

# take_lines FILE MARK LINE: take MARK and LINE off the top of FILE, byte
# for byte (dd skips exactly their length)
take_lines() {
    top=`sed -n 1p "$1"`
    next=`sed -n 2p "$1"`
    if [ "$top" != "$2" ] || [ "$next" != "$3" ]; then
        say "$1 was edited since: take out the line '$2' and the one after it yourself"
        return 1
    fi
    n=`{ echo "$2"; echo "$3"; } | wc -c | sed 's/[^0-9]//g'`
    tmp="$1.popper$$"
    rm -f "$tmp"
    if dd if="$1" of="$tmp" bs=$n skip=1 2>/dev/null && cat "$tmp" > "$1"; then
        rm -f "$tmp"
        return 0
    fi
    rm -f "$tmp"
    say "could not write $1"
    return 1
}

# reread NAME PIDFILES: SIGHUP to the daemon NAME by the first of its pid
# files (under $ROOT) that names a running NAME -- never by its name alone
reread() {
    for f in $2; do
        if [ -f "$ROOT$f" ]; then
            pid=`sed -n 1p "$ROOT$f"`
            pid=`echo $pid`
            case "$pid" in
            '' | *[!0-9]*)
                say "$f does not hold a process id"
                ;;
            *)
                if ps -p "$pid" 2>/dev/null | grep "$1" >/dev/null; then
                    if kill -1 "$pid"; then         # SIGHUP; SVR3's kill takes no names
                        say "told $1 (pid $pid, from $f) to read its configuration again"
                        return 0
                    fi
                else
                    say "$f names process $pid, which is no $1"
                fi
                ;;
            esac
        fi
    done
    say "found no running $1 by its pid file ($2): send it a SIGHUP yourself"
    return 1
}

