"""popper's command line: Qpopper 4's options, the SCO manual page's -a
and -M, and an optional listen address for standalone mode.

    popper [-a] [-b bulldir] [-B] [-c] [-C] [-d] [-D drac-host]
           [-e login_delay=nn,expire=nn] [-f config-file] [-F] [-k]
           [-K service] [-l 0-2] [-L lock-refresh] [-M] [-p 0-4] [-R] [-s]
           [-S] [-t trace-file] [-T timeout] [-u] [-U] [-v] [-y facility]
           [[ip][:port]]
    popper -v | --help

Options apply left to right: a later option overrides an earlier one and
the values a -f file before it set.  Without an address popper serves the
connection on fd 0/1 (inetd), or listens on the sockets it was handed
(LISTEN_FDS); with one it listens itself.  A listening socket on fd 0 is
refused: it is a mistaken set-up, and the greeting would go nowhere.
"""

import getopt
import os
import stat
import sys

from popper import __version__, privsep, server
from popper.log import LOG_ERR, LOG_WARNING, Log, UnsafeTraceFile, clean
from popper.protocol.lines import is_number
from popper.settings import ConfigError, Settings, facility, load_config_file

OPTSTRING = "ab:BcCdD:e:f:FkK:l:L:Mp:RsSt:T:uUvy:"

USAGE = ("Usage: {prog} [-a] [-b bulldir] [-B] [-c] [-C] [-d] [-D drac-host] "
         "[-e login_delay=nn,expire=nn] [-f config-file] [-F] [-k] [-K service] [-l 0-2] "
         "[-L lock refresh] [-M] [-p 0-4] [-R] [-s] [-S] [-t trace-file] [-T timeout] "
         "[-u] [-U] [-v] [-y facility] [[ip][:port]] ")

P_VALUES = ("Unrecognized -p value; 0 = default; 1 = never; 2 = always (fallback); "
            "3 = local only; 4 = TLS/SSL only")
L_VALUES = "Unrecognized -l value; 0 = default; 1 = stls; 2 = alternate-port"

HELP = ("Without an address, popper serves the connection on fd 0/1 (inetd), or the "
        "listening sockets it is handed (LISTEN_FDS); with one, it listens "
        "on it.  -v prints the version.  The manual page popper(8) has the rest.")


# Options without an argument: the setting each one sets, and to what.
SWITCHES = {
    "-a": ("allow_low_uid", True),
    "-B": ("bulldb_nonfatal", True),
    "-c": ("downcase_user", True),
    "-C": ("trim_domain", True),
    "-d": ("debug", True),
    "-F": ("fast_update", True),
    "-k": ("kerberos", True),
    "-R": ("reverse_lookup", False),
    "-s": ("statistics", True),
    "-S": ("server_mode", True),
    "-u": ("user_options", True),
    "-U": ("spool_options", True),
}

# Options whose argument is the setting as given.
ARGUMENTS = {"-b": "bulldir", "-D": "drac_host", "-K": "kerberos_service", "-t": "tracefile"}


class UsageError(Exception):
    """A bad command line; args[0] (if any) says what, then comes the usage text."""


class HelpWanted(Exception):
    """--help: the usage text on stdout, and exit 0."""


def _number(option: str, value: str, low: int = 0) -> int:
    if not is_number(value) or int(value) < low:
        raise UsageError("%s needs a whole number%s, not %r"
                         % (option, " of at least %d" % low if low else "", value))
    return int(value)


def _extensions(settings: Settings, value: str) -> None:
    """-e login_delay=nn,expire=nn (a name without =nn means never: -1)."""
    for item in value.split(","):
        name, eq, number = item.partition("=")
        name = name.strip().lower()
        if name not in ("login_delay", "expire"):
            raise UsageError("-e: unknown extension %r (login_delay, expire)" % name)
        seconds = _number("-e " + name, number.strip()) if eq else -1
        if name == "login_delay":
            settings.announce_login_delay = seconds
        else:
            settings.announce_expire = seconds


def parse(args: list):
    """(Settings, listen address or None) from the arguments after argv[0]."""
    settings = Settings()
    try:
        options, rest = getopt.gnu_getopt(args, OPTSTRING, ["help"])
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    for option, value in options:
        if option == "--help":
            raise HelpWanted()
        if option in SWITCHES:
            setattr(settings, *SWITCHES[option])
        elif option in ARGUMENTS:
            setattr(settings, ARGUMENTS[option], value)
        elif option == "-e":
            _extensions(settings, value)
        elif option == "-f":
            load_config_file(settings, value)
        elif option == "-l":
            if value not in ("0", "1", "2"):
                raise UsageError(L_VALUES)
            settings.tls_mode = int(value)
        elif option == "-L":
            settings.lock_refresh = _number("-L", value, 1)
        elif option == "-p":
            if value not in ("0", "1", "2", "3", "4"):
                raise UsageError(P_VALUES)
            settings.clear_text_password = int(value)
        elif option == "-T":
            settings.timeout = _number("-T", value)
        elif option == "-y":
            try:
                settings.log_facility = facility(value)
            except ConfigError as exc:
                raise UsageError("-y %s" % exc) from None
        # -M: SCO's "Ignored without error", for 5.0.0 and 5.0.2 compatibility;
        # -v: reserved, as in Qpopper ("popper -v" alone prints the version).
    if len(rest) > 1:
        raise UsageError("only one listen address, not %s" % " ".join(rest))
    return settings, (rest[0] if rest else None)


