"""LOGIN-DELAY enforced (popper/logindelay.py): `set enforce-login-delay`
with `-e login_delay=N` refuses a login sooner than N seconds after the
last one with -ERR [LOGIN-DELAY], before the maildrop is opened; off, the
delay is only announced (Qpopper).  The record, .<user>.pop.login beside
the temp drop, is believed only when it is the user's own regular file of
one link that nobody else may write, and a bad one never locks anyone out.

In-process first (the check and the record, on a clock the test sets),
then the real program with poplib, curl and fetchmail, then EIO and
kill -9 at the record's rename (strace).
"""

import os
import poplib
import shutil
import subprocess

import pytest

from clients import fetchmail, need, run
from conftest import (IS_ROOT, TEST_GID, TEST_UID, USERS, RecordingLog, corpus, hashed,
                      start_inetd)
from helpers import split_mbox
from popper.auth.userdb import UserDBError, parse_line
from popper.logindelay import LoginDelay, TooSoon, delay_of
from popper.protocol import replies as R
from popper.settings import Settings

DELAY = 300
NOW = 1_800_000_000
MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=5)))
STRACE = shutil.which("strace")


def settings_for(spool_dir, enforce=True, delay=DELAY) -> Settings:
    s = Settings()
    s.spool_dir = str(spool_dir)
    s.announce_login_delay = delay
    s.enforce_login_delay = enforce
    return s


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def delay_at(spool, clock, **kwargs):
    log = RecordingLog()
    return LoginDelay(settings_for(spool, **kwargs), "alice", log, clock), log


def record_path(spool):
    return spool / ".alice.pop.login"


def write_record(path, when, uid=None):
    path.write_bytes(b"%d\n" % when)
    os.chmod(str(path), 0o600)
    if uid is not None:
        os.chown(str(path), uid, TEST_GID)


# --- in-process --------------------------------------------------------------------

@pytest.mark.parametrize("enforce,delay,expected", [
    (False, DELAY, 0), (True, DELAY, DELAY), (True, 0, 0), (True, -1, 0), (True, None, 0)])
def test_the_delay_enforced_needs_the_option_and_a_positive_delay(spool, enforce, delay,
                                                                  expected):
    assert delay_of(settings_for(spool, enforce, delay)) == expected


def test_off_by_default_announces_only(spool):
    assert Settings().enforce_login_delay is False
    clock = Clock()
    delay, _ = delay_at(spool, clock, enforce=False)
    delay.record()
    delay.check()
    assert not record_path(spool).exists()


def test_a_second_login_inside_the_delay_is_refused_and_after_it_accepted(spool):
    clock = Clock()
    delay, log = delay_at(spool, clock)
    delay.check()                       # no record yet
    delay.record()
    assert record_path(spool).read_bytes() == b"%d\n" % NOW
    assert oct(record_path(spool).stat().st_mode & 0o777) == "0o600"
    clock.now = NOW + 100
    with pytest.raises(TooSoon) as caught:
        delay.check()
    assert caught.value.args[0] == R.text(R.LOGIN_DELAYED, wait=200, delay=DELAY)
    assert caught.value.args[0].startswith("[LOGIN-DELAY] ")
    assert "wait 200 more seconds" in caught.value.args[0]
    assert any("logged in 100 seconds ago" in text for text in log.texts("notice"))
    clock.now = NOW + DELAY - 0.5
    with pytest.raises(TooSoon) as caught:
        delay.check()
    assert "wait 1 more seconds" in caught.value.args[0]
    clock.now = NOW + DELAY
    delay.check()
    assert not list(spool.glob("*.new"))


def test_a_time_in_the_future_is_ignored_and_logged(spool):
    write_record(record_path(spool), NOW + 10 ** 6)
    delay, log = delay_at(spool, Clock())
    delay.check()
    assert any("in the future" in text for text in log.texts("warning"))
    delay.record()
    assert record_path(spool).read_bytes() == b"%d\n" % NOW


