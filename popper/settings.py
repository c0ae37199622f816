"""popper's settings: compiled-in defaults, then -f config files, then the
command line, each overriding the one before (Qpopper's order).

The compiled-in defaults come from popper/_settings.py, which configure.py
writes.  The config file syntax is Qpopper's (qpopper-behaviour.md 2.3):

    # a comment
    set spool-dir = /var/mail
    set statistics            (a boolean, true)
    reset update-on-abort     (a boolean, false)
    set tracefile = "/var/log/popper.trace"
"""

import os

try:
    from popper import _settings as compiled
except ImportError:                                  # pragma: no cover
    raise SystemExit("popper is not configured: run ./configure.py first") from None

FACILITIES = ("mail", "daemon", "user", "local0", "local1", "local2", "local3",
              "local4", "local5", "local6", "local7")

# -p and clear-text-password: who may send a password in clear text.
CLEAR_TEXT = {"default": 0, "never": 1, "always": 2, "local": 3, "tls": 4, "ssl": 4}


class ConfigError(Exception):
    """A bad config file line or command-line value; the message says which."""


class Settings:
    """Everything a session needs to know, with the compiled-in defaults."""

    def __init__(self):
        self.spool_dir = compiled.SPOOL_DIR
        self.temp_dir = compiled.TEMP_DIR            # None: the spool directory
        self.server_mode = compiled.SERVER_MODE
        self.fast_update = False
        self.bulldir = compiled.BULLDIR
        self.bulldb = compiled.BULLDB
        self.max_bulletins = compiled.NEWBULLCNT
        self.auto_delete = compiled.AUTO_DELETE
        self.update_on_abort = compiled.UPDATE_ON_ABORT
        self.keep_temp_drop = compiled.KEEP_TEMP_DROP
        self.update_status_headers = compiled.UPDATE_STATUS_HEADERS
        self.old_style_uid = compiled.OLD_STYLE_UID
        self.log_facility = compiled.LOG_FACILITY[4:].lower()
        self.log_login = compiled.LOG_LOGIN
        self.debug_build = compiled.DEBUG
        self.shy = compiled.SHY
        self.locking = compiled.LOCKING
        self.uw_kludge = compiled.UW_KLUDGE
        self.apop_db = compiled.APOP_DB
        self.pam_service = compiled.PAM_SERVICE
        self.check_password_expired = True
        self.auth_file = None                        # only these users may log in
        self.nonauth_file = None                     # these users may not
        self.mail_command = compiled.MAIL_COMMAND
        self.timeout = compiled.TIMEOUT
        self.debug = False
        self.statistics = False
        self.tracefile = None
        self.userdb = None
        self.auth_fail_delay = 10
        self.allow_low_uid = False                   # -a
        self.downcase_user = False                   # -c
        self.trim_domain = False                     # -C
        self.reverse_lookup = True                   # -R turns it off
        self.announce_login_delay = None             # -e login_delay=n; -1 never
        self.announce_expire = None                  # -e expire=n; -1 NEVER
        self.clear_text_password = 0                 # -p
        self.lock_refresh = 5000                     # -L
        self.spool_lock_wait = 10                    # seconds; QUIT waits three times as long
        self.tls_mode = 0                            # -l
        self.kerberos = False                        # -k
        self.kerberos_service = None                 # -K
        self.user_options = False                    # -u
        self.spool_options = False                   # -U
        self.drac_host = None                        # -D
        self.bulldb_nonfatal = False                 # -B
        # Hostile clients: deadlines and limits (docs/popper.8, LIMITS).
        self.login_user = compiled.LOGIN_USER        # who reads the client before login
        self.write_timeout = None                    # seconds; None: the same as -T
        self.login_timeout = 600                     # seconds a session may take to log in
        self.max_sessions = 200                      # standalone: 0 = unlimited
        self.max_sessions_per_address = 20
        self.max_connections_per_second = 10         # new connections per address
        self.pid_file = None                         # standalone: where its pid is kept

    @property
    def temp_drop_dir(self) -> str:
        return self.temp_dir or self.spool_dir

    def not_built(self) -> list:
        """What these settings ask for that this popper does not have yet."""
        missing = []
        for wanted, what in (
                (self.fast_update, "-F: fast update (a server-mode feature)"),
                (self.bulldir, "-b / bulldir / --enable-bulletins: the bulletin feature"),
                (self.bulldb is not None, "--enable-bulldb: the bulletin database"),
                (self.bulldb_nonfatal, "-B: the bulletin database"),
                (self.apop_db, "--enable-apop: APOP"),
                (self.kerberos or self.kerberos_service, "-k / -K: Kerberos support"),
                (self.tls_mode, "-l: TLS"),
                (self.user_options, "-u: reading ~/.qpopper-options"),
                (self.spool_options, "-U: reading the spool's .<user>.qpopper-options"),
                (self.drac_host, "-D: DRAC")):
            if wanted:
                missing.append(what + " is not built")
        return missing


