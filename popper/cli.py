"""popper's command line: Qpopper 4's options, the SCO manual page's -a
and -M, and an optional listen address for standalone mode.

    popper [-a] [-b bulldir] [-B] [-c] [-C] [-d] [-D drac-host]
           [-e login_delay=nn,expire=nn] [-f config-file] [-F] [-k]
           [-K service] [-l 0-2] [-L lock-refresh] [-M] [-p 0-4] [-R] [-s]
           [-S] [-t trace-file] [-T timeout] [-u] [-U] [-v] [-y facility]
           [[ip][:port]]
    popper -v | --help

Options apply left to right: a later option overrides an earlier one and
the values a -f file before it set.  Numbers are read as Qpopper's atoi()
reads them ("12x" is 12, "abc" is 0).  Without an address popper serves
the connection on fd 0/1 (inetd), or listens on the sockets it was handed
(LISTEN_FDS); with one it listens itself.  A word that is neither an
option nor an address is refused, as is an address while fd 0 is a
client's connection: either would otherwise decide the mode unnoticed.

Whatever stops popper at start-up is said on stderr (unless stderr is the
client's connection), logged at LOG_ERR with the ident basename(argv[0]),
as Qpopper's openlog() names it, and, under inetd, answered to the client
with one -ERR line (inetd.UNAVAILABLE).
"""

import os
import stat
import sys

from popper import __version__, greeting
from popper.log import LOG_ERR, LOG_WARNING, Log, UnsafeTraceFile, clean
from popper.settings import ConfigError, Settings, facility, load_config_file, tls_configured
from popper.transport import inetd

OPTSTRING = "ab:BcCdD:e:f:FkK:l:L:Mp:RsSt:T:uUvy:"

# The Qpopper whose sources popper follows (its pop_init.c, popper.c, ...).
QPOPPER_VERSION = "4.0.5"

# Qpopper prints "Qpopper version 4.0.5 (non-standalone)": scripts that grep
# for "Qpopper version" find the version popper behaves as.
VERSION = ("popper version %s (Qpopper version %s compatible, inetd and standalone)"
           % (__version__, QPOPPER_VERSION))

USAGE = ("Usage: {prog} [-a] [-b bulldir] [-B] [-c] [-C] [-d] [-D drac-host] "
         "[-e login_delay=nn,expire=nn] [-f config-file] [-F] [-k] [-K service] [-l 0-2] "
         "[-L lock refresh] [-M] [-p 0-4] [-R] [-s] [-S] [-t trace-file] [-T timeout] "
         "[-u] [-U] [-v] [-y facility] [[ip][:port]] ")

P_VALUES = ("Unrecognized -p value; 0 = default; 1 = never; 2 = always (fallback); "
            "3 = local only; 4 = TLS/SSL only")
L_VALUES = "Unrecognized -l value; 0 = default; 1 = stls; 2 = alternate-port"

# -p 4 (clear-text-password tls) without TLS configured: nobody could log
# in with a password.  Qpopper's pop_init.c text; a start-up refusal
# (check()), since a later -f file may set tls-support.
P4_WITHOUT_TLS = "Can't set -p to 4 without enabling TLS/SSL"
# -p 1 (clear-text-password never) without APOP: nobody could log in.  A
# start-up refusal (check()), since a later -f file may name an apop-file.
P1_WITHOUT_APOP = "Can't set -p to 1 without enabling APOP"

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


INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1
C_SPACE = " \t\n\v\f\r"


def atoi(text: str) -> int:
    """C's atoi(), as Qpopper reads the numbers of -T, -L, -l, -p and -e:
    white space, a sign, and the digits up to the first other character;
    none is 0 ("abc" -> 0, "12x" -> 12, "-1" -> -1).  A number beyond an
    int is clamped, as strtol() with SCO's 32-bit long does."""
    rest = text.lstrip(C_SPACE)
    sign = -1 if rest[:1] == "-" else 1
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    digits = rest[:len(rest) - len(rest.lstrip("0123456789"))].lstrip("0") or "0"
    if len(digits) > 10:                        # and int() need not read a huge one
        return INT_MIN if sign < 0 else INT_MAX
    return max(INT_MIN, min(INT_MAX, sign * int(digits)))


def _extensions(settings: Settings, value: str) -> None:
    """-e login_delay=nn,expire=nn: nn by atoi (-1 is NEVER); a name
    without =nn is -1 too."""
    for item in value.split(","):
        name, eq, number = item.partition("=")
        name = name.strip().lower()
        if name not in ("login_delay", "expire"):
            raise UsageError("-e: unknown extension %r (login_delay, expire)" % name)
        seconds = atoi(number) if eq else -1
        if name == "login_delay":
            settings.announce_login_delay = seconds
        else:
            settings.announce_expire = seconds


