"""popper's settings: compiled-in defaults, then -f config files, then the
command line, each overriding the one before (Qpopper's order).

The compiled-in defaults come from popper/_settings.py, which configure.py
writes.  The config file syntax and names are Qpopper 4.0.x's
(qpopper-behaviour.md 2.3, pop_config.c; docs/qpopper-options.md says what
popper does with each name):

    # a comment
    set spool-dir = /var/mail
    set statistics            (a Boolean, true)
    reset update-on-abort     (a Boolean, false)
    set tracefile = "/var/log/popper.trace"
    set config-file = /etc/popper.local.conf
"""

import os

from popper.log import LOG_LOGIN_TEMPLATE, log_login_line

try:
    from popper import _settings as compiled
except ImportError:                                  # pragma: no cover
    raise SystemExit("popper is not configured: run ./configure.py first") from None

FACILITIES = ("mail", "daemon", "user", "local0", "local1", "local2", "local3",
              "local4", "local5", "local6", "local7")

# -l, tls-support: no TLS, STLS offered, TLS from the first byte (pop3s).
TLS_NONE, TLS_STLS, TLS_ALTERNATE_PORT = 0, 1, 2
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


class ConfigError(Exception):
    """A bad config file line or command-line value; the message says which."""


class Settings:
    """Everything a session needs to know, with the compiled-in defaults."""

    def __init__(self):
        self.spool_dir = compiled.SPOOL_DIR
        self.temp_dir = compiled.TEMP_DIR            # None: the spool directory
        self.server_mode = compiled.SERVER_MODE
        self.fast_update = False            # -F: accepted; server mode's QUIT is always in place
        self.bulldir = compiled.BULLDIR
        self.bulldb = compiled.BULLDB
        self.bulldb_long = compiled.BULLDB_LONG      # the C long of its values
        self.max_bulletins = compiled.NEWBULLCNT
        self.auto_delete = compiled.AUTO_DELETE
        self.update_on_abort = compiled.UPDATE_ON_ABORT
        self.keep_temp_drop = compiled.KEEP_TEMP_DROP
        self.update_status_headers = compiled.UPDATE_STATUS_HEADERS
        self.old_style_uid = compiled.OLD_STYLE_UID
        self.log_facility = compiled.LOG_FACILITY[4:].lower()
        self.log_login = LOG_LOGIN_TEMPLATE if compiled.LOG_LOGIN else None   # a template
        self.debug_build = compiled.DEBUG
        self.shy = compiled.SHY
        self.locking = compiled.LOCKING
        self.uw_kludge = compiled.UW_KLUDGE
        self.apop_db = compiled.APOP_DB              # pop.auth's base name; None: no APOP
        self.popuid = compiled.POPUID                # the POP administrator (pop.auth's owner)
        self.pam_service = compiled.PAM_SERVICE
        self.check_password_expired = True
        self.auth_file = None                        # only these users may log in
        self.nonauth_file = None                     # these users may not
        self.sasl_proxy_file = None                  # these may log in as others (SASL authzid)
        self.mail_command = compiled.MAIL_COMMAND       # XTND XMIT's (pop_xmit.c)
        self.xmit_max_size = 10 * 1024 * 1024        # octets an XTND XMIT message may have
        self.xmit_timeout = 120                      # seconds the mail command may take
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
        self.enforce_login_delay = compiled.ENFORCE_LOGIN_DELAY    # refuse logins inside it
        self.clear_text_password = 0                 # -p
        self.lock_refresh = 5000                     # -L
        self.spool_lock_wait = 10                    # seconds; QUIT waits three times as long
        self.tls_mode = TLS_NONE                     # -l
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
        # Qpopper's names for what popper does its own way or has not built
        # (docs/qpopper-options.md): kept, so a Qpopper config file reads.
        self.temp_name = ".%s.pop"                   # the temp drop's name in temp_drop_dir
        self.cache_dir = None                        # None: the temp drop's directory
        self.cache_name = ".%s.cache"
        self.check_hash_dir = True
        self.check_old_spool_loc = True
        self.chunky_writes = "always"
        self.no_atomic_open = False
        self.timing = False
        self.bulldb_max_tries = 75
        self.group_bulletins = False
        self.group_server_mode = None
        self.group_no_server_mode = None
        self.hash_spool = 0
        self.home_dir_mail = None
        self.tls_cipher_list = None
        self.tls_identity_file = None
        self.tls_passphrase = None
        self.tls_private_key_file = None
        self.tls_server_cert_file = None
        self.tls_version = "default"
        self.tls_workarounds = False
        self.tls_options = 0
        self.tls_min_version = "TLSv1.2"             # the oldest TLS popper speaks
        self.tls_chain_file = None                   # intermediate certificates

    @property
    def temp_drop_dir(self) -> str:
        return self.temp_dir or self.spool_dir

    def not_built(self) -> list:
        """What these settings ask for that this popper does not have yet."""
        missing = []
        for wanted, what in (
                (self.bulldb_nonfatal and self.bulldb is None, "-B: the bulletin database"),
                (self.kerberos or self.kerberos_service, "-k / -K: Kerberos support"),
                (self.drac_host, "-D: DRAC"),
                (self.group_server_mode or self.group_no_server_mode,
                 "group-server-mode / group-no-server-mode: server mode by group"),
                (self.hash_spool, "hash-spool: hashed spool directories"),
                (self.home_dir_mail, "home-dir-mail: spools in home directories")):
            if wanted:
                missing.append(what + " is not built")
        return missing

    def backend_problems(self) -> list:
        """What start-up can tell will keep the back-end server.authenticator()
        picks from logging users in, without loading it (it brings cffi and
        the C extension, or ctypes: this runs before every inetd greeting);
        a user database that cannot be read is refused by cli.check."""
        problem = (None if self.userdb else service_problem(self.pam_service)
                   if self.pam_service else shadow_problem())
        return [problem] if problem else []