@pytest.mark.parametrize("content", [b"", b"soon\n", b"12 34\n", b"-5\n", b"1e9\n",
                                     b"9" * 40 + b"\n", b"\xff\x00"])
def test_a_record_that_is_not_a_time_is_not_believed(spool, content):
    path = record_path(spool)
    path.write_bytes(content)
    os.chmod(str(path), 0o600)
    delay, log = delay_at(spool, Clock())
    delay.check()
    assert any("not a time" in text for text in log.texts("warning"))


def unfit_symlink(spool):
    target = spool / "elsewhere"
    write_record(target, NOW - 1)
    os.symlink(str(target), str(record_path(spool)))
    return "a symbolic link", target


def unfit_hard_link(spool):
    other = spool / "other-name"
    write_record(other, NOW - 1)
    os.link(str(other), str(record_path(spool)))
    return "2 links", other


def unfit_group_writable(spool):
    write_record(record_path(spool), NOW - 1)
    os.chmod(str(record_path(spool)), 0o620)
    return "writable by its group", None


def unfit_foreign(spool):
    write_record(record_path(spool), NOW - 1, uid=os.geteuid() + 1)
    return "owned by uid %d" % (os.geteuid() + 1), None


def unfit_directory(spool):
    record_path(spool).mkdir()
    return "unreadable: Is a directory", None


@pytest.mark.parametrize("make", [
    unfit_symlink, unfit_hard_link, unfit_group_writable, unfit_directory,
    pytest.param(unfit_foreign, marks=pytest.mark.skipif(not IS_ROOT, reason="needs root: "
                                                         "a file of another uid"))],
    ids=lambda make: make.__name__)
def test_an_unfit_record_is_not_believed_and_is_replaced(spool, make):
    """A record one second old, but in a file the user may not own alone:
    the login goes on, the reason is logged, and this login's record
    replaces the name (never written through a link)."""
    why, other = make(spool)
    delay, log = delay_at(spool, Clock())
    delay.check()
    if make is not unfit_directory:
        delay.record()
    assert any(why in text and "not believed" in text for text in log.texts("warning")), \
        log.texts()
    if make is unfit_directory:
        return
    path = record_path(spool)
    assert not path.is_symlink() and path.stat().st_nlink == 1
    assert path.stat().st_uid == os.geteuid()
    assert path.read_bytes() == b"%d\n" % NOW
    if other is not None:
        assert other.read_bytes() == b"%d\n" % (NOW - 1)        # untouched


def test_a_record_that_cannot_be_written_costs_the_login_nothing(spool):
    s = settings_for(spool / "gone")
    log = RecordingLog()
    delay = LoginDelay(s, "alice", log, Clock())
    delay.check()
    delay.record()
    assert any("Unable to record the login of alice" in text for text in log.texts("error"))


@pytest.mark.parametrize("extra,expected", [
    ("", None), (":", None), (":userdb_quota_rule=*:storage=1G", None),
    (":login_delay=60", 60), (":allow_nets=127.0.0.1 login_delay=0 nopassword", 0)])
def test_the_user_database_gives_a_users_own_delay(extra, expected):
    line = "alice:%s:4242:4242::/home/alice:/bin/sh%s" % (hashed("secret"), extra)
    assert parse_line(line)[2].login_delay == expected


@pytest.mark.parametrize("value", ["", "x", "-1", "1.5", "\u0661", "9" * 12])
def test_a_login_delay_in_the_user_database_must_be_seconds(value):
    with pytest.raises(UserDBError):
        parse_line("alice:%s:4242:4242::/home:/bin/sh:login_delay=%s" % (hashed("s"), value))


# --- the real program --------------------------------------------------------------

def enforcing(mailhost, enforce=True):
    mailhost.write_config(*(["set enforce-login-delay"] if enforce else []))
    return ["-e", "login_delay=%d" % DELAY]


def pop(server) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", server.port, timeout=30)


