#!/usr/bin/env python3
"""configure.py -- Qpopper's ./configure switches for popper.

Run it before building, as one would run Qpopper's ./configure:

    ./configure.py --enable-spool-dir=/var/mail --enable-log-login
    ./configure.py --prefix=/usr --sysconfdir=/etc PYTHON=/usr/bin/python3

It takes autoconf's installation directories (--prefix, --sbindir, ...,
with autoconf's defaults) for make install, PYTHON=PATH (or $PYTHON) to
choose the interpreter that builds, installs and runs popper, and, ignoring
them, the switches packaging tools always pass (--build=, --host=, ...).

It writes three files:

  popper/_settings.py  the compiled-in defaults popper starts from (the
                       -f config file and the command line override them);
                       deterministic, rewritten only when its content changes
  config.log           what was checked and found, for the administrator
  config.status        a script that re-runs configure.py with the same switches

An unknown or malformed switch is an error (exit status 1).
"""

import os
import posixpath
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

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


def _bulldb_long(value: str) -> str:
    if value not in ("native", "4-little", "8-little", "4-big", "8-big"):
        raise ConfigureError("is native, 4-little, 8-little, 4-big or 8-big, not %r" % value)
    return value


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


def _directory(value: str) -> str:
    """An installation directory: absolute, or starting with another one's
    autoconf name (--mandir='${prefix}/share/man', as packaging tools pass
    it); directories() expands and checks it."""
    if not value.startswith(("/", "$")):
        raise ConfigureError("needs an absolute path, not %r" % value)
    return value


def _directory_or_no(value: str) -> str:
    return value if value == "no" else _directory(value)


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


class Directory(Switch):
    """An installation directory (autoconf's): by default the path under
    inside the directory it follows, so that it moves with that one's switch."""

    def __init__(self, spelling, key, follows, under, help, check=_directory, off=None):
        Switch.__init__(self, spelling, key, help, off=off, check=check)
        self.follows, self.under = follows, under
        self.variable = self.name.replace("-", "_")      # ${exec_prefix} in a value


# make install's directories, with autoconf's names, meanings and defaults.
DIRECTORIES = [
    Directory("--prefix=PREFIX", "PREFIX", None, "/usr/local",
              "install under PREFIX [/usr/local]"),
    Directory("--exec-prefix=EPREFIX", "EXEC_PREFIX", "PREFIX", "",
              "install the machine-specific files under EPREFIX [PREFIX]"),
    Directory("--sbindir=DIR", "SBINDIR", "EXEC_PREFIX", "sbin",
              "the popper program [EPREFIX/sbin]"),
    Directory("--libdir=DIR", "LIBDIR", "EXEC_PREFIX", "lib",
              "popper's Python package and C extension, in DIR/popper [EPREFIX/lib]"),
    Directory("--libexecdir=DIR", "LIBEXECDIR", "EXEC_PREFIX", "libexec",
              "programs popper runs (none yet) [EPREFIX/libexec]"),
    Directory("--sysconfdir=DIR", "SYSCONFDIR", "PREFIX", "etc",
              "popper.conf, pam.d/popper, xinetd.d/popper [PREFIX/etc]"),
    Directory("--localstatedir=DIR", "LOCALSTATEDIR", "PREFIX", "var",
              "data that changes (none yet) [PREFIX/var]"),
    Directory("--datarootdir=DIR", "DATAROOTDIR", "PREFIX", "share",
              "read-only data [PREFIX/share]"),
    Directory("--datadir=DIR", "DATADIR", "DATAROOTDIR", "",
              "the inetd.conf line, in DIR/popper [DATAROOTDIR]"),
    Directory("--mandir=DIR", "MANDIR", "DATAROOTDIR", "man",
              "manual pages, in DIR/man8 [DATAROOTDIR/man]"),
    # systemd reads units from /usr/lib/systemd/system and
    # /usr/local/lib/systemd/system: the default is right for both prefixes.
    Directory("--with-systemdsystemunitdir=DIR", "SYSTEMD_UNIT_DIR", "PREFIX",
              "lib/systemd/system",
              "systemd units (no: none) [PREFIX/lib/systemd/system]",
              check=_directory_or_no, off="no"),
]

