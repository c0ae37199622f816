"""Failed logins that cost the same: an unknown user, a locked account, a
wrong password and a hash in another method than the host's all take the
time of one verification in the method and cost the entry stands for, and
a user database is looked up in the same time whatever line (or none) the
name is on.  A client that measures PASS learns nothing about who exists.

The back-ends are timed in-process (less noise than over the wire), each
pair interleaved, the fastest of TRIES tries compared (what the work
costs; a busy machine only adds to some tries): they must differ by
less than 10 %.  The Unix back-end runs in a child process under
nss_wrapper (a passwd and a shadow of our own).
"""

import base64
import json
import os
import shutil
import pathlib
import subprocess
import sys
import time
import types

import pytest

import popper
from popper.auth import AuthError, cryptpw, unixdb
from popper.auth import userdb as userdb_module
from popper.auth.userdb import UserDB

pytestmark = pytest.mark.twin

TRIES = 31
LIMIT = 0.10
NSS_WRAPPER = pathlib.Path("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so")
CLIENT = types.SimpleNamespace(host="localhost", ip="127.0.0.1")


class Log:
    def __init__(self):
        self.lines = []

    def _add(self, text):
        self.lines.append(text)

    debug = info = notice = warning = error = alert = _add


def forget():
    """A new process's view (inetd: one process per connection)."""
    getattr(userdb_module, "forget", lambda: None)()


def fails(auth, user, password, cold=False):
    def call():
        if cold:
            forget()
        try:
            auth.authenticate(user, password, CLIENT)
        except AuthError:
            return
        raise AssertionError("%s logged in" % user)
    return call


def fastest(calls: dict, tries: int = TRIES) -> dict:
    """The fastest seconds of each call, the calls interleaved (one untimed
    round first), each round starting one further on: on a busy machine
    the first call of a round is slower, so no call may always be first."""
    times = {label: [] for label in calls}
    for call in calls.values():
        call()
    order = list(calls.items())
    for round_number in range(tries):
        shift = round_number % len(order)
        for label, call in order[shift:] + order[:shift]:
            start = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - start)
    return {label: min(t) for label, t in times.items()}


def spread(result: dict) -> float:
    return (max(result.values()) - min(result.values())) / max(result.values())


def table(result: dict) -> str:
    return ", ".join("%s %.2f ms" % (label, t * 1000) for label, t in result.items())


def assert_alike(measure):
    """measure() -> fastest times; a second, longer measurement before failing
    (a busy machine), so that only a real difference fails."""
    result = measure(TRIES)
    print(table(result))
    if spread(result) >= LIMIT:
        result = measure(2 * TRIES - 1)
        print("again: " + table(result))
    assert spread(result) < LIMIT, table(result)


def hash_of(password: bytes, setting: bytes) -> str:
    hashed = cryptpw.crypt(password, setting)
    assert hashed, setting
    return hashed.decode()


def write_userdb(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="latin-1")
    # An mtime in the past: a file edited this very second is not cached.
    os.utime(str(path), (time.time() - 60, time.time() - 60))


# --- the user database -----------------------------------------------------------------