def _address(word: str) -> str:
    """word, if it is meant as a listen address: Qpopper's standalone
    build takes its first argument as one when it starts with ":" or a
    digit ("8110", ":8110", "199.46.50.7:8110"); popper adds "[v6]:port",
    and any word with a ":" (standalone.parse_address says what is wrong)."""
    if not word or (word[0] not in ":[0123456789" and ":" not in word):
        raise UsageError("unexpected argument %r: popper takes options and, to listen by "
                         "itself, one address [ip][:port]" % word)
    return word


def gnu_getopt(args: list, optstring: str):
    """(options, the other words): the stdlib's getopt.gnu_getopt(args,
    optstring, ["help"]) with its texts, which would load gettext and re
    before the greeting (docs/architecture.md, "Start-up").  Options may
    follow other words unless POSIXLY_CORRECT is set; "--" ends them."""
    options, rest, args = [], [], list(args)
    while args:
        word = args.pop(0)
        if word == "--":
            rest += args
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if not name or not "help".startswith(name):
                raise UsageError("option --%s not recognized" % name)
            if eq:
                raise UsageError("option --help must not have an argument")
            options.append(("--help", ""))
        elif word.startswith("-") and word != "-":
            letters = word[1:]
            while letters:
                letter, letters = letters[0], letters[1:]
                at = optstring.find(letter) if letter != ":" else -1
                if at < 0:
                    raise UsageError("option -%s not recognized" % letter)
                value = ""
                if optstring[at + 1:at + 2] == ":":
                    if not letters:
                        if not args:
                            raise UsageError("option -%s requires argument" % letter)
                        letters = args.pop(0)
                    value, letters = letters, ""
                options.append(("-" + letter, value))
        elif os.environ.get("POSIXLY_CORRECT"):
            rest += [word] + args
            break
        else:
            rest.append(word)
    return options, rest


def parse(args: list, settings: Settings = None):
    """(Settings, listen address or None) from the arguments after argv[0].
    settings (new ones if None) is changed as the options are read, so that
    on an error it holds what came before (the log facility to log it at)."""
    settings = Settings() if settings is None else settings
    options, rest = gnu_getopt(args, OPTSTRING)
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
            settings.tls_mode = atoi(value)
            if settings.tls_mode not in (0, 1, 2):
                raise UsageError(L_VALUES)
        elif option == "-L":
            # Qpopper tests "message number % n == 0": a negative n works as
            # its absolute value, and 0 divides by zero (SIGFPE at the first
            # login with mail).
            lock_refresh = abs(atoi(value))
            if not lock_refresh:
                raise UsageError("-L %s is 0 messages (Qpopper would divide by it): give the "
                                 "number of messages between lock refreshes, at least 1"
                                 % value)
            settings.lock_refresh = lock_refresh
        elif option == "-p":
            settings.clear_text_password = atoi(value)
            if settings.clear_text_password not in (0, 1, 2, 3, 4):
                raise UsageError(P_VALUES)
        elif option == "-T":
            # Qpopper's alarm(T): 0 sets none, and a negative T is an
            # unsigned number of seconds beyond any session: no limit either.
            settings.timeout = max(0, atoi(value))
        elif option == "-y":
            try:
                settings.log_facility = facility(value)
            except ConfigError:
                raise UsageError("Error setting '-y' to %s" % value) from None
        # -M: SCO's "Ignored without error", for 5.0.0 and 5.0.2 compatibility;
        # -v: reserved, as in Qpopper ("popper -v" alone prints the version).
    addresses = [_address(word) for word in rest]
    if len(addresses) > 1:
        raise UsageError("only one listen address, not %s" % " ".join(rest))
    return settings, (addresses[0] if addresses else None)


def check(settings: Settings) -> list:
    """Start-up refusals: what these settings ask for that cannot work."""
    problems = settings.not_built()
    try:
        greeting.login_identity(settings)
    except LookupError as exc:
        problems.append(str(exc))
    if settings.clear_text_password == 1 and not settings.apop_db:
        problems.append(P1_WITHOUT_APOP)
    if settings.clear_text_password == 4 and not tls_configured(settings):
        problems.append(P4_WITHOUT_TLS)
    if settings.apop_db:
        problems += _apop_problems(settings)
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


