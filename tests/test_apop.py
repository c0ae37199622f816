"""APOP and the pop.auth database: popauth's texts and files, the greeting's
timestamp, APOP's replies (Qpopper 4.0.5's pop_apop.c, pop_user.c), the
clear-text policy (-p 0..4), real clients (curl, fetchmail, mpop) for
users made with popauth, and a change of the database killed half way.

The POP administrator (set popuid) is daemon when the tests run as root,
else the user running them; the users are the test user database's.
"""

import codecs
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys

import pytest

import clients
from conftest import USERS, corpus
from popper.auth import apop

ADMIN = pwd.getpwuid(1 if os.geteuid() == 0 else os.getuid())
SECRET = "Apop-Secret9"
TIMESTAMP = re.compile(rb"^\+OK QPOP \(version [^)]*\) at \S+ starting\.  (<\d+\.\d+@[^>]+>)$")
MAIL = corpus.mbox_bytes(list(corpus.messages(2, seed=7)))
POPAUTH = ("import sys; sys.argv[0] = 'popauth'; from popper.popauth import main; "
           "sys.exit(main())")


class ApopHost:
    def __init__(self, mailhost):
        self.mailhost = mailhost
        self.base = mailhost.base / "pop.auth"
        self.lines = ["set apop-file = %s" % self.base, "set popuid = %s" % ADMIN.pw_name]
        self.config()

    def config(self, *extra):
        self.mailhost.write_config(*self.lines, *extra)

    def popauth(self, *args, input="", env=None):
        return subprocess.run([sys.executable, "-c", POPAUTH, "-f", str(self.mailhost.config),
                               *args], input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=30,
                              env=env, start_new_session=True)   # no /dev/tty: stdin

    def secret(self, user):
        with apop.Reader(str(self.base), ADMIN.pw_uid) as db:
            value = db.fetch(apop.key(user))
        return None if value is None else apop.decode(value)


@pytest.fixture
def host(mailhost):
    h = ApopHost(mailhost)
    assert h.popauth("-init").returncode == 0
    assert h.popauth("-user", "alice", SECRET).returncode == 0
    mailhost.deliver(MAIL)
    return h


def digest(greeting: bytes, secret: str) -> str:
    stamp = TIMESTAMP.match(greeting)
    assert stamp, greeting
    return hashlib.md5(stamp.group(1) + secret.encode()).hexdigest()


# --- popauth ---------------------------------------------------------------------------

def test_init_makes_an_empty_database_of_the_pop_administrator(mailhost):
    h = ApopHost(mailhost)
    result = h.popauth("-init")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    for suffix in (".dir", ".pag"):
        st = os.lstat(str(h.base) + suffix)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == ADMIN.pw_uid
    assert sorted(os.listdir(mailhost.base)) == sorted(
        os.listdir(mailhost.base))                        # no leftovers of the change:
    assert not [n for n in os.listdir(mailhost.base) if ".new." in n or ".commit." in n]
    # Again: Qpopper's question, and nothing without a "y".
    result = h.popauth("-init", input="n\n")
    assert (result.returncode, result.stdout) == (1, "Really initialize POP authentication DB? ")
    result = h.popauth("-init", "-safe")
    assert (result.returncode, result.stderr) == (
        0, "POP authentication DB not initialized (exists): %s.pag (and .dir )\n" % h.base)


@pytest.mark.twin
def test_user_list_delete_and_their_texts(host):
    result = host.popauth("-user", "bob", "Hunter22")
    assert (result.returncode, result.stderr) == (0, "Adding only APOP password for bob.\n")
    result = host.popauth("-user", "bob", "Hunter23")
    assert (result.returncode, result.stderr) == (0, "Changing only APOP password for bob.\n")
    assert host.secret("bob") == b"Hunter23"
    # The record as Qpopper 4's popauth writes it: "bob\0" -> secret XOR 0xFF, NUL, NUL.
    with apop.Reader(str(host.base), ADMIN.pw_uid) as db:
        assert db.fetch(b"bob\0") == bytes(c ^ 0xFF for c in b"Hunter23") + b"\0\0"
        assert sorted(db.keys()) == [b"alice\0", b"bob\0"]
    assert host.popauth("-list", "bob").stdout == "bob             : APOP \n"
    listing = host.popauth("-list", "ALL").stdout
    assert sorted(listing.splitlines()) == ["alice           : APOP ", "bob             : APOP "]
    result = host.popauth("-list", "carol")
    assert (result.returncode, result.stderr) == (
        1, 'popauth: no entry for "carol" in POP authentication DB\n')
    result = host.popauth("-delete", "carol")
    assert (result.returncode, result.stderr) == (
        1, 'Warning: deleting user "carol"\n'
           "popauth: User 'carol' not found in authentication database\n")
    result = host.popauth("-delete", "bob")
    assert (result.returncode, result.stderr) == (0, 'Warning: deleting user "bob"\n')
    assert host.secret("bob") is None and host.secret("alice") == SECRET.encode()