# --- the config file ----------------------------------------------------------
#
# Qpopper 4.0.x's pop_config.c, name for name.  Each name has Qpopper's value
# type, which decides how its value is read from the line (a string runs to
# a blank or a closing quote, anything else is one word), and Qpopper's
# restriction: who may set it.

BOOL, INT, MNEM, STR = "Boolean", "Integer", "mnemonic", "String"
ANYONE, NOT_USER, AT_START = "anyone", "not in a user's own file", "only at start-up"

# Where a config file comes from (Qpopper's CallTime): -f, a user's
# ~/.qpopper-options (-u), the spool's .<user>.qpopper-options (-U).
INIT, USER, SPOOL = "init", "user", "spool"

MAX_NESTING = 100                                    # Qpopper's MAX_RECURSION

# What popper refuses in the qpopper-options files (-u, -U) beyond
# Qpopper's restrictions: the names through which a user's file reached
# other files as root in Qpopper (CVE-2001-1046, CVE-2005-1151:
# qpopper-behaviour.md 11) or the log's shape.  Those files are read as the
# user after the login, when only the session's own settings still count.
NOT_IN_OPTIONS_FILES = ("config-file", "tracefile", "debug", "log-facility", "log-login")
QUOTES = ("\"", "'", "`")


class Option:
    """A config name: the Settings attribute it sets (None: config-file,
    which reads another file), how a value becomes the setting (for a
    Boolean: from True or False), its value type and who may set it.
    (Not a namedtuple: collections would be loaded before the greeting.)"""
    __slots__ = ("attr", "convert", "kind", "restricted")

    def __init__(self, attr, convert, kind, restricted):
        self.attr, self.convert, self.kind, self.restricted = attr, convert, kind, restricted


class Expected(ValueError):
    """The value is not of the option's type ("Integer value expected")."""


