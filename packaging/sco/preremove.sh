# --- preremove: takes out what postinstall added, and what popper made here -----

# take_from FILE MARK LINE: MARK and LINE out of FILE, if postinstall put
# them there.  Status 0: taken out; 1: not there; 2: not written.
take_from() {
    if [ -n "$1" ] && has_mark "$ROOT$1" "$2"; then
        if take_lines "$ROOT$1" "$2" "$3"; then
            say "took '$3' out of $1"
            return 0
        fi
        return 2
    fi
    return 1
}

status=0
take_from "$INETD_CONF" "$INETD_MARK" "$INETD_LINE"
case $? in
0)
    if [ -z "$ROOT" ] && [ -x /usr/sbin/svccfg ] && /usr/bin/svcs "$SMF_SERVICE" >/dev/null 2>&1
    then
        /usr/sbin/svcadm disable -s "$SMF_SERVICE"
        /usr/sbin/svccfg delete -f "$SMF_SERVICE" || status=2
        rm -f "$SMF_MANIFEST"
    else
        reread inetd "$INETD_PIDS"
    fi
    ;;
2)  status=2 ;;
esac

take_from "$SYSLOG_CONF" "$SYSLOG_MARK" "$SYSLOG_LINE"
case $? in
0)  reread syslogd "$SYSLOGD_PIDS" ;;
2)  status=2 ;;
esac

# Bytecode and build-native's C core are not the package's files: without
# them gone pkgrm could not remove the directories.
if [ -d "$ROOT$LIBDIR" ]; then
    find "$ROOT$LIBDIR" -depth -name __pycache__ -type d -exec rm -rf {} \;
    for module in $NATIVE_MODULES; do          # _native/modules.py's, e.g. popper/_cpopper
        rm -f "$ROOT$LIBDIR/$module".*
    done
fi
exit $status