def login_and_quit(server, user="alice") -> bytes:
    client = pop(server)
    try:
        client.user(user)
        reply = client.pass_(USERS[user])
        client.quit()
    finally:
        client.close()
    return reply


def record_of(mailhost):
    return mailhost.spool_dir / ".alice.pop.login"


def backdate(mailhost, seconds):
    """The record as it would be `seconds` from now: older by that much."""
    path = record_of(mailhost)
    when = int(path.read_bytes()) - seconds
    path.write_bytes(b"%d\n" % when)


@pytest.mark.clients
@pytest.mark.parametrize("how", [[], ["-S"], ["login-user none"]],
                         ids=["normal", "server mode", "one process"])
def test_poplib_second_login_inside_the_delay_is_refused_with_the_code(mailhost, standalone,
                                                                       how):
    mailhost.deliver(MAIL)
    args = enforcing(mailhost)
    if how == ["login-user none"]:
        mailhost.write_config("set enforce-login-delay", "set login-user = none")
    else:
        args += how
    server = standalone(*args)
    client = pop(server)
    assert client.capa()["LOGIN-DELAY"] == [str(DELAY)]
    client.user("alice")
    assert client.pass_("secret").startswith(b"+OK alice has 3 visible messages")
    assert client.retr(1)[0].startswith(b"+OK")
    client.quit()
    spool = mailhost.spool().read_bytes()
    record = int(record_of(mailhost).read_bytes())
    assert record_of(mailhost).stat().st_uid == TEST_UID

    client = pop(server)
    client.user("alice")
    with pytest.raises(poplib.error_proto) as caught:
        client.pass_("secret")
    reply = caught.value.args[0]
    assert reply.startswith(b"-ERR [LOGIN-DELAY] You logged in less than %d seconds ago; "
                            b"wait " % DELAY), reply
    with pytest.raises((poplib.error_proto, EOFError, OSError)):
        client.stat()                   # the session is over: the server closed it
    client.close()
    # The mail was not touched: no temp drop, the spool as the last QUIT left it.
    assert mailhost.spool().read_bytes() == spool
    assert not mailhost.temp_drop().exists()
    assert int(record_of(mailhost).read_bytes()) == record    # a refusal is no login

    backdate(mailhost, DELAY)          # DELAY seconds on
    assert login_and_quit(server).startswith(b"+OK alice has 3 visible messages")
    assert int(record_of(mailhost).read_bytes()) >= record


@pytest.mark.clients
def test_the_refusal_over_stls_ends_the_session_cleanly(mailhost, standalone, ca):
    """Over TLS (the login process relays the session): the -ERR comes
    through the relay, then the TLS stream ends."""
    import ssl
    mailhost.deliver(MAIL)
    mailhost.write_config("set enforce-login-delay",
                          "set tls-server-cert-file = %s" % ca.cert,
                          "set tls-private-key-file = %s" % ca.key)
    server = standalone("-e", "login_delay=%d" % DELAY, "-l", "1")
    context = ssl.create_default_context(cafile=str(ca.root))
    replies = []
    for _ in range(2):
        client = pop(server)
        client.stls(context)
        client.user("alice")
        try:
            replies.append(client.pass_("secret"))
            client.quit()
        except poplib.error_proto as exc:
            replies.append(exc.args[0])
            with pytest.raises((poplib.error_proto, EOFError, OSError)):
                client.stat()
        client.close()
    assert replies[0].startswith(b"+OK alice has 3 visible messages")
    assert replies[1].startswith(b"-ERR [LOGIN-DELAY] You logged in less than"), replies
    assert not mailhost.temp_drop().exists()


@pytest.mark.clients
def test_the_wrong_password_inside_the_delay_is_the_usual_refusal(mailhost, standalone):
    """The delay is checked after the password: a stranger learns nothing."""
    server = standalone(*enforcing(mailhost))
    login_and_quit(server)
    client = pop(server)
    client.user("alice")
    with pytest.raises(poplib.error_proto) as caught:
        client.pass_("wrong")
    assert caught.value.args[0] == R.err(R.BAD_PASSWORD, user="alice").rstrip(b"\r\n")
    client.close()


