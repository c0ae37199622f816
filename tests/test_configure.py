"""configure.py: its switches, its output files, and each switch changing
what popper does.

Each behaviour test copies the source tree, configures the copy, and runs
popper from it (pure Python: the copy has no compiled module)."""

import os
import pwd
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, Conversation, can_unshare, corpus, start_inetd

pytestmark = pytest.mark.clients

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=21)))

REQUIRED = ["--prefix", "--enable-bulletins", "--enable-bulldb", "--with-bulldb-long",
            "--enable-auto-delete",
            "--with-new-bulls", "--enable-debugging", "--enable-servermode",
            "--enable-spool-dir", "--enable-temp-drop-dir", "--enable-log-facility",
            "--enable-log-login", "--disable-update-abort", "--enable-keep-temp-drop",
            "--enable-apop", "--with-pam", "--with-sendmail", "--enable-shy", "--with-timeout",
            "--disable-native", "--with-locking", "--disable-uw-kludge"]


class Tree:
    """A copy of the source tree to configure and run."""

    def __init__(self, path):
        self.path = path
        ignore = shutil.ignore_patterns("_settings.py", "_cpopper*", "__pycache__", "*.o")
        for name in ("popper", "_native"):
            shutil.copytree(ROOT / name, path / name, ignore=ignore)
        for name in ("configure.py", "setup.py", "Makefile", "README.md"):
            shutil.copy(ROOT / name, path / name)

    def configure(self, *switches, check=True):
        result = subprocess.run([sys.executable, "configure.py", *switches], cwd=self.path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def settings(self) -> str:
        return (self.path / "popper" / "_settings.py").read_text()

    def command(self, mailhost, *args):
        return [sys.executable, "-m", "popper", "-f", str(mailhost.config), *args]

    def env(self):
        # Run from the copy (cwd=path too: python -m puts the cwd first on sys.path).
        return dict(os.environ, PYTHONPATH=str(self.path), POPPER_PUREPYTHON="1")

    def session(self, mailhost, *args, wrap=None) -> Conversation:
        command = self.command(mailhost, *args)
        return start_inetd(wrap(command) if wrap else command, env=self.env(), cwd=self.path)


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


def test_help_lists_every_switch(tree):
    result = tree.configure("--help")
    for switch in REQUIRED:
        assert re.search(r"^  %s\b" % re.escape(switch), result.stdout, re.M), switch


@pytest.mark.parametrize("switch,message", [
    ("--enable-frobnication", "--enable-frobnication: unknown switch"),
    ("--with-timeout=soon", "--with-timeout=soon: needs a whole number, not 'soon'"),
    ("--with-timeout=0", "--with-timeout=0: needs at least one second"),
    ("--with-timeout", "--with-timeout needs =ARG"),
    ("--enable-spool-dir=relative", "needs an absolute path, not 'relative'"),
    ("--enable-log-facility=LOG_BOGUS", "needs one of LOG_MAIL"),
    ("--with-locking=fcntl,fcntl", "needs fcntl, dotlock and/or flock, each once"),
    ("--with-locking=lockf", "needs fcntl, dotlock and/or flock, each once"),
    ("--enable-shy=yes", "--enable-shy takes no argument"),
    ("--disable-bulletins=/x", "--disable-bulletins takes no argument"),
    ("enable-shy", "not a switch"),
    ("--with-pam=two words", "needs a PAM service name"),
])
def test_bad_switches_exit_1(tree, switch, message):
    result = tree.configure(switch, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tree.path / "popper" / "_settings.py").exists()


def test_output_is_deterministic_and_rewritten_only_on_change(tree):
    switches = ["--enable-shy", "--with-timeout=300", "--enable-spool-dir=/var/spool/mail"]
    first = tree.configure(*switches)
    assert "wrote popper/_settings.py" in first.stdout
    settings = tree.path / "popper" / "_settings.py"
    text, mtime = settings.read_text(), settings.stat().st_mtime_ns
    assert "CONFIGURE_ARGS = %r" % switches in text
    assert "SHY = True" in text and "TIMEOUT = 300" in text
    assert "SPOOL_DIR = '/var/spool/mail'" in text
    assert not re.search(r"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", text)
    time.sleep(0.05)
    again = tree.configure(*switches)
    assert "kept popper/_settings.py" in again.stdout
    assert settings.stat().st_mtime_ns == mtime and settings.read_text() == text
    assert "checking for" in (tree.path / "config.log").read_text()
    tree.configure("--enable-log-login")
    assert "SHY = False" in settings.read_text()
    status = subprocess.run(["./config.status"], cwd=tree.path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    assert status.returncode == 0 and "LOG_LOGIN = True" in settings.read_text()


def test_defaults(tree, mailhost):
    tree.configure()
    text = tree.settings()
    assert "LOG_FACILITY = 'LOG_LOCAL1'" in text and "TIMEOUT = 120" in text
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    assert conv.greeting.startswith(b"+OK QPOP (version ")
    assert conv.login().startswith(b"+OK alice has 3 visible messages")


def test_enable_spool_dir_and_temp_drop_dir(tree, mailhost):
    spool, temp = mailhost.base / "s", mailhost.base / "t"      # where the test uid can go
    spool.mkdir()
    temp.mkdir()
    os.chmod(spool, 0o1777)
    os.chmod(temp, 0o1777)
    tree.configure("--enable-spool-dir=%s" % spool, "--enable-temp-drop-dir=%s" % temp)
    mailhost.config.write_text("set userdb = %s\nset auth-fail-delay = 0\n" % mailhost.userdb)
    mailhost.spool_dir = spool
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost, "-R")
    assert conv.login().startswith(b"+OK alice has 3 visible messages")
    assert (temp / ".alice.pop").stat().st_size == len(MAIL)
    deadline = time.monotonic() + 10        # the spool is emptied after the +OK
    while (spool / "alice").stat().st_size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (spool / "alice").stat().st_size == 0


def test_enable_auto_delete(tree, mailhost):
    tree.configure("--enable-auto-delete")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    conv.send(b"CAPA\r\n")
    conv.line()
    assert b"EXPIRE 0" in conv.multiline()
    assert conv.cmd("RETR 2").startswith(b"+OK")
    conv.multiline()
    conv.cmd("QUIT")
    ids = [m.message_id for m in corpus.messages(3, seed=21)]
    data = mailhost.spool().read_bytes()
    assert ids[1] not in data and ids[0] in data and ids[2] in data


def test_disable_update_abort(tree, mailhost):
    tree.configure("--disable-update-abort")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    assert conv.cmd("DELE 1").startswith(b"+OK")
    conv.close()                         # EOF without QUIT: everything comes back
    assert mailhost.spool().read_bytes() == MAIL


def test_default_update_on_abort_applies_dele(tree, mailhost):
    tree.configure()
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    assert conv.cmd("DELE 1").startswith(b"+OK")
    conv.close()
    assert mailhost.spool().read_bytes().count(b"\nX-UIDL: ") == 2


def test_enable_keep_temp_drop(tree, mailhost):
    tree.configure("--enable-keep-temp-drop")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    conv.cmd("QUIT")
    conv.close()
    assert mailhost.temp_drop().exists() and mailhost.temp_drop().stat().st_size == 0


def test_disable_status(tree, mailhost):
    tree.configure("--disable-status")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    conv.send(b"UIDL\r\n")
    conv.line()
    first = conv.multiline()
    conv.cmd("RETR 1")
    conv.multiline()
    conv.cmd("QUIT")
    conv.close()
    # As Qpopper 4.0.5's pop_updt.c: X-UIDL: is written first in each
    # message all the same, but no Status: is added where there was none.
    written = mailhost.spool().read_bytes()
    uids = [line.split(b" ", 1)[1] for line in first]
    assert re.findall(rb"\nX-UIDL: (.*)\n", b"\n" + written) == uids
    assert b"\nStatus:" not in written
    assert re.sub(rb"(?m)^X-UIDL: .*\n", b"", written) == MAIL
    conv = tree.session(mailhost)                         # UIDs from the mail alone
    conv.login()
    conv.send(b"UIDL\r\n")
    conv.line()
    assert conv.multiline() == first


def test_enable_old_uidl(tree, mailhost):
    tree.configure("--enable-old-uidl")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    conv.login()
    assert re.fullmatch(rb"\+OK 1 [0-9a-f]{32}", conv.cmd("UIDL 1"))


def test_enable_shy(tree, mailhost):
    tree.configure("--enable-shy")
    conv = tree.session(mailhost)
    assert conv.greeting == b"+OK ready"


def test_with_timeout(tree, mailhost):
    tree.configure("--with-timeout=1")
    conv = tree.session(mailhost)
    host = conv.greeting.split(b" at ")[1].split(b" ")[0]
    assert conv.line() == b"-ERR POP timeout from " + host          # the server: popper.c, pop_exit


def test_enable_servermode(tree, mailhost):
    tree.configure("--enable-servermode")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost)
    assert conv.login().startswith(b"+OK alice has 3 visible messages")
    assert mailhost.temp_drop().stat().st_size == 0          # served in place
    assert mailhost.spool().read_bytes() == MAIL


