"""Unix passwords, PAM and the drop to the user, without real users: cwrap.

nss_wrapper gives popper a passwd, group and shadow of our own; pam_wrapper
a PAM service (pam_matrix checks the passwords, pam_exec records what PAM
was told); uid_wrapper, when the tests do not run as root, lets popper
believe it is root and change identity.  The session processes run the
real code paths: getpwnam/getspnam, crypt_r, pam_start..., setgroups,
setresgid, setresuid.
"""

import os
import pathlib
import re
import statistics
import time

import pytest

from conftest import IS_ROOT, TEST_GID, TEST_UID, corpus, process_ids, start_inetd

from popper import native
from popper.auth import cryptpw, unixdb

pytestmark = [pytest.mark.clients, pytest.mark.twin]

LIB = pathlib.Path("/usr/lib/x86_64-linux-gnu")
NSS_WRAPPER = LIB / "libnss_wrapper.so"
UID_WRAPPER = LIB / "libuid_wrapper.so"
PAM_WRAPPER = LIB / "libpam_wrapper.so"
PAM_MATRIX = LIB / "pam_wrapper" / "pam_matrix.so"
PAM_EXEC = LIB / "security" / "pam_exec.so"

needs_cwrap = pytest.mark.skipif(not (NSS_WRAPPER.exists() and (IS_ROOT or UID_WRAPPER.exists())),
                                 reason="cwrap is not installed (tests/deps.sh installs it)")