@pytest.mark.clients
def test_the_spools_options_file_sets_a_users_own_delay(mailhost, standalone):
    """-U: the administrator's <spool>/.<user>.qpopper-options gives one
    user another delay (here none); CAPA after login announces it."""
    options = mailhost.spool_dir / ".alice.qpopper-options"
    options.write_text("set announce-login-delay = 0\n")
    os.chmod(str(options), 0o644)
    server = standalone("-U", *enforcing(mailhost))
    assert login_and_quit(server).startswith(b"+OK")
    assert login_and_quit(server).startswith(b"+OK")        # alice: no delay
    assert login_and_quit(server, "bob").startswith(b"+OK")
    with pytest.raises(poplib.error_proto) as caught:
        login_and_quit(server, "bob")                          # bob: the delay
    assert caught.value.args[0].startswith(b"-ERR [LOGIN-DELAY]")
    client = pop(server)
    client.user("alice")
    client.pass_("secret")
    assert client.capa()["LOGIN-DELAY"] == ["0"]
    client.quit()


@pytest.mark.clients
def test_the_user_databases_delay_is_the_users_own(mailhost, standalone):
    """login_delay=N among a user database line's extra fields: alice's is
    0 (none), bob's the -e one; CAPA after the login announces alice's."""
    mailhost.userdb.write_text(
        "alice:%s:%d:%d::%s:/bin/sh:login_delay=0\n" % (hashed("secret"), TEST_UID, TEST_GID,
                                                        mailhost.base)
        + "bob:%s:%d:%d::%s:/bin/sh\n" % (hashed("hunter2"), TEST_UID, TEST_GID, mailhost.base))
    server = standalone(*enforcing(mailhost))
    assert login_and_quit(server).startswith(b"+OK")
    assert login_and_quit(server).startswith(b"+OK")        # alice: no delay
    assert login_and_quit(server, "bob").startswith(b"+OK")
    with pytest.raises(poplib.error_proto) as caught:
        login_and_quit(server, "bob")
    assert caught.value.args[0].startswith(b"-ERR [LOGIN-DELAY]")
    client = pop(server)
    assert client.capa()["LOGIN-DELAY"] == [str(DELAY)]      # before login: the server's
    client.user("alice")
    client.pass_("secret")
    assert client.capa()["LOGIN-DELAY"] == ["0"]
    client.quit()


@pytest.mark.clients
def test_not_enforced_the_delay_is_only_announced(mailhost, standalone):
    mailhost.deliver(MAIL)
    server = standalone(*enforcing(mailhost, enforce=False))
    for _ in range(3):
        client = pop(server)
        assert client.capa()["LOGIN-DELAY"] == [str(DELAY)]
        client.user("alice")
        assert client.pass_("secret").startswith(b"+OK")
        client.quit()
    assert not record_of(mailhost).exists()


@pytest.mark.clients
@pytest.mark.parametrize("owner", ["user", "other"])
def test_a_symlinked_record_is_not_believed_nor_written_through(mailhost, standalone, owner):
    """The link is replaced by this login's record when the user may
    (the spool directory is sticky: only if the link is the user's); else
    the record cannot be written and no login is delayed by it."""
    server = standalone(*enforcing(mailhost))
    target = mailhost.base / "target"
    target.write_bytes(b"%d\n" % (2 ** 40))      # far ahead: it would lock alice out
    os.chown(str(target), TEST_UID, TEST_GID)
    os.symlink(str(target), str(record_of(mailhost)))
    if owner == "user":
        os.lchown(str(record_of(mailhost)), TEST_UID, TEST_GID)
    elif not IS_ROOT:
        pytest.skip("needs root: a link of another uid")
    assert login_and_quit(server).startswith(b"+OK")
    assert target.read_bytes() == b"%d\n" % (2 ** 40)
    if owner == "user":
        assert not record_of(mailhost).is_symlink()
        assert record_of(mailhost).stat().st_uid == TEST_UID
    else:
        assert record_of(mailhost).is_symlink()
        assert login_and_quit(server).startswith(b"+OK")