def _int(value: str) -> int:
    """strtol(value, 0): decimal, 0x hex, or 0 octal.  Qpopper takes only a
    word that starts with a digit as a number; popper also refuses one
    strtol would stop in ("09", "10s")."""
    if not value[:1].isdigit():
        raise Expected()
    try:
        if len(value) > 1 and value[0] == "0" and value[1] in "01234567":
            return int(value, 8)
        return int(value, 0)
    except ValueError:
        raise ValueError("not a whole number") from None


def _positive(value: str) -> int:
    n = _int(value)
    if n < 1:
        raise ValueError("must be 1 or more")
    return n


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("needs an absolute path")
    return value


def _text(value: str) -> str:
    return value


def _not(value: bool) -> bool:
    return not value


def _mnemonics(**names):
    """A converter for a mnemonic option: the value names one of names
    (in any case; a _ in a name here is a - in the file)."""
    table = {name.replace("_", "-").lower(): value for name, value in names.items()}

    def convert(value: str):
        try:
            return table[value.lower()]
        except KeyError:
            raise ValueError("unknown mnemonic") from None
    convert.mnemonics = [name.replace("_", "-") for name in names]
    return convert


def facility(value: str) -> str:
    word = value.lower()
    if word.startswith("log_"):
        word = word[4:]
    if word not in FACILITIES:
        raise ConfigError("needs one of %s, not %r" % (", ".join(FACILITIES), value))
    return word


def _facility(value: str) -> str:
    try:
        return facility(value)
    except ConfigError:
        raise ValueError("unknown mnemonic") from None


_facility.mnemonics = FACILITIES


_clear_text = _mnemonics(default=0, never=1, TLS=4, SSL=4, always=2, local=3)


def _service(value: str):
    """A PAM service name; "none" turns PAM off."""
    if value.lower() == "none":
        return None
    if not value or "/" in value or not value.isprintable() or " " in value:
        raise ValueError("needs a PAM service name")
    return value


def _account(value: str):
    """A Unix account name (login-user); "none" for no separate login process."""
    if value.lower() == "none":
        return None
    if bad_name(value):
        raise ValueError("needs a user name")
    return value


def _account_name(value: str) -> str:
    if bad_name(value):
        raise ValueError("needs a user name")
    return value


def _path_or_none(value: str):
    """A path; "none" for none (apop-file: no APOP)."""
    return None if value.lower() == "none" else _path(value)


def _announce(value: str) -> int:
    return -1 if value.lower() == "never" else _int(value)


def _file_pattern(value: str) -> str:
    """temp-name, cache-name: a file name with one %s for the user name."""
    if value.count("%") != 1 or "%s" not in value or "/" in value or not value.startswith("."):
        raise ValueError("needs a file name that starts with a dot and holds %s once, "
                         "for the user name (like .%s.pop)")
    return value


def _log_login(value: str):
    """A log-login template (%0 version, %1 user, %2 host, %3 IP), checked
    here rather than at each login.  true and false, popper's earlier
    spelling of the switch, mean the compiled-in template and none."""
    if value.lower() in ("true", "false"):
        return LOG_LOGIN_TEMPLATE if value.lower() == "true" else None
    log_login_line(value, "", "", "")
    return value or None


def _hash_method(value: str) -> int:
    n = _int(value)
    if n not in (0, 1, 2):
        raise ValueError("is 0 (none), 1 or 2")
    return n


