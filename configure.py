#!/usr/bin/env python3
"""configure.py -- Qpopper's ./configure switches for popper.

Run it before building, as one would run Qpopper's ./configure:

    ./configure.py --enable-spool-dir=/var/mail --enable-log-login

It writes three files:

  popper/_settings.py  the compiled-in defaults popper starts from (the
                       -f config file and the command line override them);
                       deterministic, rewritten only when its content changes
  config.log           what was checked and found, for the administrator
  config.status        a script that re-runs configure.py with the same switches

An unknown or malformed switch is an error (exit status 1).
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS_FILE = os.path.join(HERE, "popper", "_settings.py")
LOG_FILE = os.path.join(HERE, "config.log")
STATUS_FILE = os.path.join(HERE, "config.status")

FACILITIES = ("LOG_MAIL", "LOG_DAEMON", "LOG_USER", "LOG_LOCAL0", "LOG_LOCAL1",
              "LOG_LOCAL2", "LOG_LOCAL3", "LOG_LOCAL4", "LOG_LOCAL5",
              "LOG_LOCAL6", "LOG_LOCAL7")


class ConfigureError(Exception):
    """A switch that configure.py cannot accept."""


# --- value checkers -------------------------------------------------------

def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ConfigureError("needs an absolute path, not %r" % value)
    return value.rstrip("/") or "/"


def _count(value: str) -> int:
    if not value.isdigit():
        raise ConfigureError("needs a whole number, not %r" % value)
    return int(value)


def _seconds(value: str) -> int:
    n = _count(value)
    if n == 0:
        raise ConfigureError("needs at least one second")
    return n


def _facility(value: str) -> str:
    name = value.upper()
    if not name.startswith("LOG_"):
        name = "LOG_" + name
    if name not in FACILITIES:
        raise ConfigureError("needs one of %s, not %r" % (", ".join(FACILITIES), value))
    return name


def _locking(value: str) -> tuple:
    kinds = tuple(word.strip().lower() for word in value.split(",") if word.strip())
    if not kinds or len(set(kinds)) != len(kinds) or \
            not set(kinds) <= {"fcntl", "dotlock", "flock"}:
        raise ConfigureError("needs fcntl, dotlock and/or flock, each once, comma-separated, "
                             "not %r" % value)
    return kinds


def _service(value: str) -> str:
    if not value or "/" in value or not value.isprintable() or " " in value:
        raise ConfigureError("needs a PAM service name, not %r" % value)
    return value


def _account(value: str) -> str:
    if not value or "/" in value or value.startswith(".") or not value.isprintable() \
            or " " in value or len(value) > 64:
        raise ConfigureError("needs a user name, not %r" % value)
    return value


# --- the switches ---------------------------------------------------------

class Switch:
    """One switch, spelled as --help shows it: --enable-X, --enable-X=ARG,
    --enable-X[=ARG], --disable-X, the same with --with-/--without-, or --X=ARG.

    bare is the value of the switch given without =ARG, off the value of its
    --disable-/--without- form; check turns an =ARG into a value.
    """

    def __init__(self, spelling, key, help, bare=True, off=False, check=None):
        self.spelling, self.key, self.help = spelling, key, help
        self.bare, self.off, self.check = bare, off, check
        word = spelling[2:].split("[")[0].split("=")[0]
        self.takes_arg = "=" in spelling
        self.arg_optional = "[=" in spelling
        for on, no in (("enable-", "disable-"), ("with-", "without-")):
            for prefix in (on, no):
                if word.startswith(prefix):
                    self.name = word[len(prefix):]
                    self.on_word, self.off_word = on + self.name, no + self.name
                    return
        self.name, self.on_word, self.off_word = word, word, None

    def value(self, arg: str, word: str, eq: str, value: str):
        if word == self.off_word:
            if eq:
                raise ConfigureError("%s: --%s takes no argument" % (arg, word))
            return self.off
        if not eq:
            if self.takes_arg and not self.arg_optional:
                raise ConfigureError("--%s needs =ARG" % word)
            return self.bare
        if not self.takes_arg:
            raise ConfigureError("%s: --%s takes no argument" % (arg, word))
        try:
            return self.check(value)
        except ConfigureError as exc:
            raise ConfigureError("%s: %s" % (arg, exc)) from None


SWITCHES = [
    Switch("--prefix=DIR", "PREFIX", "install under DIR [/usr/local]", check=_path),
    Switch("--enable-spool-dir=DIR", "SPOOL_DIR",
           "mail spool directory [probed: /var/mail, /var/spool/mail, /usr/spool/mail]",
           off=None, check=_path),
    Switch("--enable-temp-drop-dir=DIR", "TEMP_DIR",
           "directory of the temporary maildrops .<user>.pop [the spool directory]",
           off=None, check=_path),
    Switch("--enable-servermode", "SERVER_MODE",
           "serve the spool in place by default (-S) [no]"),
    Switch("--enable-bulletins[=DIR]", "BULLDIR",
           "turn bulletins on by default, from DIR [no; DIR /var/spool/bulls]",
           bare="/var/spool/bulls", off=None, check=_path),
    Switch("--enable-bulldb[=DIR]", "BULLDB",
           "keep each user's last bulletin in DIR/bulldb, not ~/.popbull [no; DIR: the bulletin directory]",
           bare="", off=None, check=_path),
    Switch("--with-new-bulls=N", "NEWBULLCNT",
           "how many existing bulletins a new user gets [1]", off=0, check=_count),
    Switch("--enable-auto-delete", "AUTO_DELETE",
           "delete retrieved messages at QUIT and announce EXPIRE 0 [no]"),
    Switch("--disable-update-abort", "UPDATE_ON_ABORT",
           "on hangup or timeout keep every message instead of applying DELE [apply]"),
    Switch("--enable-keep-temp-drop", "KEEP_TEMP_DROP",
           "leave the emptied .<user>.pop in place after QUIT [no]"),
    Switch("--disable-status", "UPDATE_STATUS_HEADERS",
           "write no Status:/X-UIDL: headers back; UIDs come from the mail alone [write]"),
    Switch("--enable-old-uidl", "OLD_STYLE_UID",
           "Qpopper 2.53 UIDs: 32 hex digits of an unsalted MD5 [no]"),
    Switch("--enable-log-facility=LOG_X", "LOG_FACILITY",
           "syslog facility, e.g. LOG_MAIL [LOG_LOCAL1, as SCO's /etc/popper]",
           off=None, check=_facility),
    Switch("--enable-log-login", "LOG_LOGIN", "log every successful login [no]"),
    Switch("--enable-debugging", "DEBUG",
           "append [file:line] to every log line [no]"),
    Switch("--enable-shy", "SHY",
           "hide the version in the greeting and in CAPA before login [no]"),
    Switch("--enable-apop[=PATH]", "APOP_DB",
           "APOP with the pop.auth database at PATH [no; PATH /etc/pop.auth]",
           bare="/etc/pop.auth", off=None, check=_path),
    Switch("--with-pam[=SERVICE]", "PAM_SERVICE",
           "authenticate through PAM service SERVICE [no; SERVICE pop3]",
           bare="pop3", off=None, check=_service),
    Switch("--with-sendmail=PATH", "MAIL_COMMAND",
           "program XTND XMIT hands mail to [probed: /usr/sbin/sendmail, /usr/lib/sendmail]",
           off=None, check=_path),
    Switch("--with-timeout=SECS", "TIMEOUT",
           "idle timeout in seconds, Qpopper's POP_TIMEOUT (-T overrides) [120]",
           off=None, check=_seconds),
    Switch("--with-locking=LIST", "LOCKING",
           "the spool locks to take, in order: fcntl, dotlock, flock [fcntl,dotlock,flock]",
           off=None, check=_locking),
    Switch("--with-login-user=USER", "LOGIN_USER",
           "the unprivileged user that reads the client until it has logged in [nobody]",
           off=None, check=_account),
    Switch("--disable-uw-kludge", "UW_KLUDGE",
           "do not hide UW-IMAP's folder internal data message [hide it]"),
    Switch("--disable-native", "NATIVE",
           "build no C extension; use the pure-Python twins [build it]"),
]

# The value of every setting when no switch names it; None for SPOOL_DIR and
# MAIL_COMMAND means "probe the machine" (settings_for).
DEFAULTS = {
    "PREFIX": "/usr/local",
    "SPOOL_DIR": None,
    "TEMP_DIR": None,           # None: the spool directory
    "SERVER_MODE": False,
    "BULLDIR": None,
    "BULLDB": None,             # None: off; "": on, in the bulletin directory
    "NEWBULLCNT": 1,
    "AUTO_DELETE": False,
    "UPDATE_ON_ABORT": True,
    "KEEP_TEMP_DROP": False,
    "UPDATE_STATUS_HEADERS": True,
    "OLD_STYLE_UID": False,
    "LOG_FACILITY": "LOG_LOCAL1",
    "LOG_LOGIN": False,
    "DEBUG": False,
    "SHY": False,
    "APOP_DB": None,
    "PAM_SERVICE": None,
    "MAIL_COMMAND": None,
    "TIMEOUT": 120,
    "LOCKING": ("fcntl", "dotlock", "flock"),
    "LOGIN_USER": "nobody",
    "UW_KLUDGE": True,
    "NATIVE": True,
    "NATIVE_PAM": False,        # probed
}


def usage() -> str:
    lines = ["Usage: ./configure.py [SWITCH]...", "",
             "Writes popper/_settings.py, config.log and config.status.", "",
             "Switches:"]
    for switch in SWITCHES:
        lines.append("  %-30s %s" % (switch.spelling, switch.help))
    lines += ["  %-30s %s" % ("--help", "show this text"), ""]
    return "\n".join(lines)


def parse(argv: list) -> dict:
    """Turn the switches into settings; raise ConfigureError on a bad one."""
    chosen = {}
    for arg in argv:
        if not arg.startswith("--"):
            raise ConfigureError("%s: not a switch (they all start with --)" % arg)
        word, eq, value = arg[2:].partition("=")
        for switch in SWITCHES:
            if word in (switch.on_word, switch.off_word):
                value = switch.value(arg, word, eq, value)
                chosen[switch.key] = DEFAULTS[switch.key] if value is None else value
                break
        else:
            raise ConfigureError("%s: unknown switch (see ./configure.py --help)" % arg)
    return chosen


# --- probing the machine --------------------------------------------------

class Log:
    def __init__(self) -> None:
        self.lines = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)


def probe_spool_dir(log: Log) -> str:
    for candidate in ("/var/mail", "/var/spool/mail", "/usr/spool/mail"):
        found = os.path.isdir(candidate)
        log("checking for the mail spool directory %s... %s" % (candidate, "yes" if found else "no"))
        if found:
            return candidate
    return "/var/mail"


def probe_sendmail(log: Log) -> str:
    for candidate in ("/usr/sbin/sendmail", "/usr/lib/sendmail"):
        found = os.access(candidate, os.X_OK)
        log("checking for %s... %s" % (candidate, "yes" if found else "no"))
        if found:
            return candidate
    return "/usr/sbin/sendmail"


def probe_c(log: Log, header: str, library) -> bool:
    """Can this machine compile and link a program using header/library
    (None: no library)?"""
    cc = sysconfig.get_config_var("CC") or "cc"
    compiler = shlex.split(cc)
    if not shutil.which(compiler[0]):
        log("checking for a C compiler (%s)... no" % cc)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "conftest.c")
        with open(source, "w") as f:
            f.write("#include <%s>\nint main(void) { return 0; }\n" % header)
        cmd = compiler + [source, "-o", os.path.join(tmp, "conftest")]
        if library:
            cmd.append("-l" + library)
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
    ok = result.returncode == 0
    log("checking for <%s>%s... %s" % (header, " and -l%s" % library if library else "",
                                      "yes" if ok else "no"))
    if not ok:
        log("  " + " ".join(cmd))
        log("  " + result.stderr.strip().replace("\n", "\n  "))
    return ok


def probe_cffi(log: Log) -> bool:
    try:
        import cffi  # noqa: F401
    except ImportError:
        log("checking for the cffi Python package... no")
        return False
    log("checking for the cffi Python package... yes (%s)" % cffi.__version__)
    return True


def settings_for(argv: list, log: Log) -> dict:
    settings = dict(DEFAULTS)
    settings.update(parse(argv))
    if settings["SPOOL_DIR"] is None:
        settings["SPOOL_DIR"] = probe_spool_dir(log)
    if settings["MAIL_COMMAND"] is None:
        settings["MAIL_COMMAND"] = probe_sendmail(log)
    if settings["NATIVE"]:
        usable = probe_cffi(log) & probe_c(log, "crypt.h", "crypt")
        if not usable:
            log("the C extension cannot be built here: popper will use its pure-Python twins")
            settings["NATIVE"] = False
    # PAM's binding is built whenever PAM's headers are there (python-pam
    # stands in otherwise); --with-pam makes PAM the default authenticator.
    settings["NATIVE_PAM"] = bool(settings["NATIVE"]) and probe_c(log, "security/pam_appl.h",
                                                                   "pam")
    if settings["PAM_SERVICE"] is not None and not settings["NATIVE_PAM"]:
        log("PAM's headers are missing: popper will use python-pam for PAM")
    return settings


# --- writing the results ----------------------------------------------------

def render_settings(argv: list, settings: dict) -> str:
    out = ['"""Compiled-in defaults, written by configure.py; do not edit.',
           "",
           "Re-run ./configure.py to change them.  popper's -f config file and",
           'command line override them at run time (see popper/settings.py).',
           '"""',
           "",
           "CONFIGURE_ARGS = %r" % (list(argv),),
           ""]
    for key in DEFAULTS:
        out.append("%s = %r" % (key, settings[key]))
    return "\n".join(out) + "\n"