# --- the config file ----------------------------------------------------------

def _bool(value: str) -> bool:
    word = value.lower()
    if word in ("true", "1", "yes", "on"):
        return True
    if word in ("false", "0", "no", "off"):
        return False
    raise ConfigError("needs true or false, not %r" % value)


def _int(value: str) -> int:
    """strtol(value, 0): decimal, 0x hex, or 0 octal."""
    try:
        if len(value) > 1 and value[0] == "0" and value[1] in "01234567":
            return int(value, 8)
        return int(value, 0)
    except ValueError:
        raise ConfigError("needs a number, not %r" % value) from None


def _seconds(value: str) -> int:
    n = _int(value)
    if n < 0:
        raise ConfigError("needs a number of seconds, not %r" % value)
    return n


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ConfigError("needs an absolute path, not %r" % value)
    return value


def facility(value: str) -> str:
    word = value.lower()
    if word.startswith("log_"):
        word = word[4:]
    if word not in FACILITIES:
        raise ConfigError("needs one of %s, not %r" % (", ".join(FACILITIES), value))
    return word


def clear_text(value: str) -> int:
    word = value.lower()
    if word not in CLEAR_TEXT:
        raise ConfigError("needs one of default, never, always, local, TLS, not %r" % value)
    return CLEAR_TEXT[word]


def _service(value: str):
    """A PAM service name; "none" turns PAM off."""
    if value.lower() == "none":
        return None
    if not value or "/" in value or not value.isprintable() or " " in value:
        raise ConfigError("needs a PAM service name, not %r" % value)
    return value


def _account(value: str):
    """A Unix account name (login-user); "none" for no separate login process."""
    if value.lower() == "none":
        return None
    if bad_name(value):
        raise ConfigError("needs a user name, not %r" % value)
    return value


def _announce(value: str) -> int:
    return -1 if value.lower() == "never" else _seconds(value)


# name in the file -> (attribute, converter); converter _bool marks a boolean.
OPTIONS = {
    "spool-dir": ("spool_dir", _path),
    "temp-dir": ("temp_dir", _path),
    "timeout": ("timeout", _seconds),
    "statistics": ("statistics", _bool),
    "debug": ("debug", _bool),
    "tracefile": ("tracefile", _path),
    "server-mode": ("server_mode", _bool),
    "fast-update": ("fast_update", _bool),
    "userdb": ("userdb", _path),
    "auth-fail-delay": ("auth_fail_delay", _seconds),
    "spool-lock-wait": ("spool_lock_wait", _seconds),
    "pam-service": ("pam_service", _service),
    "check-password-expired": ("check_password_expired", _bool),
    "auth-file": ("auth_file", _path),
    "nonauth-file": ("nonauth_file", _path),
    "downcase-user": ("downcase_user", _bool),
    "trim-domain": ("trim_domain", _bool),
    "reverse-lookup": ("reverse_lookup", _bool),
    "log-facility": ("log_facility", facility),
    "log-login": ("log_login", _bool),
    "update-on-abort": ("update_on_abort", _bool),
    "auto-delete": ("auto_delete", _bool),
    "keep-temp-drop": ("keep_temp_drop", _bool),
    "update-status-headers": ("update_status_headers", _bool),
    "old-style-uid": ("old_style_uid", _bool),
    "shy": ("shy", _bool),
    "uw-kluge": ("uw_kludge", _bool),
    "uw-kludge": ("uw_kludge", _bool),
    "clear-text-password": ("clear_text_password", clear_text),
    "announce-login-delay": ("announce_login_delay", _announce),
    "announce-expire": ("announce_expire", _announce),
    "bulldir": ("bulldir", _path),
    "kerberos": ("kerberos", _bool),
    "kerberos-service": ("kerberos_service", str),
    "login-user": ("login_user", _account),
    "write-timeout": ("write_timeout", _seconds),
    "login-timeout": ("login_timeout", _seconds),
    "max-sessions": ("max_sessions", _seconds),
    "max-sessions-per-address": ("max_sessions_per_address", _seconds),
    "max-connections-per-second": ("max_connections_per_second", _seconds),
    "pid-file": ("pid_file", _path),
}