O = Option
# Qpopper 4.0.x's names, in its order (pop_config.c's options table).
QPOPPER_OPTIONS = {
    "announce-expire": O("announce_expire", _announce, INT, ANYONE),
    "announce-login-delay": O("announce_login_delay", _announce, INT, ANYONE),
    "auth-file": O("auth_file", _path, STR, AT_START),
    "auto-delete": O("auto_delete", bool, BOOL, NOT_USER),
    "bulldb-max-tries": O("bulldb_max_tries", _positive, INT, ANYONE),
    "bulldb-nonfatal": O("bulldb_nonfatal", bool, BOOL, ANYONE),
    "bulldir": O("bulldir", _path, STR, ANYONE),
    "cache-dir": O("cache_dir", _path, STR, NOT_USER),
    "cache-name": O("cache_name", _file_pattern, STR, NOT_USER),
    "check-hash-dir": O("check_hash_dir", bool, BOOL, ANYONE),
    "check-old-spool-loc": O("check_old_spool_loc", bool, BOOL, ANYONE),
    "check-password-expired": O("check_password_expired", bool, BOOL, AT_START),
    "chunky-writes": O("chunky_writes", _mnemonics(default="always", always="always",
                                                    TLS="tls", SSL="tls", never="never"),
                       MNEM, ANYONE),
    "clear-text-password": O("clear_text_password", _clear_text, MNEM, NOT_USER),
    "config-file": O(None, _text, STR, ANYONE),
    "debug": O("debug", bool, BOOL, ANYONE),
    "downcase-user": O("downcase_user", bool, BOOL, NOT_USER),
    "drac-host": O("drac_host", _text, STR, ANYONE),
    "fast-update": O("fast_update", bool, BOOL, ANYONE),
    "group-bulletins": O("group_bulletins", bool, BOOL, NOT_USER),
    "group-no-server-mode": O("group_no_server_mode", _text, STR, NOT_USER),
    "group-server-mode": O("group_server_mode", _text, STR, NOT_USER),
    "hash-spool": O("hash_spool", _hash_method, INT, NOT_USER),
    "home-dir-mail": O("home_dir_mail", _text, STR, NOT_USER),
    "keep-temp-drop": O("keep_temp_drop", bool, BOOL, NOT_USER),
    "kerberos": O("kerberos", bool, BOOL, NOT_USER),
    "kerberos-service": O("kerberos_service", _text, STR, NOT_USER),
    "log-facility": O("log_facility", _facility, MNEM, ANYONE),
    "log-login": O("log_login", _log_login, STR, ANYONE),
    "mail-command": O("mail_command", _path, STR, NOT_USER),
    "mail-lock-check": O("lock_refresh", _positive, INT, ANYONE),
    "max-bulletins": O("max_bulletins", _int, INT, ANYONE),
    "no-atomic-open": O("no_atomic_open", bool, BOOL, NOT_USER),
    "nonauth-file": O("nonauth_file", _path, STR, AT_START),
    "old-style-uid": O("old_style_uid", bool, BOOL, ANYONE),
    # Qpopper stores it into its "no reverse lookup" flag (pop_config.c:
    # "SENSE REVERSED!"): set reverse-lookup turns the lookups off, as -R does.
    "reverse-lookup": O("reverse_lookup", _not, BOOL, NOT_USER),
    "server-mode": O("server_mode", bool, BOOL, ANYONE),
    "shy": O("shy", bool, BOOL, AT_START),
    "spool-dir": O("spool_dir", _path, STR, NOT_USER),
    "spool-options": O("spool_options", bool, BOOL, NOT_USER),
    "statistics": O("statistics", bool, BOOL, ANYONE),
    "temp-dir": O("temp_dir", _path, STR, NOT_USER),
    "temp-name": O("temp_name", _file_pattern, STR, NOT_USER),
    "timeout": O("timeout", _int, INT, ANYONE),
    "timing": O("timing", bool, BOOL, ANYONE),
    "tls-cipher-list": O("tls_cipher_list", _text, STR, AT_START),
    "tls-identity-file": O("tls_identity_file", _path, STR, AT_START),
    "tls-passphrase": O("tls_passphrase", _text, STR, AT_START),
    "tls-private-key-file": O("tls_private_key_file", _path, STR, AT_START),
    "tls-server-cert-file": O("tls_server_cert_file", _path, STR, AT_START),
    "tls-support": O("tls_mode", _mnemonics(default=TLS_NONE, none=TLS_NONE, STLS=TLS_STLS,
                                             alternate_port=TLS_ALTERNATE_PORT),
                     MNEM, AT_START),
    "tls-version": O("tls_version", _mnemonics(default="default", SSLv2="SSLv2",
                                                SSLv3="SSLv3", TLSv1="TLSv1",
                                                SSLv23="SSLv23", all="SSLv23"),
                     MNEM, AT_START),
    "tls-workarounds": O("tls_workarounds", bool, BOOL, NOT_USER),
    "tls-options": O("tls_options", _int, INT, NOT_USER),    # added up, as in Qpopper
    "tracefile": O("tracefile", _path, STR, ANYONE),
    "trim-domain": O("trim_domain", bool, BOOL, NOT_USER),
    "update-on-abort": O("update_on_abort", bool, BOOL, ANYONE),
    "update-status-headers": O("update_status_headers", bool, BOOL, ANYONE),
    "user-options": O("user_options", bool, BOOL, NOT_USER),
    "uw-kluge": O("uw_kludge", bool, BOOL, ANYONE),
    "uw-kludge": O("uw_kludge", bool, BOOL, ANYONE),
}