def write_if_changed(path: str, text: str, mode: int = 0o644) -> bool:
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def main(argv: list) -> int:
    if "--help" in argv or "-h" in argv:
        print(usage())
        return 0
    log = Log()
    log("This file records what ./configure.py checked; popper/_settings.py holds the result.")
    log("")
    log("$ ./configure.py " + " ".join(shlex.quote(a) for a in argv))
    log("python: %s (%s)" % (sys.executable, sys.version.split()[0]))
    try:
        settings = settings_for(argv, log)
    except ConfigureError as exc:
        print("configure.py: error: %s" % exc, file=sys.stderr)
        return 1
    log("")
    for key in DEFAULTS:
        log("%s = %r" % (key, settings[key]))
    changed = write_if_changed(SETTINGS_FILE, render_settings(argv, settings))
    write_if_changed(LOG_FILE, "\n".join(log.lines) + "\n")
    write_if_changed(STATUS_FILE,
                     "#!/bin/sh\n# Re-runs configure.py with the switches last given to it.\n"
                     "cd \"$(dirname \"$0\")\" && exec %s configure.py %s \"$@\"\n"
                     % (shlex.quote(sys.executable), " ".join(shlex.quote(a) for a in argv)),
                     mode=0o755)
    print("configure.py: %s popper/_settings.py (spool %s, facility %s, native %s)"
          % ("wrote" if changed else "kept", settings["SPOOL_DIR"],
             settings["LOG_FACILITY"], "yes" if settings["NATIVE"] else "no"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