def test_disable_uw_kludge(tree, mailhost):
    folder_data = (b"From MAILER-DAEMON Thu Nov 26 14:34:16 2026\n"
                   b"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
                   b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\nx\n\n")
    mailhost.deliver(folder_data + MAIL)
    tree.configure()
    assert tree.session(mailhost).login().startswith(b"+OK alice has 3 visible messages (1 hidden)")
    tree.configure("--disable-uw-kludge")
    assert tree.session(mailhost).login().startswith(b"+OK alice has 4 visible messages (0 hidden)")


def test_with_locking_chooses_the_locks(tree, mailhost):
    import fcntl
    mailhost.deliver(MAIL)
    mailhost.write_config("set spool-lock-wait = 1")
    with open(mailhost.spool(), "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)         # another program's flock on the spool
        tree.configure()
        assert tree.session(mailhost).login() == (
            b"-ERR [SYS/TEMP] flock: '%s': Resource temporarily unavailable (11)"
            % str(mailhost.spool()).encode())
        tree.configure("--with-locking=dotlock,fcntl")
        assert tree.session(mailhost).login().startswith(b"+OK alice has 3 visible messages")


def test_enable_apop_names_the_database_and_with_popuid_its_owner(tree, mailhost):
    base = mailhost.base / "pop.auth"
    tree.configure("--enable-apop=%s" % base, "--with-popuid=no-such-admin")
    assert "APOP_DB = %r" % str(base) in tree.settings()
    result = subprocess.run(tree.command(mailhost), env=tree.env(), cwd=tree.path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 1 and (
        "popper: the POP administrator no-such-admin (set popuid, configure.py --with-popuid) "
        "is not a user: APOP's database %s must be that user's" % base) in result.stderr
    admin = pwd.getpwuid(1 if os.geteuid() == 0 else os.getuid()).pw_name
    tree.configure("--enable-apop=%s" % base, "--with-popuid=%s" % admin)
    assert "POPUID = %r" % admin in tree.settings()
    # No database yet: Qpopper's greeting without a timestamp, and USER/PASS as ever.
    conv = tree.session(mailhost)
    assert conv.greeting.startswith(b"+OK ") and not conv.greeting.endswith(b">")
    assert conv.login().startswith(b"+OK alice has 0 visible messages")


def test_disable_native_builds_no_extension(tree):
    probe = ("import runpy, setuptools; seen = {}; "
             "setuptools.setup = lambda **kw: seen.update(kw); "
             "runpy.run_path('setup.py'); print(seen['cffi_modules'])")
    tree.configure()
    built = subprocess.run([sys.executable, "-c", probe], cwd=tree.path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
    tree.configure("--disable-native")
    pure = subprocess.run([sys.executable, "-c", probe], cwd=tree.path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert "NATIVE = False" in tree.settings()
    if "NATIVE = True" in (ROOT / "popper" / "_settings.py").read_text() if (
            ROOT / "popper" / "_settings.py").exists() else True:
        assert "'_native/build.py:_cpopper'" in built.stdout
    assert pure.stdout.strip() == "[]"


syslog_only = pytest.mark.skipif(not can_unshare(), reason="capturing syslog needs root")


@pytest.mark.root
@syslog_only
def test_log_facility_and_log_login_and_debugging(tree, mailhost, syslog):
    mailhost.deliver(MAIL)
    tree.configure()
    conv = tree.session(mailhost, wrap=syslog.wrap)
    conv.cmd("BOGUS")                           # every -ERR is logged
    conv.login()
    conv.cmd("QUIT")
    conv.close()
    plain = syslog.collect()
    assert {facility for facility, _, _ in plain} == {17}          # LOCAL1
    assert not any("POP login by user" in text for _, _, text in plain)
    assert not any(re.search(r" \[\w+\.py:\d+\]$", text) for _, _, text in plain)
    syslog.records.clear()

    tree.configure("--enable-log-facility=LOG_MAIL", "--enable-log-login", "--enable-debugging")
    mailhost.deliver(MAIL)
    conv = tree.session(mailhost, wrap=syslog.wrap)
    conv.cmd("BOGUS")
    conv.login()
    conv.cmd("QUIT")
    conv.close()
    records = syslog.collect()
    assert records and {facility for facility, _, _ in records} == {2}       # MAIL
    logins = [text for _, _, text in records if 'POP login by user "alice"' in text]
    assert logins and re.search(r" \[session\.py:\d+\]$", logins[0])