# popper's own names: what Qpopper has no setting for.
POPPER_OPTIONS = {
    "userdb": O("userdb", _path, STR, AT_START),
    "apop-file": O("apop_db", _path_or_none, STR, AT_START),
    "popuid": O("popuid", _account_name, STR, AT_START),
    "auth-fail-delay": O("auth_fail_delay", _int, INT, NOT_USER),
    "enforce-login-delay": O("enforce_login_delay", bool, BOOL, NOT_USER),
    "spool-lock-wait": O("spool_lock_wait", _int, INT, NOT_USER),
    "pam-service": O("pam_service", _service, STR, AT_START),
    "login-user": O("login_user", _account, STR, AT_START),
    "write-timeout": O("write_timeout", _int, INT, NOT_USER),
    "xmit-max-size": O("xmit_max_size", _positive, INT, NOT_USER),
    "xmit-timeout": O("xmit_timeout", _positive, INT, NOT_USER),
    "login-timeout": O("login_timeout", _int, INT, AT_START),
    "max-sessions": O("max_sessions", _int, INT, AT_START),
    "max-sessions-per-address": O("max_sessions_per_address", _int, INT, AT_START),
    "max-connections-per-second": O("max_connections_per_second", _int, INT, AT_START),
    "pid-file": O("pid_file", _path, STR, AT_START),
    "sasl-proxy-file": O("sasl_proxy_file", _path, STR, AT_START),
    "tls-min-version": O("tls_min_version", _mnemonics(**{v: v for v in TLS_VERSIONS}), STR,
                         AT_START),
    "tls-chain-file": O("tls_chain_file", _path, STR, AT_START),
}
del O

OPTIONS = dict(QPOPPER_OPTIONS, **POPPER_OPTIONS)