# What packaging tools (dh_auto_configure, rpm's %configure, ports, pkgsrc)
# pass to every ./configure: accepted and ignored, each with a config.log line
# (those spelled with = are given a value).
IGNORED = {
    "build=": "popper is built for the machine and the Python it is configured on",
    "host=": "popper is built for the machine and the Python it is configured on",
    "target=": "popper is built for the machine and the Python it is configured on",
    "bindir=": "make install puts nothing in bindir",
    "includedir=": "popper installs no C headers",
    "oldincludedir=": "popper installs no C headers",
    "infodir=": "popper has no info manual",
    "localedir=": "popper has no translations",
    "docdir=": "popper's documentation is its manual page",
    "htmldir=": "popper's documentation is its manual page",
    "runstatedir=": "make install puts nothing in runstatedir",
    "sharedstatedir=": "make install puts nothing in sharedstatedir",
    "program-prefix=": "the program is popper, as inetd.conf lines name it",
    "program-suffix=": "the program is popper, as inetd.conf lines name it",
    "program-transform-name=": "the program is popper, as inetd.conf lines name it",
    "disable-dependency-tracking": "cffi rebuilds the C extension whole",
    "enable-dependency-tracking": "cffi rebuilds the C extension whole",
    "disable-silent-rules": "the Makefile has no silent rules",
    "enable-silent-rules": "the Makefile has no silent rules",
    "disable-maintainer-mode": "no build file is generated from another",
    "enable-maintainer-mode": "no build file is generated from another",
    "disable-option-checking": "an unknown switch is still an error",
    "cache-file=": "configure.py keeps no cache",
    "config-cache": "configure.py keeps no cache",
    "srcdir=": "configure.py builds in its own directory",
}

# autoconf's variables (VAR=value, or VAR in the environment) that configure.py takes.
VARIABLES = {"PYTHON": "the Python that builds, installs and runs popper "
                       "[the one running configure.py]"}

