# --- postinstall: popper's line in inetd.conf, its log in syslog.conf ----------
# Run twice, it changes nothing the second time; preremove undoes it.

# add_to FILE MARK LINE PATTERN WHAT: MARK and LINE into FILE, unless they
# are there or FILE has a WHAT line of its own (PATTERN, for grep).  Status
# 0: added; 1: there already; 2: not written; 3: FILE has its own.
add_to() {
    if [ -z "$1" ]; then
        say "no configuration file for $5 here: give it '$3' yourself"
        return 1
    elif has_mark "$ROOT$1" "$2"; then
        say "$1 has popper's $5 line already"
        return 1
    elif grep "$4" "$ROOT$1" >/dev/null; then
        say "$1 has a $5 line of its own, left as it is"
        return 3
    elif add_lines "$ROOT$1" "$2" "$3"; then
        say "added '$3' to $1"
        return 0
    fi
    return 2
}

status=0
add_to "$INETD_CONF" "$INETD_MARK" "$INETD_LINE" '^[ 	]*pop3[ 	]' pop3
case $? in
0)
    if [ -z "$ROOT" ] && [ -x /usr/sbin/inetconv ]; then
        echo "$INETD_LINE" > "$LIBDIR/pop3.inetd"
        /usr/sbin/inetconv -f -i "$LIBDIR/pop3.inetd" || status=2
        rm -f "$LIBDIR/pop3.inetd"
    else
        reread inetd "$INETD_PIDS"
    fi
    ;;
2)  status=2 ;;
3)  say "make that pop3 service run /etc/popper" ;;
esac

add_to "$SYSLOG_CONF" "$SYSLOG_MARK" "$SYSLOG_LINE" '^[^#]*local1\.' local1
case $? in
0)
    # Solaris's syslogd writes only to a file that exists.
    if [ ! -f "$ROOT$SYSLOG_FILE" ] && { : >> "$ROOT$SYSLOG_FILE"; } 2>/dev/null; then
        chmod 640 "$ROOT$SYSLOG_FILE"
    fi
    reread syslogd "$SYSLOGD_PIDS"
    ;;
2)  status=2 ;;
esac

if [ ! -x "$ROOT$PYTHON" ]; then
    say "$PYTHON is missing, and /etc/popper runs with it: install Python 3.6 or newer" \
        "there, or build the package for yours (make package PKG_PYTHON=...)"
fi
if [ ! -d "$ROOT$SPOOL_DIR" ]; then
    say "the spool directory $SPOOL_DIR is missing: create it, or build the package" \
        "for your system's (make package PKG_SPOOL_DIR=/var/mail on Solaris and illumos)"
fi
say "with a C compiler and cffi, $LIBDIR/build-native builds the optional C core"
exit $status