class _Line:
    """One config line read as Qpopper reads it: blanks are spaces and tabs;
    a word is letters, digits and - (popper: and _, for LOG_LOCAL1), or any
    other single character."""

    def __init__(self, text: str):
        self.text, self.at = text, 0

    def blanks(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in " \t":
            self.at += 1

    def word(self) -> str:
        """The next word (after blanks), consumed."""
        self.blanks()
        start = end = self.at
        if end < len(self.text):
            end += 1
            if self.text[start].isalnum():
                while end < len(self.text) and (self.text[end].isalnum()
                                                 or self.text[end] in "-_"):
                    end += 1
        self.at = end
        return self.text[start:end]

    def string(self) -> str:
        """A string value, or None for none: quoted (" ' or `; a backslash
        before the quote keeps it in the string, and the backslash stays
        there too, as in Qpopper) up to its closing quote or the end of the
        line, else up to a blank."""
        self.blanks()
        text, start = self.text, self.at
        if text[start:start + 1] in QUOTES:
            quote, end = text[start], start + 1
            while end < len(text) and (text[end] != quote or text[end - 1] == "\\"):
                end += 1
            self.at = end + 1
            return text[start + 1:end]
        end = start
        while end < len(text) and text[end] not in " \t":
            end += 1
        self.at = end
        return text[start:end] or None

    def rest(self) -> str:
        self.blanks()
        return self.text[self.at:]


def _shown(token: str) -> str:
    """A word as Qpopper's error texts show it: at most 128 characters."""
    return token[:128]


def _boolean(value: str) -> bool:
    """Qpopper's Booleans: true, false, or a number that is 0 or 1."""
    word = value.lower()
    if word in ("true", "false"):
        return word == "true"
    try:
        number = _int(value)
    except ValueError:
        raise Expected() from None
    if number not in (0, 1):
        raise Expected()
    return number == 1


def apply_line(settings: Settings, line: str, number: int = 1, path: str = "-",
               source: str = INIT, depth: int = 0) -> None:
    """Apply one config file line (line number of the file path); raise
    ConfigError with Qpopper's text for it if it is not good."""
    where = "at line %d of config file %s" % (number, path)
    words = _Line(line)
    verb = words.word()
    if not verb or verb == "#":
        return
    if verb.lower() not in ("set", "reset"):
        raise ConfigError('Expected "set" or "reset", found "%s" %s' % (_shown(verb), where))
    token = words.word()
    option = OPTIONS.get(token.lower())
    if option is None:
        raise ConfigError('Unrecognized option; scanning "%s" %s; valid options are: %s'
                          % (_shown(token), where, ", ".join('"%s"' % n for n in OPTIONS)))
    name = token.lower()
    if source == USER and option.restricted == NOT_USER or (
            source != INIT and name in NOT_IN_OPTIONS_FILES):
        raise ConfigError('Attempt to use restricted option "%s" at line %d of user config '
                          'file %s' % (name, number, path))
    if source == SPOOL and option.restricted == AT_START:
        raise ConfigError('The "%s" option cannot be set after a client has connected '
                          '(line %d of config file %s)' % (name, number, path))
    if verb.lower() == "reset" and option.kind != BOOL:
        raise ConfigError('%s is not a boolean option; scanning "%s" %s' % (name, token, where))
    token = words.word()
    if token == "=":
        # popper also takes a quoted value of another type ("never"); Qpopper
        # reads a string only for a String option
        value = (words.string() if option.kind == STR or words.rest()[:1] in QUOTES
                 else words.word() or None)
    elif option.kind == BOOL and token in ("", "#"):
        value = "true" if verb.lower() == "set" else "false"
        words.at = len(line)                         # the rest is a comment
    else:
        raise ConfigError('"=" expected; found "%s" %s' % (_shown(token), where))
    if value is None:
        raise ConfigError('Bad value for the %s option; scanning "" %s' % (name, where))
    try:
        setting = option.convert(_boolean(value) if option.kind == BOOL else value)
    except Expected:
        raise ConfigError('%s value expected for the %s option; scanning "%s" %s'
                          % (option.kind, name, _shown(value), where)) from None
    except ValueError as exc:
        if option.kind == MNEM:
            raise ConfigError('Unrecognized "%s" mnemonic; scanning "%s" %s; valid mnemonics '
                              'are: %s' % (name, _shown(value), where,
                                           ", ".join('"%s"' % m for m in option.convert.mnemonics))
                              ) from None
        raise ConfigError('Bad value for the %s option; scanning "%s" %s: %s'
                          % (name, _shown(value), where, exc)) from None
    junk = words.rest()
    if junk and not junk.startswith("#"):
        raise ConfigError('Expected comment or end of line; found "%s" %s'
                          % (_shown(_Line(junk).word()), where))
    if option.attr is None:
        load_config_file(settings, setting, source, depth + 1)
    elif name == "tls-options":
        settings.tls_options += setting
    else:
        setattr(settings, option.attr, setting)


def load_config_file(settings: Settings, path: str, source: str = INIT, depth: int = 0) -> None:
    """Apply a config file (-f; config-file inside one reads another, up
    to MAX_NESTING deep, which also ends a loop); ConfigError has
    Qpopper's text for the first bad line, naming the file and line, after
    -f's "Unable to process config file <path>: "."""
    try:
        if depth > MAX_NESTING:
            raise ConfigError("Config file nesting exceeds %d; will not process config file %s"
                              % (MAX_NESTING, path))
        try:
            # Bytes, then latin-1 text: the decode's built-in fast path, not
            # a text file's codec lookup (encodings.latin_1, before the greeting).
            with open(path, "rb") as f:
                text = f.read().decode("latin-1")
        except OSError as exc:
            raise ConfigError("Unable to open configuration file %s: %s (%d)"
                              % (path, exc.strerror, exc.errno)) from None
        apply_text(settings, text, path, source, depth)
    except ConfigError as exc:
        if depth or source != INIT:
            raise
        raise ConfigError("Unable to process config file %s: %s" % (path, exc)) from None


def apply_text(settings: Settings, text: str, path: str, source: str, depth: int = 0) -> None:
    """Apply a config file's text, line by line: the lines before a bad one
    stay applied, as in Qpopper."""
    for number, line in enumerate(text.splitlines(), 1):
        apply_line(settings, line, number, path, source, depth)


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


def tls_configured(settings: Settings) -> bool:
    """Whether TLS is asked for (STLS or the alternate port); tls.py,
    with everything TLS needs, is imported only then."""
    return settings.tls_mode != TLS_NONE


def temp_drop_path(settings: Settings, user: str) -> str:
    return os.path.join(settings.temp_drop_dir, settings.temp_name % _checked(user))


def spool_options_path(settings: Settings, user: str) -> str:
    """-U's file, Qpopper's <spool-dir>/.<user>.qpopper-options."""
    return os.path.join(settings.spool_dir, ".%s.qpopper-options" % _checked(user))


def cache_path(settings: Settings, user: str) -> str:
    """Server mode's cache of the spool's message table (maildrop/cache.py)."""
    return os.path.join(settings.cache_dir or settings.temp_drop_dir,
                        settings.cache_name % _checked(user))


def spool_path(settings: Settings, user: str) -> str:
    return os.path.join(settings.spool_dir, _checked(user))


# --- what start-up can tell of the back-ends (Settings.backend_problems) ---------

SHADOW_FILE = "/etc/shadow"  # what NSS's files module reads (Linux, Solaris, illumos)

# Where PAM looks for a service's configuration: Linux-PAM's, OpenPAM's and
# Solaris 11.4's directories (Linux-PAM's vendor directory too), then the
# one file of older PAMs (Solaris 10, UnixWare, HP-UX, AIX).
PAM_DIRS = ("/etc/pam.d", "/usr/lib/pam.d", "/usr/local/etc/pam.d")
PAM_CONF = "/etc/pam.conf"


def shadow_problem(path: str = SHADOW_FILE):
    """Why this process cannot read the shadow passwords, or None: it can,
    or there is no shadow file (the hashes are in passwd, NIS or LDAP)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("uid %d cannot read the shadow passwords (%s: %s), so no user whose passwd "
                "entry says \"x\" can log in: run popper as root, or name another back-end "
                "with set userdb or set pam-service"
                % (os.geteuid(), path, exc.strerror))
    os.close(fd)
    return None


def service_problem(service: str):
    """Why PAM will not find service's own configuration, or None."""
    if any(os.path.isfile(os.path.join(d, service)) for d in PAM_DIRS):
        return None
    try:
        with open(PAM_CONF, "rb") as f:        # bytes: no codec to load
            name = service.encode("latin-1")
            if any(line.split()[:1] == [name] for line in f):
                return None
    except (OSError, UnicodeError):
        pass
    return ('PAM service "%s": there is no %s/%s, nor a line for it in %s, so PAM uses its '
            '"other" service: install %s/%s, or name an existing service with set '
            "pam-service" % (service, PAM_DIRS[0], service, PAM_CONF, PAM_DIRS[0], service))