def words_of(line: str) -> list:
    """A config line's words, as Qpopper reads them: quotes (" ' `) group,
    a # that starts a word starts a comment, and = is a word of its own."""
    words, word, quote = [], None, None
    for c in line:
        if quote:
            if c == quote:
                quote = None
            else:
                word += c
        elif c in "\"'`":
            quote, word = c, word or ""
        elif c == "#" and word is None:
            break
        elif c in " \t\r\n":
            if word is not None:
                words.append(word)
                word = None
        elif c == "=":
            if word is not None:
                words.append(word)
                word = None
            words.append("=")
        else:
            word = (word or "") + c
    if quote:
        raise ConfigError("no closing %s" % quote)
    if word is not None:
        words.append(word)
    return words


def apply_line(settings: Settings, line: str) -> None:
    """Apply one config file line; raise ConfigError if it is not good."""
    words = words_of(line)
    if not words:
        return
    verb = words[0].lower()
    if verb not in ("set", "reset"):
        raise ConfigError("lines start with set or reset, not %r" % words[0])
    if len(words) < 2 or words[1] == "=":
        raise ConfigError("%s needs an option name" % verb)
    name = words[1].lower()
    if name not in OPTIONS:
        raise ConfigError("unknown option %r" % words[1])
    attr, convert = OPTIONS[name]
    rest = words[2:]
    if verb == "reset":
        if convert is not _bool or rest:
            raise ConfigError("reset takes only the name of a true/false option")
        setattr(settings, attr, False)
    elif not rest:
        if convert is not _bool:
            raise ConfigError("set %s needs = value" % name)
        setattr(settings, attr, True)
    elif rest[0] != "=" or len(rest) != 2:
        raise ConfigError("expected: set %s = value" % name)
    else:
        setattr(settings, attr, convert(rest[1]))


def load_config_file(settings: Settings, path: str) -> None:
    """Apply a -f config file; ConfigError names the file and line."""
    try:
        with open(path, encoding="latin-1") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError("Unable to process config file %s: %s" % (path, exc.strerror)) from None
    for number, line in enumerate(lines, 1):
        try:
            apply_line(settings, line)
        except ConfigError as exc:
            raise ConfigError("%s line %d: %s" % (path, number, exc)) from None


# The longest account name popper serves (Qpopper truncates USER at 64 too).
MAX_NAME = 64


def bad_name(name: str):
    """Why name cannot be an account name popper builds a path from, or
    None: it must be 1 to MAX_NAME printable characters, with no "/", no
    NUL, and no leading "." (so never "." or "..")."""
    if not name:
        return "empty"
    if len(name) > MAX_NAME:
        return "longer than %d characters" % MAX_NAME
    if "/" in name or "\0" in name:
        return "contains / or NUL"
    if name.startswith("."):
        return "starts with a dot"
    if not name.isprintable() or " " in name:
        return "contains unprintable characters or spaces"
    return None


def _checked(user: str) -> str:
    reason = bad_name(user)
    if reason:
        raise ValueError("account name %r %s" % (user, reason))
    return user


def temp_drop_path(settings: Settings, user: str) -> str:
    return os.path.join(settings.temp_drop_dir, ".%s.pop" % _checked(user))


def spool_path(settings: Settings, user: str) -> str:
    return os.path.join(settings.spool_dir, _checked(user))