SWITCHES = DIRECTORIES + [
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
    Switch("--with-bulldb-long=KIND", "BULLDB_LONG",
           "the bulletin database's C long and byte order: native, 4-little (SCO i386), "
           "8-little (Linux amd64), 4-big, 8-big [native]", off="native", check=_bulldb_long),
    Switch("--with-new-bulls=N", "NEWBULLCNT",
           "how many existing bulletins a new user gets [1]", off=0, check=_count),
    Switch("--enable-auto-delete", "AUTO_DELETE",
           "delete retrieved messages at QUIT and announce EXPIRE 0 [no]"),
    Switch("--disable-update-abort", "UPDATE_ON_ABORT",
           "on hangup or timeout keep every message instead of applying DELE [apply]"),
    Switch("--enable-enforce-login-delay", "ENFORCE_LOGIN_DELAY",
           "refuse a login sooner than -e login_delay=N seconds after the last [no: announce only]"),
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
    Switch("--with-popuid=USER", "POPUID",
           "the POP administrator, who owns the APOP database (popauth) [pop]",
           off=None, check=_account),
    Switch("--with-pam[=SERVICE]", "PAM_SERVICE",
           "authenticate through PAM service SERVICE [no; SERVICE pop3]",
           bare="pop3", off=None, check=_service),
    Switch("--with-sendmail=PATH", "MAIL_COMMAND",
           "program XTND XMIT hands mail to [/usr/lib/sendmail; /usr/sbin/sendmail if only it is here]",
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
    "PYTHON": None,             # None: the interpreter running configure.py
    "PREFIX": "/usr/local",
    "EXEC_PREFIX": None,        # None: the default of a Directory, resolved by directories()
    "SBINDIR": None,
    "LIBDIR": None,
    "LIBEXECDIR": None,
    "SYSCONFDIR": None,
    "LOCALSTATEDIR": None,
    "DATAROOTDIR": None,
    "DATADIR": None,
    "MANDIR": None,
    "SYSTEMD_UNIT_DIR": None,   # ... and after it, None: install no units
    "SPOOL_DIR": None,
    "TEMP_DIR": None,           # None: the spool directory
    "SERVER_MODE": False,
    "BULLDIR": None,
    "BULLDB": None,             # None: off; "": on, in the bulletin directory
    "NEWBULLCNT": 1,
    "BULLDB_LONG": "native",
    "AUTO_DELETE": False,
    "UPDATE_ON_ABORT": True,
    "ENFORCE_LOGIN_DELAY": False,
    "KEEP_TEMP_DROP": False,
    "UPDATE_STATUS_HEADERS": True,
    "OLD_STYLE_UID": False,
    "LOG_FACILITY": "LOG_LOCAL1",
    "LOG_LOGIN": False,
    "DEBUG": False,
    "SHY": False,
    "APOP_DB": None,
    "POPUID": "pop",
    "PAM_SERVICE": None,
    "MAIL_COMMAND": None,
    "TIMEOUT": 120,
    "LOCKING": ("fcntl", "dotlock", "flock"),
    "LOGIN_USER": "nobody",
    "UW_KLUDGE": True,
    "NATIVE": True,             # the C core: _native/modules.py's modules that are not optional
}
# The compiled modules, _native/modules.py's table: each optional one's
# setting (NATIVE_PAM) is probed, true where its header and library are found.
MODULES = runpy.run_path(os.path.join(HERE, "_native", "modules.py"))["MODULES"]
DEFAULTS.update((module.setting, False) for module in MODULES if module.optional)


def usage() -> str:
    lines = ["Usage: ./configure.py [SWITCH]... [PYTHON=PATH]", "",
             "Writes popper/_settings.py, config.log and config.status.", "",
             "Installation directories (make install; DESTDIR=DIR stages them in DIR):"]
    for switch in SWITCHES:
        if switch is SWITCHES[len(DIRECTORIES)]:
            lines += ["", "Features:"]
        lines.append("  %-30s %s" % (switch.spelling, switch.help))
    lines += ["", "Variables (or from the environment):"]
    lines += ["  %-30s %s" % (name + "=PATH", text) for name, text in sorted(VARIABLES.items())]
    lines += ["", "Other switches:",
              "  %-30s %s" % ("--help, -h", "show this text"),
              "  %-30s %s" % ("--version, -V", "show popper's version"),
              "  %-30s %s" % ("--quiet, --silent, -q", "print nothing but errors"),
              "", "Accepted and ignored, as packaging tools pass them:"]
    lines += textwrap.wrap(" ".join("--" + word + ("ARG" if word.endswith("=") else "")
                                    for word in sorted(IGNORED)),
                           initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    lines.append("")
    return "\n".join(lines)


QUIET = ("-q", "--quiet", "--silent")


def parse(argv: list, log=None) -> dict:
    """Turn the switches into settings; raise ConfigureError on a bad one.
    Ignored switches are noted in log."""
    chosen = {}
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and re.match(r"[A-Za-z_]\w*$", name):
            if name not in VARIABLES:
                raise ConfigureError("%s: configure.py takes no variable %s, only %s"
                                     % (arg, name, ", ".join(v + "=" for v in VARIABLES)))
            chosen[name] = value
            continue
        if arg in QUIET:
            continue
        if not arg.startswith("--"):
            raise ConfigureError("%s: not a switch (they all start with --)" % arg)
        word, eq, value = arg[2:].partition("=")
        ignored = IGNORED.get(word + "=") or IGNORED.get(word)
        if ignored:
            if log:
                log("ignored %s: %s" % (arg, ignored))
            continue
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
    """The manual page's /usr/lib/sendmail, unless this host has only the
    FHS's /usr/sbin/sendmail (Debian's MTAs need not make the old link)."""
    for candidate in ("/usr/lib/sendmail", "/usr/sbin/sendmail"):
        found = os.access(candidate, os.X_OK)
        log("checking for %s... %s" % (candidate, "yes" if found else "no"))
        if found:
            return candidate
    return "/usr/lib/sendmail"


def probe_c(log: Log, header: str, library, include=()) -> bool:
    """Can this machine compile and link a program using header/library
    (None: no library), with the directories include searched for headers?"""
    cc = sysconfig.get_config_var("CC") or "cc"
    compiler = shlex.split(cc)
    if not shutil.which(compiler[0]):
        log("checking for a C compiler (%s)... no" % cc)
        return False
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "conftest.c")
        with open(source, "w") as f:
            f.write("#include <%s>\nint main(void) { return 0; }\n" % header)
        cmd = compiler + ["-I" + d for d in include] + [source, "-o",
                                                         os.path.join(tmp, "conftest")]
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
        log("  %s has no cffi (Debian: apt-get install python3-cffi; or pip install cffi)"
            % sys.executable)
        return False
    log("checking for the cffi Python package... yes (%s)" % cffi.__version__)
    return True


def directories(settings: dict) -> None:
    """Resolve the installation directories in settings: a default under the
    directory it follows, ${name} (or $name) of an earlier one expanded."""
    known = {}
    for d in DIRECTORIES:
        value = settings[d.key]
        if value is None:
            value = d.under if d.follows is None else posixpath.join(settings[d.follows],
                                                                     d.under)
        elif value == "no":
            settings[d.key] = known[d.variable] = None
            continue

        def expand(match, d=d):
            name = match.group(1) or match.group(2)
            if name not in known:
                raise ConfigureError("--%s=%s: ${%s} is not a directory named before it (%s)"
                                     % (d.on_word, settings[d.key], name, ", ".join(known)))
            return known[name]
        value = re.sub(r"\$\{(\w+)\}|\$(\w+)", expand, value)
        if not value.startswith("/") or re.search(r"\s", value):
            raise ConfigureError("--%s=%s: needs an absolute path without white space (it goes "
                                 "into unit files and inetd.conf lines)" % (d.on_word, value))
        settings[d.key] = known[d.variable] = posixpath.normpath(value)


def probe_python_headers(log: Log) -> bool:
    """Python.h, which the cffi extension is compiled against (Debian: python3-dev)."""
    paths = sysconfig.get_paths()
    include = sorted({paths["include"], paths["platinclude"]})
    ok = probe_c(log, "Python.h", None, include)
    if not ok:
        log("  the headers of %s are missing (Debian: apt-get install python3-dev)"
            % sys.executable)
    return ok


def settings_for(argv: list, log: Log, python: str = None) -> dict:
    """The settings argv asks for, the rest probed; python is the interpreter
    configure.py runs as, if it is the one PYTHON= chose (main re-runs it so),
    else PYTHON= names another (a package's target), or it is this one."""
    settings = dict(DEFAULTS)
    settings.update(parse(argv, log))
    settings["PYTHON"] = python or settings["PYTHON"] or sys.executable
    if not settings["PYTHON"].startswith("/"):
        raise ConfigureError("PYTHON=%s: needs an absolute path here" % settings["PYTHON"])
    directories(settings)
    if settings["SPOOL_DIR"] is None:
        settings["SPOOL_DIR"] = probe_spool_dir(log)
    if settings["MAIL_COMMAND"] is None:
        settings["MAIL_COMMAND"] = probe_sendmail(log)
    if settings["NATIVE"]:
        probes = [probe_cffi(log), probe_python_headers(log)] + [
            probe_c(log, *module.probe) for module in MODULES if not module.optional]
        if not all(probes):
            log("the C extension cannot be built here: popper will use its pure-Python twins")
            settings["NATIVE"] = False
    # An optional module is built whenever its header and library are there
    # (its pure twin stands in otherwise): PAM's binding, python-pam;
    # --with-pam makes PAM the default authenticator either way.
    for module in MODULES:
        if module.optional:
            settings[module.setting] = bool(settings["NATIVE"]) and probe_c(log, *module.probe)
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


# Set while configure.py re-runs itself with the PYTHON it was given.
RERUN = "POPPER_CONFIGURE_PYTHON"


def chosen_python(argv: list):
    """The interpreter PYTHON= (the last one) or $PYTHON names, or None."""
    given = [arg.partition("=")[2] for arg in argv if arg.startswith("PYTHON=")]
    return given[-1] if given else os.environ.get("PYTHON") or None


def run_with(python: str, argv: list) -> None:
    """Re-run configure.py with the interpreter python, so that what is
    probed (cffi, its headers) and recorded is that interpreter's; return if
    this is it already."""
    path = os.path.abspath(python) if "/" in python else shutil.which(python)
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ConfigureError("PYTHON=%s: no such program" % python)
    if os.environ.pop(RERUN, None) == path or path == sys.executable:
        return
    if subprocess.call([path, "-c", "import sys; sys.exit(sys.version_info < (3, 6))"]):
        raise ConfigureError("PYTHON=%s: popper needs Python 3.6 or newer" % python)
    os.execve(path, [path, os.path.abspath(__file__)] + argv, dict(os.environ, **{RERUN: path}))


def version() -> str:
    return runpy.run_path(os.path.join(HERE, "popper", "__init__.py"))["__version__"]


def main(argv: list) -> int:
    if "--help" in argv or "-h" in argv:
        print(usage())
        return 0
    if "--version" in argv or "-V" in argv:
        print("popper configure.py %s" % version())
        return 0
    try:
        python = chosen_python(argv)
        if python:
            run_with(python, argv)
    except (ConfigureError, OSError) as exc:
        print("configure.py: error: %s" % exc, file=sys.stderr)
        return 1
    log = Log()
    log("This file records what ./configure.py checked; popper/_settings.py holds the result.")
    log("")
    log("$ ./configure.py " + " ".join(shlex.quote(a) for a in argv))
    log("python: %s (%s)" % (sys.executable, sys.version.split()[0]))
    try:
        settings = settings_for(argv, log, python=sys.executable)
    except ConfigureError as exc:
        print("configure.py: error: %s" % exc, file=sys.stderr)
        return 1
    log("")
    for key in DEFAULTS:
        log("%s = %r" % (key, settings[key]))
    changed = write_if_changed(SETTINGS_FILE, render_settings(argv, settings))
    write_if_changed(LOG_FILE, "\n".join(log.lines) + "\n")
    # The same interpreter, whatever $PYTHON says when it is run.
    again = [a for a in argv if not a.startswith("PYTHON=")] + ["PYTHON=" + sys.executable]
    write_if_changed(STATUS_FILE,
                     "#!/bin/sh\n# Re-runs configure.py with the switches last given to it.\n"
                     "cd \"$(dirname \"$0\")\" && exec %s configure.py %s \"$@\"\n"
                     % (shlex.quote(sys.executable), " ".join(shlex.quote(a) for a in again)),
                     mode=0o755)
    if not any(arg in QUIET for arg in argv):
        print("configure.py: %s popper/_settings.py (spool %s, facility %s, native %s, "
              "python %s, prefix %s)"
              % ("wrote" if changed else "kept", settings["SPOOL_DIR"],
                 settings["LOG_FACILITY"], "yes" if settings["NATIVE"] else "no",
                 settings["PYTHON"], settings["PREFIX"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