needs_pam_wrapper = pytest.mark.skipif(not (PAM_WRAPPER.exists() and PAM_MATRIX.exists()
                                            and PAM_EXEC.exists()),
                                       reason="pam_wrapper is not installed")

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=71)))
TODAY = int(time.time() // 86400)


USERS = {
    # name: (password, setting or hash, shadow fields (lastchg, max, expire))
    "alice": ("yescrypt pw", None, None),                 # the system's preferred: yescrypt
    "bob": ("sha512 pw", b"$6$bobsalt$", None),
    "carol": ("sha256 pw", b"$5$carolsalt$", None),
    "dave": ("md5 pw", b"$1$davesalt$", None),
    "erin": ("desword", b"Zq", None),
    "frank": ("a bigcrypt password from SCO", b"Zq" + b"." * 33, None),   # 35 chars: bigcrypt
    "gina": ("blowfish pw", b"$2b$05$abcdefghijklmnopqrstuu", None),
    "locked": ("locked pw", "!", None),
    "starred": ("x", "*", None),
    "empty": ("", "", None),
    "oldacct": ("old pw", b"$6$old$", (TODAY - 10, -1, TODAY - 1)),
    "oldpass": ("stale pw", b"$6$stale$", (TODAY - 100, 30, -1)),
}


class Cwrap:
    """The fake databases, and the environment that makes popper use them."""

    def __init__(self, mailhost):
        self.base = mailhost.base
        passwd, shadow = [], []
        for name, (password, setting, fields) in USERS.items():
            if setting is None:
                setting = unixdb.crypt_gensalt()
            if isinstance(setting, bytes):
                hashed = cryptpw.crypt(password.encode(), setting).decode()
            else:
                hashed = setting + (cryptpw.crypt(password.encode(), b"$6$x$").decode()
                                    if setting == "!" else "")
            lastchg, maximum, expire = fields or (TODAY - 1, -1, -1)
            passwd.append("%s:x:%d:%d:%s:%s:/bin/sh" % (name, TEST_UID, TEST_GID, name,
                                                       mailhost.base))
            shadow.append("%s:%s:%d:0:%s:7::%s:" % (name, hashed, lastchg,
                                                   "" if maximum < 0 else maximum,
                                                   "" if expire < 0 else expire))
        passwd.append("lowuser:x:10:10:low:%s:/bin/sh" % mailhost.base)
        shadow.append("lowuser:%s:%d:0::7:::" % (cryptpw.crypt(b"low pw", b"$6$low$").decode(),
                                                 TODAY - 1))
        passwd.append("noshadow:x:%d:%d::/:/bin/sh" % (TEST_UID, TEST_GID))
        passwd.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")  # login-user
        (self.base / "passwd").write_text("\n".join(passwd) + "\n")
        (self.base / "shadow").write_text("\n".join(shadow) + "\n")
        (self.base / "group").write_text("users:x:%d:\nextra:x:4343:alice\nlow:x:10:\n"
                                         "nogroup:x:65534:\n" % TEST_GID)
        for name in list(USERS) + ["lowuser"]:
            mailhost.deliver(MAIL, user=name)
        self.preload = [str(NSS_WRAPPER)] + ([] if IS_ROOT else [str(UID_WRAPPER)])
        self.env = dict(os.environ,
                        NSS_WRAPPER_PASSWD=str(self.base / "passwd"),
                        NSS_WRAPPER_GROUP=str(self.base / "group"),
                        NSS_WRAPPER_SHADOW=str(self.base / "shadow"))
        if not IS_ROOT:
            self.env.update(UID_WRAPPER="1", UID_WRAPPER_ROOT="1")

    def with_pam(self, service: str) -> None:
        """A PAM service checking pam_matrix's database, and recording what
        PAM was told (PAM_USER, PAM_RHOST, PAM_TTY) with pam_exec."""
        services = self.base / "pam.d"
        services.mkdir(exist_ok=True)
        passdb = self.base / "passdb"
        passdb.write_text("".join("%s:%s:%s\n" % (name, USERS[name][0], service)
                                  for name in ("alice", "bob")))
        record = self.base / "pam.record"
        script = self.base / "pam-record.sh"
        script.write_text('#!/bin/sh\necho "$PAM_TYPE $PAM_USER $PAM_RHOST $PAM_TTY" >> %s\n'
                          % record)
        script.chmod(0o755)
        (services / service).write_text(
            "auth required %s passdb=%s\n"
            "auth optional %s %s\n"
            "account required %s passdb=%s\n"
            "account optional %s %s\n" % (PAM_MATRIX, passdb, PAM_EXEC, script,
                                          PAM_MATRIX, passdb, PAM_EXEC, script))
        self.preload.append(str(PAM_WRAPPER))
        self.env.update(PAM_WRAPPER="1", PAM_WRAPPER_SERVICE_DIR=str(services))
        self.record = record

    def process_env(self, **extra) -> dict:
        """The environment of a popper that sees the fake databases."""
        return dict(self.env, LD_PRELOAD=":".join(self.preload), **extra)

    def session(self, mailhost, *args):
        return start_inetd(mailhost.command(*args), env=self.process_env())


@pytest.fixture
def cwrap(mailhost):
    mailhost.write_config(userdb=False)
    return Cwrap(mailhost)


def login(cwrap, mailhost, user, password=None, *args):
    conv = cwrap.session(mailhost, *args)
    try:
        reply = conv.login(user, USERS[user][0] if password is None else password)
        if reply.startswith(b"+OK"):
            assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
        return reply
    finally:
        conv.close()


@needs_cwrap
@pytest.mark.parametrize("user", ["alice", "bob", "carol", "dave", "erin", "frank", "gina"])
def test_unix_login_with_every_kind_of_hash(cwrap, mailhost, user):
    assert login(cwrap, mailhost, user).startswith(b"+OK %s has 3 visible messages" %
                                                   user.encode())


@needs_cwrap
def test_bigcrypt_checks_every_eight_characters(cwrap, mailhost):
    # DES alone would accept the first 8 characters; bigcrypt wants all.
    assert login(cwrap, mailhost, "frank", "a bigcrXXXXXXXXXXXXXXXXXXXXXXXXXXXX").startswith(
        b"-ERR [AUTH] Password supplied")


@needs_cwrap
@pytest.mark.parametrize("user,password", [("nosuchuser", "x"), ("alice", "wrong"),
                                           ("locked", None), ("starred", None), ("empty", "x"),
                                           ("noshadow", "x")])
def test_unknown_locked_empty_and_wrong_look_alike(cwrap, mailhost, user, password):
    assert login(cwrap, mailhost, user, password) == (
        b'-ERR [AUTH] Password supplied for "%s" is incorrect.' % user.encode())


@needs_cwrap
@pytest.mark.parametrize("name", ["alice\0junk", "alice\0", "../alice", "alice/"])
def test_a_name_cut_short_by_a_nul_is_not_alice(cwrap, mailhost, name):
    """Finding 8: the C calls see a name only up to its NUL; the name is
    refused before any back-end sees it, native and pure alike."""
    conv = cwrap.session(mailhost)
    try:
        assert conv.cmd("USER " + name).startswith(b"+OK")
        reply = conv.cmd("PASS " + USERS["alice"][0])
        assert reply.startswith(b"-ERR [AUTH] Password supplied for"), reply
        assert conv.login("alice", USERS["alice"][0]).startswith(b"+OK alice has 3")  # goes on
    finally:
        conv.close()


@needs_cwrap
def test_expiry_is_told_only_with_the_right_password(cwrap, mailhost):
    assert login(cwrap, mailhost, "oldacct") == b'-ERR [AUTH] "oldacct": account expired.'
    assert login(cwrap, mailhost, "oldpass") == b'-ERR [AUTH] "oldpass": password expired.'
    assert login(cwrap, mailhost, "oldacct", "wrong").startswith(b"-ERR [AUTH] Password")
    mailhost.write_config("reset check-password-expired", userdb=False)
    assert login(cwrap, mailhost, "oldpass").startswith(b"+OK oldpass has 3")


@needs_cwrap
def test_uid_10_is_refused_unless_a(cwrap, mailhost):
    assert login(cwrap, mailhost, "lowuser", "low pw") == (
        b"-ERR [AUTH] Access is blocked for UIDs below 10")
    if IS_ROOT:
        os.chown(mailhost.spool("lowuser"), 10, 10)
        assert login(cwrap, mailhost, "lowuser", "low pw", "-a").startswith(b"+OK lowuser has")


@needs_cwrap
def test_access_lists(cwrap, mailhost):
    (mailhost.base / "deny").write_text("bob\n")
    (mailhost.base / "allow").write_text("alice\nbob\n")
    mailhost.write_config("set nonauth-file = %s" % (mailhost.base / "deny"),
                          "set auth-file = %s" % (mailhost.base / "allow"), userdb=False)
    assert login(cwrap, mailhost, "alice").startswith(b"+OK")
    assert login(cwrap, mailhost, "bob") == b'-ERR [AUTH] "bob": access denied.'
    assert login(cwrap, mailhost, "carol") == b'-ERR [AUTH] "carol": access denied.'
    assert login(cwrap, mailhost, "carol", "wrong").startswith(b"-ERR [AUTH] Password")


@needs_cwrap
def test_the_session_becomes_the_user_before_the_spool(cwrap, mailhost):
    conv = cwrap.session(mailhost)
    try:
        assert conv.login("alice", USERS["alice"][0]).startswith(b"+OK")
        if IS_ROOT:         # the kernel's view; under uid_wrapper only popper is fooled
            ids = process_ids(conv.process.pid)
            assert ids["Uid"] == [str(TEST_UID)] * 4 and ids["Gid"] == [str(TEST_GID)] * 4
            assert "4343" in ids["Groups"] and "0" not in ids["Groups"]
        owner = os.stat(mailhost.temp_drop("alice")).st_uid
        assert owner == TEST_UID
    finally:
        conv.close()


@needs_cwrap
def test_unknown_user_and_wrong_password_take_the_same_time(cwrap, mailhost):
    """50 tries each, in one session (a failed PASS goes back to USER).  bob
    has the method most of these users have ($6$), which the unknown user's
    dummy verification copies (tests/test_equal_failures.py has the rest)."""
    conv = cwrap.session(mailhost)
    times = {"nosuchuser": [], "bob": []}
    try:
        for _ in range(50):
            for user in times:
                conv.cmd("USER " + user)
                start = time.perf_counter()
                assert conv.cmd("PASS wrong").startswith(b"-ERR [AUTH] Password supplied")
                times[user].append(time.perf_counter() - start)
    finally:
        conv.close()
    unknown, wrong = statistics.median(times["nosuchuser"]), statistics.median(times["bob"])
    print("median PASS: unknown user %.2f ms, wrong password %.2f ms"
          % (unknown * 1000, wrong * 1000))
    assert abs(unknown - wrong) / max(unknown, wrong) < 0.10


# --- PAM --------------------------------------------------------------------------------

@needs_cwrap
@needs_pam_wrapper
@pytest.mark.skipif(not native.PAM_NATIVE,
                    reason="python-pam opens libpam itself, past pam_wrapper: the pure "
                           "environment's PAM is tested by test_real_user.py")
def test_pam_logins_and_what_pam_is_told(cwrap, mailhost):
    cwrap.with_pam("popper-test")
    mailhost.write_config("set pam-service = popper-test", "reset reverse-lookup",
                          "set tracefile = %s" % (mailhost.base / "trace"), userdb=False)
    assert login(cwrap, mailhost, "alice").startswith(b"+OK alice has 3 visible messages")
    assert login(cwrap, mailhost, "alice", "wrong") == (
        b'-ERR [AUTH] Password supplied for "alice" is incorrect.')
    assert login(cwrap, mailhost, "nosuchuser", "x") == (
        b'-ERR [AUTH] Password supplied for "nosuchuser" is incorrect.')
    record = cwrap.record.read_text().splitlines()
    assert "auth alice localhost 127.0.0.1" in record
    assert "account alice localhost 127.0.0.1" in record
    trace = (mailhost.base / "trace").read_text()
    assert re.search(r'PAM authentication failed for user "alice": .+ \(\d+\)', trace)


@needs_cwrap
def test_configure_with_pam_makes_pam_the_default(cwrap, mailhost, tmp_path):
    """A popper configured --with-pam=SERVICE asks PAM (which knows nothing
    of nss_wrapper's users, so it refuses alice), one without asks the Unix
    databases (which accept her)."""
    from test_configure import Tree
    tree = Tree(tmp_path)
    trace = mailhost.base / "trace"
    mailhost.write_config("set tracefile = %s" % trace, userdb=False)
    for switches, expected in (([], b"+OK alice has 3"),
                               (["--with-pam=popper-test-none"], b"-ERR [AUTH] Password")):
        tree.configure(*switches)
        conv = start_inetd(tree.command(mailhost), env=cwrap.process_env(**tree.env()),
                           cwd=tree.path)
        assert conv.login("alice", USERS["alice"][0]).startswith(expected)
        conv.close()
    assert 'PAM authentication failed for user "alice"' in trace.read_text()