def check(settings: Settings) -> list:
    """Start-up refusals: what these settings ask for that cannot work."""
    problems = settings.not_built()
    try:
        privsep.login_identity(settings)
    except LookupError as exc:
        problems.append(str(exc))
    if settings.auto_delete and settings.announce_expire not in (None, 0):
        problems.append("EXPIRE must be 0 when AUTO_DELETE defined.")
    for directory, what, option in ((settings.spool_dir, "the spool directory", "spool-dir"),
                                    (settings.temp_dir, "the temporary drop directory",
                                     "temp-dir")):
        problem = _not_a_directory(directory, option)
        if problem:
            problems.append("%s %s %s" % (what, directory, problem))
    if settings.userdb:
        try:
            st = os.stat(settings.userdb)
        except OSError as exc:
            problems.append("the user database %s: %s" % (settings.userdb, exc.strerror))
        else:
            if st.st_mode & 0o022:
                problems.append("the user database %s may be changed by others (mode %04o): "
                                "chmod go-w it" % (settings.userdb, st.st_mode & 0o7777))
    return problems


def _not_a_directory(path, option: str):
    """Why path (the value of option) cannot be the directory it names, or
    None: noticed at start-up, not at the first login."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist: create it, or name another with set %s" % option
    except OSError as exc:
        return "cannot be reached: %s" % exc.strerror
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory: name one with set %s" % option
    return None


def warnings(settings: Settings) -> list:
    """Start-up warnings: what will keep logins from working, as far as can
    be told before the first one (popper starts anyway)."""
    return server.backend_problems(settings)


LISTENING_STDIN = (
    "fd 0 is a listening socket, not a connection: under inetd popper is a `nowait` "
    "service (systemd: Accept=yes), and it listens itself on the sockets LISTEN_FDS "
    "names (systemd: Accept=no, without StandardInput=socket) or on an address given "
    "as its argument")


def _stderr_is_the_client() -> bool:
    """Whether fd 2 is the connection itself (BSD inetd and xinetd hand the
    socket over as fd 0, 1 and 2): then nothing meant for a log goes there."""
    try:
        err, client = os.fstat(2), os.fstat(0)
    except OSError:
        return False
    return (stat.S_ISSOCK(err.st_mode)
            and (err.st_dev, err.st_ino) == (client.st_dev, client.st_ino))


def _tell(prog: str, settings: Settings, problems: list, priority: int = LOG_ERR,
          prefix: bool = True) -> None:
    """Say why popper will not start (or, at LOG_WARNING, what will not
    work): on stderr (after "prog: " unless prefix is false) unless that is
    the client, and in syslog, where an administrator looks when inetd
    started it -- through popper's own syslog client, which never waits for
    a daemon that is not reading."""
    log = Log(prog, settings.log_facility)
    to_stderr = not _stderr_is_the_client()
    for problem in problems:
        if to_stderr:
            try:
                # flush: before 3.9 a stderr that is no terminal is block-buffered,
                # and a session ends with os._exit, which drops the buffer
                print("%s: %s" % (prog, problem) if prefix else problem, file=sys.stderr,
                      flush=True)
            except OSError:
                to_stderr = False
        log.syslog.send(priority, clean(problem))
    log.close()


def _refuse(prog: str, settings: Settings, problems: list, prefix: bool = True) -> None:
    _tell(prog, settings, problems, LOG_ERR, prefix)


def main(argv: list = None) -> int:
    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) or "popper"
    args = argv[1:]
    if args[:1] in (["-v"], ["--v"]):
        print("Qpopper version %s (popper, inetd and standalone)" % __version__)
        return 0
    try:
        settings, address = parse(args)
    except HelpWanted:
        print(USAGE.format(prog=prog))
        print(HELP)
        return 0
    except UsageError as exc:
        if exc.args and exc.args[0]:
            print("%s: %s" % (prog, exc.args[0]), file=sys.stderr)
        print(USAGE.format(prog=prog), file=sys.stderr)
        return 1
    except ConfigError as exc:
        print("%s: %s" % (prog, exc), file=sys.stderr)
        return 1
    problems = check(settings)
    if problems:
        _refuse(prog, settings, problems)
        return 1
    _tell(prog, settings, warnings(settings), LOG_WARNING)
    os.umask(0o077)
    try:
        log = Log(prog, settings.log_facility, settings.debug, settings.tracefile,
                  settings.debug_build)
    except UnsafeTraceFile as exc:
        _refuse(prog, settings, [exc.args[0]])
        return 1
    except OSError as exc:
        _refuse(prog, settings, ['Unable to open trace file "%s": %s (%d)'
                                 % (settings.tracefile, exc.strerror, exc.errno)], prefix=False)
        return 1
    from popper.transport import inetd, standalone
    if address is None:
        try:
            listeners = standalone.inherited_listeners()
        except OSError as exc:
            print("%s: LISTEN_FDS: %s" % (prog, exc.strerror), file=sys.stderr)
            return 1
        if not listeners:
            if standalone.stdin_is_listening():
                _refuse(prog, settings, [LISTENING_STDIN])
                return 1
            return inetd.serve(settings, log)
    else:
        try:
            listeners = [standalone.listen(*standalone.parse_address(address))]
        except standalone.AddressError as exc:
            print("%s: %s" % (prog, exc.args[0]), file=sys.stderr)
            return 1
    pid_file = None
    if settings.pid_file:
        try:
            pid_file = standalone.PidFile(settings.pid_file)
        except standalone.PidFileError as exc:
            _refuse(prog, settings, [exc.args[0]])
            return 1
    try:
        return standalone.serve(listeners, settings, log, pid_file)
    finally:
        if pid_file is not None:
            pid_file.close()


if __name__ == "__main__":
    sys.exit(main())