SETTINGS = {
    "yescrypt": None,                                  # the system's preferred ($y$j9T$)
    "sha512-rounds": b"$6$rounds=20000$saltsaltsalt$",
    "bcrypt": b"$2b$09$abcdefghijklmnopqrstuu",
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_userdb_unknown_wrong_password_and_locked_cost_the_same(tmp_path, method):
    """The entries use one method and cost; the system prefers another
    (yescrypt) or the old fixed dummy was another ($6$, 5000 rounds)."""
    setting = SETTINGS[method] or unixdb.crypt_gensalt()
    common = hash_of(b"right", setting)
    path = tmp_path / "users"
    write_userdb(path, ["user%d:%s" % (i, common) for i in range(20)] + [
        "alice:%s" % common,
        "locked:!%s" % common,             # usermod -L
        "bang:!",
        "star:*",
        "empty:",
        "odd:$6$only-a-setting",          # not a hash crypt can check
        "old:%s" % hash_of(b"right", b"$1$oldsalt$"),    # a rarer method costs what it costs
    ])
    auth = UserDB(str(path), Log())

    def measure(tries):
        return fastest({
            "wrong password": fails(auth, "alice", b"wrong"),
            "unknown": fails(auth, "nosuchuser", b"wrong"),
            "locked !hash": fails(auth, "locked", b"right"),
            "locked !": fails(auth, "bang", b"right"),
            "locked *": fails(auth, "star", b"right"),
            "empty": fails(auth, "empty", b""),
            "not a hash": fails(auth, "odd", b"right"),
        }, tries)
    assert_alike(measure)


@pytest.mark.slow
@pytest.mark.parametrize("cold", [False, True], ids=["cached", "each-connection"])
def test_userdb_first_last_and_unknown_cost_the_same_in_10000_lines(tmp_path, cold):
    """No scan that stops at the name: the first line, the last line and no
    line at all cost the same, with the table cached (standalone, or the
    next PASS of a session) and read afresh (inetd: each connection)."""
    common = hash_of(b"right", b"$6$saltsaltsalt$")
    path = tmp_path / "users"
    write_userdb(path, ["first:%s:1000:1000::/home/first:/bin/sh" % common]
                 + ["user%05d:%s:1000:1000:User %d:/home/u%d:/bin/sh" % (i, common, i, i)
                    for i in range(9998)]
                 + ["last:%s:1000:1000::/home/last:/bin/sh" % common])
    auth = UserDB(str(path), Log())

    def measure(tries):
        return fastest({
            "first line": fails(auth, "first", b"wrong", cold),
            "last line": fails(auth, "last", b"wrong", cold),
            "unknown": fails(auth, "nosuchuser", b"wrong", cold),
        }, tries)
    assert_alike(measure)


def test_userdb_still_logs_in_and_reads_an_edit(tmp_path):
    path = tmp_path / "users"
    write_userdb(path, ["alice:%s:1000:1000::/home/alice:/bin/sh" % hash_of(b"pw", b"$6$a$"),
                        "alice:%s" % hash_of(b"second", b"$6$b$"),      # the first line wins
                        "bad line", "bob:{SHA512-CRYPT}%s" % hash_of(b"bobpw", b"$6$b$")])
    log = Log()
    auth = UserDB(str(path), log)
    account = auth.authenticate("alice", b"pw", CLIENT)
    assert (account.name, account.uid, account.home) == ("alice", 1000, "/home/alice")
    assert auth.authenticate("bob", b"bobpw", CLIENT).uid is None
    with pytest.raises(AuthError):
        auth.authenticate("alice", b"second", CLIENT)
    assert any("line 3" in line for line in log.lines)
    write_userdb(path, ["alice:%s" % hash_of(b"new", b"$6$c$")])
    assert auth.authenticate("alice", b"new", CLIENT).name == "alice"
    with pytest.raises(AuthError):
        auth.authenticate("bob", b"bobpw", CLIENT)


def test_userdb_preload_survives_a_fork(tmp_path):
    """The listener may read the table before it forks: the child finds it."""
    path = tmp_path / "users"
    write_userdb(path, ["alice:%s" % hash_of(b"pw", b"$6$a$")])
    forget()
    UserDB(str(path), Log()).preload()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if userdb_module._tables.get(str(path)) is not None else 2
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


# --- the dummy ---------------------------------------------------------------------------

def test_the_dummy_is_the_most_common_method_and_cost():
    six = b"$6$rounds=20000$abcdefgh$" + b"x" * 86
    yes = b"$y$j9T$abcdefghijklmnopqrstuv$" + b"y" * 43
    assert cryptpw.most_common([yes, six, b"!", b"*", b"!" + six, b""]) == six
    assert cryptpw.most_common([b"$2b$12$" + b"a" * 53, b"$2b$05$" + b"b" * 53,
                                b"$2b$05$" + b"c" * 53]) == b"$2b$05$" + b"b" * 53
    assert cryptpw.most_common([b"!", b"*", b"x", b""]) is None
    for hashed, expected in ((six, (six, True)), (b"!" + six, (six, False)),
                             (b"!!" + six, (six, False)), (b"!", (b"D", False)),
                             (b"*", (b"D", False)), (b"", (b"D", False)),
                             (b"x", (b"D", False)), (b"*LK*", (b"D", False)),
                             (b"abcdefghijklm", (b"abcdefghijklm", True))):
        assert cryptpw.verifier(hashed, b"D") == expected, hashed


def test_a_dummy_in_the_cost_class_of_its_entry_costs_what_the_entry_costs():
    """A check against another hash of the same class costs the same."""
    for setting in (b"$6$rounds=20000$saltsaltsalt$", b"$2b$09$abcdefghijklmnopqrstuu",
                    unixdb.crypt_gensalt()):
        one, two = cryptpw.crypt(b"a", setting), cryptpw.crypt(b"b", setting)
        assert_alike(lambda tries: fastest({"one": lambda: cryptpw.crypt(b"c", one),
                                            "two": lambda: cryptpw.crypt(b"d", two)},
                                           tries))


# --- the Unix databases (under nss_wrapper, in a child process) --------------------------

def unix_child(base: str) -> None:
    """In the child: the fastest time of each kind of failure, as JSON on stdout."""
    from popper.auth.unix import UnixAuth
    auth = UnixAuth(types.SimpleNamespace(check_password_expired=True), Log())
    calls = {
        "sha512 wrong password": fails(auth, "sha", b"wrong"),
        "unknown": fails(auth, "nosuchuser", b"wrong"),
        "locked !hash": fails(auth, "locked", b"right"),
        "locked !": fails(auth, "bang", b"right"),
        "locked *": fails(auth, "star", b"right"),
        "empty": fails(auth, "empty", b""),
        "x without shadow": fails(auth, "noshadow", b"right"),
    }
    tries = int(os.environ.get("TRIES", TRIES))
    print(json.dumps(fastest(calls, tries)))


@pytest.mark.clients
@pytest.mark.skipif(not NSS_WRAPPER.exists(), reason="nss_wrapper is not installed")
def test_unix_unknown_locked_and_wrong_password_cost_the_same(tmp_path):
    """The host's users are $6$ (5000 rounds); libxcrypt prefers yescrypt,
    which the old dummy used."""
    sha = hash_of(b"right", b"$6$saltsaltsalt$")
    yes = hash_of(b"right", unixdb.crypt_gensalt())
    shadow = {"user%d" % i: sha for i in range(20)}
    shadow.update(sha=sha, modern=yes, locked="!" + sha, bang="!", star="*", empty="")
    names = list(shadow) + ["noshadow"]
    (tmp_path / "passwd").write_text("".join("%s:x:%d:%d::/tmp:/bin/sh\n" % (name, 5000 + i,
                                                                              5000 + i)
                                             for i, name in enumerate(names)))
    (tmp_path / "shadow").write_text("".join("%s:%s:19000:0:::::\n" % item
                                             for item in shadow.items()))
    (tmp_path / "group").write_text("users:x:100:\n")
    tests = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(os.path.dirname(os.path.abspath(popper.__file__)))
    env = dict(os.environ, LD_PRELOAD=str(NSS_WRAPPER),
               NSS_WRAPPER_PASSWD=str(tmp_path / "passwd"),
               NSS_WRAPPER_GROUP=str(tmp_path / "group"),
               NSS_WRAPPER_SHADOW=str(tmp_path / "shadow"),
               PYTHONPATH=os.pathsep.join([top, tests] + sys.path))

    def measure(tries):
        out = subprocess.run(
            [sys.executable, "-c", "import test_equal_failures as t; t.unix_child(%r)"
             % str(tmp_path)], env=dict(env, TRIES=str(tries)), cwd=tests,
            stdout=subprocess.PIPE, check=True).stdout
        return json.loads(out.decode().splitlines()[-1])
    assert_alike(measure)


# --- SASL PLAIN ------------------------------------------------------------------------

def test_plain_failures_cost_what_pass_failures_cost(tmp_path):
    """Gatekeeper.plain (SASL PLAIN and LOGIN) is PASS's check: an unknown
    user, a wrong password and a locked account cost one crypt, as a
    failed PASS does."""
    from popper.auth.gatekeeper import Gatekeeper
    from popper.settings import Settings
    common = hash_of(b"right", b"$6$saltsaltsalt$")
    path = tmp_path / "users"
    write_userdb(path, ["user%d:%s" % (i, common) for i in range(20)]
                 + ["alice:%s" % common, "locked:!%s" % common])
    keeper = Gatekeeper(Settings(), UserDB(str(path), Log()), Log())
    assert keeper.plain("alice", "alice", b"right", CLIENT).name == "alice"

    def plain(user, password):
        def call():
            try:
                keeper.plain(user, user, password, CLIENT)
            except AuthError:
                return
            raise AssertionError("%s logged in" % user)
        return call
    calls = {"PLAIN unknown": plain("nosuchuser", b"right"),
             "PLAIN wrong password": plain("alice", b"wrong"),
             "PLAIN locked": plain("locked", b"right"),
             "PASS wrong password": fails(keeper, "alice", b"wrong")}
    assert_alike(lambda tries: fastest(calls, tries))


# --- APOP and CRAM-MD5 -------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["APOP", "CRAM-MD5", "SCRAM-SHA-256"])
def test_unknown_user_no_secret_wrong_digest_and_bad_database_cost_the_same(tmp_path,
                                                                            mechanism):
    """Gatekeeper.apop, .cram (after .challenge) and .scram_final (after
    .scram_first), as the root part runs them: an unknown name, a user
    without a secret, one with an empty secret, a wrong digest (proof) and
    a database that cannot be used (mode 0644) get the one answer after
    the same time: a record fetched, an MD5 (HMAC-MD5; SCRAM's salted
    secret) computed, and the look-up padded to apop.LOOKUP_TIME (a
    database that cannot be opened answers sooner).  SCRAM's times include
    the test's own client side, the same in every case."""
    import pwd
    from popper.auth import apop, sasl
    from popper.auth.gatekeeper import Gatekeeper
    from popper.protocol import replies
    from popper.settings import Settings
    admin = pwd.getpwuid(1 if os.geteuid() == 0 else os.getuid())
    path = tmp_path / "users"
    write_userdb(path, ["%s:%s:4242:4242::/tmp:/bin/sh" % (name, hash_of(b"pw", b"$1$salt$"))
                        for name in ("alice", "bob", "carol")])
    base = str(tmp_path / "pop.auth")

    def fill(old, new):
        for n in range(200):                                # a database of some size
            new.store(apop.key("user%d" % n), apop.encode(b"secret%d" % n))
        new.store(apop.key("alice"), apop.encode(b"Apop-Secret9"))
        new.store(apop.key("carol"), apop.encode(b""))
    apop.change(base, admin.pw_uid, admin.pw_gid, fill, create=True)
    unusable = str(tmp_path / "unusable")
    for suffix in (".dir", ".pag"):
        shutil.copy(base + suffix, unusable + suffix)
        os.chown(unusable + suffix, admin.pw_uid, admin.pw_gid)
        os.chmod(unusable + suffix, 0o644)
    stamp = "<1234.1700000000@mail.example>"

    def gatekeeper(db):
        settings = Settings()
        settings.apop_db, settings.popuid = db, admin.pw_name
        return Gatekeeper(settings, UserDB(str(path), Log()), Log())
    good, bad = gatekeeper(base), gatekeeper(unusable)

    def attempt(keeper, user, secret):
        """The mechanism's login with a digest made with secret."""
        if mechanism == "APOP":
            return keeper.apop(user, apop.digest(stamp, secret), stamp, CLIENT)
        if mechanism == "CRAM-MD5":
            challenge = keeper.challenge()
            return keeper.cram(user, sasl.cram_digest(challenge, secret), CLIENT)
        from test_sasl_clients import ScramClient
        scram = ScramClient(user, "")
        server_first = keeper.scram_first(base64.b64decode(scram.first()))
        final = scram.final(b"+ " + base64.b64encode(server_first), secret)
        keeper.scram_final(base64.b64decode(final), CLIENT)
        return keeper.scram_done(CLIENT)
    assert attempt(good, "alice", b"Apop-Secret9").name == "alice"

    def fails_with(keeper, user, secret):
        def call():
            try:
                attempt(keeper, user, secret)
            except AuthError as exc:
                assert exc.template == replies.AUTH_FAILED
                return
            raise AssertionError("%s logged in" % user)
        return call
    calls = {"unknown": fails_with(good, "nosuchuser", b"Apop-Secret9"),
             "no secret": fails_with(good, "bob", b"Apop-Secret9"),
             "empty secret": fails_with(good, "carol", b""),
             "wrong digest": fails_with(good, "alice", b"Apop-Secret8"),
             "unusable database": fails_with(bad, "alice", b"Apop-Secret9")}
    assert_alike(lambda tries: fastest(calls, tries))