def _apop_problems(settings: Settings) -> list:
    """The POP administrator must be a user, and not login-user (whose
    login process would then have pop.auth's owner's rights)."""
    from popper.auth import unixdb
    entry = unixdb.getpwnam(settings.popuid)
    if entry is None:
        return ["the POP administrator %s (set popuid, configure.py --with-popuid) is not a "
                "user: APOP's database %s must be that user's" % (settings.popuid,
                                                                  settings.apop_db)]
    if settings.login_user and settings.login_user == settings.popuid:
        return ["the POP administrator %s must not be login-user: the login process would "
                "have the rights of pop.auth's owner" % settings.popuid]
    return []


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
    problems = settings.backend_problems()
    if tls_configured(settings):
        from popper.transport import tls
        problems += tls.warnings(settings)
    if not settings.apop_db or _apop_problems(settings):
        return problems
    from popper.auth import apop
    if os.path.lexists(apop.names(settings.apop_db)["dir"]):        # none: no APOP users
        from popper.auth import unixdb
        why = apop.usable(settings.apop_db, unixdb.getpwnam(settings.popuid).uid)
        if why:
            problems.append("APOP cannot be used until it is fixed (the greeting carries no "
                            "timestamp): %s" % why)
    return problems


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
          prefix: bool = True, usage: bool = False) -> None:
    """Say why popper will not start (or, at LOG_WARNING, what will not
    work): on stderr (after "prog: " unless prefix is false, then the usage
    text if usage) unless that is the client, and in syslog, where an
    administrator looks when inetd started it -- through popper's own
    syslog client, which never waits for a daemon that is not reading."""
    if not problems and not usage:
        return
    log = Log(prog, settings.log_facility)
    to_stderr = not _stderr_is_the_client()
    lines = ["%s: %s" % (prog, problem) if prefix else problem for problem in problems]
    if usage:
        lines.append(USAGE.format(prog=prog))
    if lines and to_stderr:
        try:
            # flush: before 3.9 a stderr that is no terminal is block-buffered,
            # and a session ends with os._exit, which drops the buffer
            print("\n".join(lines), file=sys.stderr, flush=True)
        except OSError:
            pass
    for problem in problems:
        log.syslog.send(priority, clean(problem))
    log.close()


def refuse(prog: str, settings: Settings, problems: list, prefix: bool = True,
           usage: bool = False) -> int:
    """popper does not start: the problems on stderr and in syslog at
    LOG_ERR (_tell), and a client on fd 0 told so in one line.  Returns
    the exit status, 1."""
    _tell(prog, settings, problems, LOG_ERR, prefix, usage)
    if inetd.has_client():
        inetd.refuse()
    return 1


def main(argv: list = None) -> int:
    argv = sys.argv if argv is None else argv
    # The ident, as Qpopper's pop_init.c makes it: argv[0] after its last "/".
    prog = os.path.basename(argv[0]) or "popper"
    args = argv[1:]
    if args and args[0].startswith(("-v", "--v")):     # Qpopper's main.c: strncmp
        print(VERSION)
        return 0
    settings = Settings()
    try:
        settings, address = parse(args, settings)
    except HelpWanted:
        print(USAGE.format(prog=prog))
        print(HELP)
        return 0
    except UsageError as exc:
        return refuse(prog, settings, [exc.args[0] if exc.args and exc.args[0]
                                       else "bad command line"], usage=True)
    except ConfigError as exc:
        return refuse(prog, settings, [str(exc)])
    problems = check(settings)
    if address is not None and inetd.has_client():
        problems.append("the argument %s asks popper to listen on it, but fd 0 is a client's "
                        "connection (inetd): take it out of the server's arguments" % address)
    if problems:
        return refuse(prog, settings, problems)
    credentials = None
    if tls_configured(settings):
        from popper.transport import tls
        try:        # as root: the key is root's to read; before any fork
            credentials = tls.Credentials(settings)
        except tls.TLSConfigError as exc:
            return refuse(prog, settings, [exc.args[0]])
    _tell(prog, settings, warnings(settings), LOG_WARNING)
    os.umask(0o077)
    try:
        log = Log(prog, settings.log_facility, settings.debug, settings.tracefile,
                  settings.debug_build)
    except UnsafeTraceFile as exc:
        return refuse(prog, settings, [exc.args[0]])
    except OSError as exc:
        return refuse(prog, settings, ['Unable to open trace file "%s": %s (%d)'
                                       % (settings.tracefile, exc.strerror, exc.errno)],
                      prefix=False)
    if address is None:
        listeners = []
        if os.environ.get("LISTEN_PID") == str(os.getpid()):    # sockets systemd handed over
            from popper.transport import standalone
            try:
                listeners = standalone.inherited_listeners()
            except OSError as exc:
                return refuse(prog, settings, ["LISTEN_FDS: %s" % exc.strerror])
        if not listeners:
            if inetd.stdin_is_listening():
                return refuse(prog, settings, [LISTENING_STDIN])
            return inetd.serve(settings, log, credentials)
    # Standalone: what sessions need is loaded once, in the listener,
    # before it listens; each session inherits it.
    from popper import server
    from popper.transport import standalone
    server.load_session(settings, listener=True)
    # The pid file is written before popper's own listener takes a
    # connection: whoever reaches the port finds this server's pid there.
    pid_file = None
    if settings.pid_file:
        try:
            pid_file = standalone.PidFile(settings.pid_file)
        except standalone.PidFileError as exc:
            return refuse(prog, settings, [exc.args[0]])
    try:
        if address is not None:
            try:
                listeners = [standalone.bind(*standalone.parse_address(address))]
            except standalone.AddressError as exc:
                return refuse(prog, settings, [exc.args[0]])
        return standalone.serve(listeners, settings, log, pid_file, credentials)
    finally:
        if pid_file is not None:
            pid_file.close()


if __name__ == "__main__":
    sys.exit(main())