@pytest.mark.clients
def test_curl_and_fetchmail_get_the_login_delay_refusal(mailhost, standalone, tmp_path):
    mailhost.deliver(MAIL)
    server = standalone(*enforcing(mailhost))
    url = "pop3://127.0.0.1:%d/" % server.port
    curl = [need("curl"), "-q", "-sS", "-v", "--noproxy", "*", "-u", "alice:secret", url]
    first = run(curl, tmp_path)
    assert first.stdout.count(b"\n") == 3             # the listing of 3 messages
    second = run(curl, tmp_path, ok=range(1, 256))
    assert b"-ERR [LOGIN-DELAY] You logged in less than" in second.stderr, second.stderr

    outdir = tmp_path / "fetched"
    outdir.mkdir()
    refused = fetchmail(server.port, outdir, tmp_path, ok=range(1, 256))
    text = refused.stdout + refused.stderr
    assert b"[LOGIN-DELAY]" in text, text
    assert refused.returncode == 9, text        # LOCKBUSY: not a wrong password
    assert not list(outdir.iterdir())
    backdate(mailhost, DELAY)
    fetchmail(server.port, outdir, tmp_path)
    assert len(list(outdir.iterdir())) == 3


# --- errors and kill -9 writing the record -------------------------------------------

@pytest.mark.clients
@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT or not STRACE, reason="needs root and strace")
@pytest.mark.parametrize("calls,fault", [
    ("rename,renameat,renameat2", "EIO"), ("rename,renameat,renameat2", "SIGKILL"),
    ("write", "ENOSPC"), ("write", "SIGKILL"), ("fsync", "EIO")],
    ids=["rename-EIO", "rename-kill", "write-ENOSPC", "write-kill", "fsync-EIO"])
def test_a_fault_writing_the_record_leaves_a_usable_one(mailhost, calls, fault):
    """The record is written into .new, fsync'ed, renamed over the old one:
    an error at any of those keeps the old record and the login; kill -9
    there leaves the old record and a .new.  Either way the next login is
    judged by the old record, recovers the mail, and leaves this login's
    record alone in place."""
    args = enforcing(mailhost)
    mailhost.deliver(MAIL)
    old = 1_000_000_000                         # long ago: the next login may come
    write_record(record_of(mailhost), old, uid=TEST_UID)
    new = str(record_of(mailhost)) + ".new"
    how = "signal=SIGKILL" if fault == "SIGKILL" else "error=" + fault
    log = mailhost.base / "strace.log"
    command = [STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=" + calls,
               "-P", new, "-e", "inject=%s:%s:when=1" % (calls, how)]
    conv = start_inetd(command + mailhost.command(*args), stderr=subprocess.DEVNULL)
    try:
        conv.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
        replies = []
        while True:
            replies.append(conv.line())
    except (EOFError, OSError):
        pass
    finally:
        conv.close()
    text = log.read_text()
    assert ("+++ killed by SIGKILL +++" if fault == "SIGKILL" else "(INJECTED)") in text, text
    if fault != "SIGKILL":
        assert replies[1].startswith(b"+OK alice has 3 visible messages"), replies
        assert not os.path.exists(new)
    else:
        assert os.path.exists(new)              # killed with the new record written
    assert record_of(mailhost).read_bytes() == b"%d\n" % old

    conv = start_inetd(mailhost.command(*args))
    try:
        assert conv.login().startswith(b"+OK alice has 3 visible messages")
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        conv.close()
    assert int(record_of(mailhost).read_bytes()) > old
    assert not os.path.exists(new)
    assert len(split_mbox(mailhost.spool().read_bytes())) == 3
    conv = start_inetd(mailhost.command(*args))
    try:
        assert conv.login().startswith(b"-ERR [LOGIN-DELAY]")
    finally:
        conv.close()