@pytest.mark.parametrize("args,status,stderr", [
    (["-frobnicate"], 1, 'popauth: "-frobnicate" unknown option\nusage: popauth'),
    (["alice"], 1, 'popauth: unrecognized switch "alice"usage: popauth'),
    (["-user"], 1, "popauth: missing argument for -user\n"),
    (["-delete", "-list"], 1, "popauth: missing argument for -delete\n"),
    (["-user", "zed", "Secret99"], 1, "popauth: Sorry, don't know who user zed is.\n"),
])
def test_bad_arguments(host, args, status, stderr):
    result = host.popauth(*args)
    assert result.returncode == status
    assert result.stderr.startswith(stderr), result.stderr


def test_usage_is_qpopper_4s(host):
    result = host.popauth("-help")
    assert result.returncode == 1
    assert result.stderr == ("usage: popauth [ <action> ]\n"
                             "<action>: -init [ -safe ] \n"
                             "          -list [ <user> | ALL ]\n"
                             "          -user <user> [ <password> ]\n"
                             "          -delete <user>\n"
                             "          -help\n"
                             "          -version\n")


def test_prompts_strength_rules_and_mismatch(host):
    """No password on the line: popauth asks (stdin when there is no terminal)."""
    env = dict(os.environ)
    # A weak one (digits only), then a short one: Qpopper asks once more, then takes it.
    result = host.popauth("-user", "bob", input="1234567\nabc\nabc\n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Please use at least one non-numeric character.\n"
    assert result.stderr == ("Adding only APOP password for bob.\nNew password:New password:"
                             "Retype new password:")
    assert host.secret("bob") == b"abc"
    result = host.popauth("-user", "bob", input="Good-one1\nGood-one2\n")
    assert result.returncode == 1
    assert result.stderr.endswith("Retype new password:Mismatch -- password unchanged.\n")
    result = host.popauth("-user", "bob", input="\n")
    assert result.returncode == 1 and result.stderr.endswith("New password:Password unchanged.\n")
    assert host.secret("bob") == b"abc"
    result = host.popauth("-user", "bob", input="Good-one1\nGood-one1\n")
    assert (result.returncode, result.stdout) == (0, "")
    assert host.secret("bob") == b"Good-one1"


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo's case: popauth run as root")
def test_sudo_popauth_changes_the_callers_own_secret_after_the_old_one(host):
    caller = pwd.getpwnam("sys")        # a passwd user; SUDO_UID names who ran sudo
    apop.change(str(host.base), ADMIN.pw_uid, ADMIN.pw_gid, lambda old, new: (
        apop.copy_records(old, new), new.store(apop.key("sys"), apop.encode(b"Old-one1"))))
    env = dict(os.environ, SUDO_UID=str(caller.pw_uid))
    result = host.popauth(input="Old-one2\n", env=env)
    assert (result.returncode, result.stderr) == (
        1, "Changing only APOP password for sys.\nOld password:"
           "popauth: Sorry, password entered incorrectly\n\n")
    result = host.popauth(input="Old-one1\nNew-one22\nNew-one22\n", env=env)
    assert (result.returncode, result.stderr) == (
        0, "Changing only APOP password for sys.\nOld password:New password:"
           "Retype new password:")
    assert host.secret("sys") == b"New-one22"
    # An action is root's own, SUDO_UID or not.
    assert host.popauth("-list", "alice", env=env).stdout == "alice           : APOP \n"


def test_strength_rule():
    from popper.popauth import strength, strong
    for secret, ok in ((b"abcdef", True), (b"abcde", False), (b"abc12", True), (b"abc1", False),
                       (b"aB1x", True), (b"aB1", False), (b"123456789", False),
                       (b"ABCDEF", True), (b"!!!!", True)):       # "!!!!": 8 >= 7, as Qpopper
        assert strong(secret, strength(secret)) == ok, secret


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: another user runs popauth")
def test_who_may_do_what(host):
    def as_user(uid, *args):
        """popauth run by another user: forked from the tests (as root) and
        dropped to uid, since an interpreter under root's home cannot be
        exec'd by another user."""
        from popper import popauth
        codecs.lookup("latin-1")            # its codec loaded while the files can be read
        out, err = os.pipe(), os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.dup2(out[1], 1)
                os.dup2(err[1], 2)
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                sys.stdout, sys.stderr = open(1, "w"), open(2, "w")
                code = popauth.main(["popauth", "-f", str(host.mailhost.config), *args])
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException as exc:
                os.write(2, repr(exc).encode())
            finally:
                os._exit(code)
        os.close(out[1])
        os.close(err[1])
        with open(out[0]) as o, open(err[0]) as e:
            stdout, stderr = o.read(), e.read()
        status = os.waitpid(pid, 0)[1]
        return subprocess.CompletedProcess(args, os.WEXITSTATUS(status), stdout, stderr)
    nobody = pwd.getpwnam("nobody").pw_uid
    assert as_user(nobody, "-user", "alice", "x").stderr == (
        'popauth: Only superuser or user "%s" can perform the requested function\n'
        % ADMIN.pw_name)
    assert as_user(nobody, "-delete", "alice").returncode == 1
    assert as_user(ADMIN.pw_uid, "-init", "-safe").stderr == (
        "popauth: Only superuser can perform the requested function\n")
    # The administrator may read the database (theirs), not replace it in a
    # directory that is root's.
    assert as_user(ADMIN.pw_uid, "-list", "alice").stdout == "alice           : APOP \n"
    result = as_user(ADMIN.pw_uid, "-user", "alice", "Other-one1")
    assert result.returncode == 1 and "Permission denied" in result.stderr
    assert host.secret("alice") == SECRET.encode()


# --- the greeting and APOP on the wire ---------------------------------------------------

def test_greeting_carries_a_timestamp_exactly_when_the_database_is_usable(host, inetd):
    greeting = inetd().greeting
    stamp = TIMESTAMP.match(greeting)
    assert stamp, greeting
    assert re.match(rb"<\d+\.\d+@", stamp.group(1))
    assert int(stamp.group(1)[1:].split(b".")[0]) > 1
    os.chmod(str(host.base) + ".dir", 0o644)                 # Qpopper's mode check
    assert not TIMESTAMP.match(inetd().greeting)
    os.chmod(str(host.base) + ".dir", 0o600)
    assert TIMESTAMP.match(inetd().greeting)
    pag = str(host.base) + ".pag"
    os.rename(pag, pag + ".away")
    os.symlink(pag + ".away", pag)                          # never through a link
    assert not TIMESTAMP.match(inetd().greeting)
    os.unlink(pag)
    os.rename(pag + ".away", pag)
    for suffix in (".dir", ".pag"):
        os.unlink(str(host.base) + suffix)
    assert inetd().greeting.endswith(b"starting.")           # no database: no timestamp


@pytest.mark.twin
def test_apop_logs_in(host, inetd):
    conv = inetd()
    reply = conv.cmd("APOP alice " + digest(conv.greeting, SECRET))
    octets = re.match(rb"^\+OK alice has 2 visible messages \(0 hidden\) in (\d+) octets\.$",
                      reply)
    assert octets, reply
    assert conv.cmd("STAT") == b"+OK 2 " + octets.group(1)
    host_name = conv.greeting.split(b" at ")[1].split(b" ")[0]
    assert conv.cmd("QUIT") == b"+OK Pop server at %s signing off." % host_name


@pytest.mark.parametrize("user,secret,why", [
    ("alice", "wrong-one", "wrong digest"),
    ("nosuchuser", SECRET, "no such user"),
    ("bob", USERS["bob"], "no APOP secret"),
])
def test_every_failure_gets_the_same_answer(host, inetd, user, secret, why):
    conv = inetd()
    assert conv.cmd("APOP %s %s" % (user, digest(conv.greeting, secret))) == (
        b"-ERR [AUTH] authentication failure")
    # The session goes on, back to USER: a right digest logs in now.
    assert conv.cmd("APOP alice " + digest(conv.greeting, SECRET)).startswith(b"+OK alice")


def test_digest_compares_case_sensitively(host, inetd):
    conv = inetd()
    assert conv.cmd("APOP alice " + digest(conv.greeting, SECRET).upper()) == (
        b"-ERR [AUTH] authentication failure")


def test_a_database_made_unusable_after_the_greeting_fails_alike(host, inetd):
    conv = inetd()
    os.chmod(str(host.base) + ".pag", 0o640)
    assert conv.cmd("APOP alice " + digest(conv.greeting, SECRET)) == (
        b"-ERR [AUTH] authentication failure")


def test_apop_without_a_timestamp_is_refused_clearly(mailhost, inetd):
    ApopHost(mailhost)                                     # no database
    conv = inetd()
    assert conv.cmd("APOP alice 0123456789abcdef0123456789abcdef") == (
        b"-ERR [AUTH] APOP is not available on this server")


def test_apop_refuses_root_and_the_auth_file_lists(host, inetd):
    deny = host.mailhost.base / "deny"
    deny.write_text("alice\n")
    host.config("set nonauth-file = %s" % deny)
    conv = inetd()
    assert conv.cmd("APOP alice " + digest(conv.greeting, SECRET)) == (
        b"-ERR [AUTH] Permission denied.")


# --- the clear-text policy -------------------------------------------------------------

def test_p0_a_user_with_an_apop_secret_must_use_it(host, inetd):
    conv = inetd()
    assert conv.cmd("USER alice") == (b"-ERR [AUTH] You must use stronger authentication such "
                                      b"as AUTH or APOP to connect to this server")
    assert conv.login("bob").startswith(b"+OK bob has 0 visible messages")


def test_p1_never_clear_text(host, inetd):
    conv = inetd("-p", "1")
    assert conv.cmd("USER bob") == (b"-ERR [AUTH] You must use stronger authentication such "
                                    b"as APOP to connect to this server")
    conv.send(b"CAPA\r\n")
    assert conv.line() == b"+OK Capability list follows"
    assert b"USER" not in conv.multiline()
    assert conv.cmd("APOP alice " + digest(conv.greeting, SECRET)).startswith(b"+OK alice")


def test_p1_without_apop_is_refused_at_start_up(mailhost):
    result = subprocess.run([sys.executable, "-m", "popper", "-f", str(mailhost.config), "-p", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr == "popper: Can't set -p to 1 without enabling APOP\n"
    mailhost.write_config("set clear-text-password = never")
    result = subprocess.run([sys.executable, "-m", "popper", "-f", str(mailhost.config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert (result.returncode, result.stderr) == (
        1, "popper: Can't set -p to 1 without enabling APOP\n")


def test_p2_clear_text_always_and_the_apop_secret_as_a_password(host, inetd):
    conv = inetd("-p", "2")
    assert conv.login("alice").startswith(b"+OK alice has 2 visible messages")
    conv.close()
    # A user whose password popper cannot check logs in with the APOP secret.
    conv = inetd("-p", "2")
    assert conv.login("alice", SECRET).startswith(b"+OK alice has 2 visible messages")
    conv.close()
    conv = inetd("-p", "2")
    assert conv.login("alice", "neither") == (
        b'-ERR [AUTH] Password supplied for "alice" is incorrect.')
    conv.close()
    conv = inetd("-p", "0")
    assert conv.cmd("USER alice").startswith(b"-ERR [AUTH] You must use stronger")


def test_p3_from_loopback_and_p4(host, tcp_inetd):
    server = tcp_inetd("-p", "3")
    conv = server.connect()
    assert conv.login("bob").startswith(b"+OK bob")
    conv.close()
    result = subprocess.run([sys.executable, "-m", "popper", "-f", str(host.mailhost.config),
                             "-p", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("popper: Can't set -p to 4 without enabling TLS/SSL")


def test_a_database_of_the_wrong_mode_refuses_user_with_qpoppers_text(host, inetd):
    os.chmod(str(host.base) + ".dir", 0o644)
    conv = inetd()
    assert conv.cmd("USER bob") == b"-ERR [SYS/PERM] POP authentication DB has wrong mode (0644)"


# --- real clients ------------------------------------------------------------------------

@pytest.mark.clients
def test_curl_apop(host, tcp_inetd, tmp_path):
    server = tcp_inetd()
    curl = [clients.need("curl"), "-q", "-sS", "--noproxy", "*", "--login-options", "AUTH=+APOP"]
    result = clients.run(curl + ["-u", "alice:%s" % SECRET, "pop3://127.0.0.1:%d/1" % server.port],
                         tmp_path)
    assert clients.message_id(clients.from_wire(result.stdout)) == (
        clients.spool_message_ids(MAIL)[0])
    # A wrong secret: curl's "Login denied" (67), and no fallback to USER/PASS.
    clients.run(curl + ["-u", "alice:wrong", "pop3://127.0.0.1:%d/1" % server.port], tmp_path,
                ok=(67,))


@pytest.mark.clients
def test_fetchmail_apop(host, tcp_inetd, tmp_path):
    server = tcp_inetd()
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text('set no syslog\npoll "127.0.0.1" with proto APOP port %d timeout 30\n'
                  '  user "alice" there with password "%s" is "root" here\n'
                  "  options keep no rewrite sslproto ''\n  mda \"%s\"\n"
                  % (server.port, SECRET, clients.file_mda(out)))
    os.chmod(str(rc), 0o600)
    clients.run([clients.need("fetchmail"), "-v", "-f", str(rc), "--idfile",
                 str(tmp_path / "ids"), "--pidfile", str(tmp_path / "pid"), "--invisible"],
                tmp_path, extra_env={"FETCHMAILHOME": str(tmp_path)})
    assert len(list(out.iterdir())) == 2


@pytest.mark.clients
def test_mpop_apop(host, tcp_inetd, tmp_path):
    server = tcp_inetd()
    out = tmp_path / "out"
    out.mkdir()
    clients.run([clients.need("mpop"), "--host=127.0.0.1", "--port=%d" % server.port,
                 "--user=alice", "--passwordeval=echo '%s'" % SECRET, "--auth=apop",
                 "--tls=off", "--keep=on", "--only-new=off", "--received-header=off",
                 "--uidls-file=%s" % (tmp_path / "uidls"),
                 "--delivery=mda,%s" % clients.file_mda(out), "--timeout=30", "-d"], tmp_path)
    assert len(list(out.iterdir())) == 2


# --- a change killed half way -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.twin
@pytest.mark.parametrize("call,when", [("rename", 1), ("rename", 2), ("rename", 3),
                                       ("fsync", 1), ("fsync", 2), ("fsync", 3), ("fsync", 4)])
def test_a_change_killed_anywhere_leaves_the_old_or_the_new_database(host, inetd, call, when):
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed (tests/deps.sh installs it)")
    assert host.popauth("-user", "bob", "Old-secret1").returncode == 0
    # The change's system calls: fsync the new .pag, the new .dir, the
    # directory after the commit (rename 1: .new.dir -> .commit.dir), the
    # directory after the renames into place (2: .new.pag -> .pag, 3:
    # .commit.dir -> .dir).  popauth is killed as it makes the call.
    killed = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null",
                             "-e", "inject=%s:signal=KILL:when=%d" % (call, when),
                             sys.executable, "-c", POPAUTH, "-f", str(host.mailhost.config),
                             "-user", "bob", "New-secret2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60,
                            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))   # no .pyc renames
    assert killed.returncode in (-9, 137), killed
    seen = host.secret("bob")
    assert seen in (b"Old-secret1", b"New-secret2")
    assert host.secret("alice") == SECRET.encode()
    # popper reads the same database, and logs in with it.
    conv = inetd()
    assert conv.cmd("APOP bob " + digest(conv.greeting, seen.decode())).startswith(b"+OK bob")
    # The next change finishes or drops what was left, and works.
    assert host.popauth("-user", "bob", "Third-one3").returncode == 0
    assert host.secret("bob") == b"Third-one3"
    assert not [n for n in os.listdir(host.mailhost.base) if ".new." in n or ".commit." in n]
