"""The unprivileged login phase (popper/privsep.py), seen from outside: who
reads the client's bytes, with which privileges, and what the root part
accepts from the login process."""

import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import IS_ROOT, TEST_UID, USERS, corpus, start_inetd

from popper import privsep
from popper.auth import Account, AuthError
from popper.auth.gatekeeper import Gatekeeper
from popper.protocol import replies as R
from popper.protocol.session import Client
from popper.settings import Settings

needs_root = pytest.mark.skipif(not IS_ROOT, reason="privilege separation needs root")
NOBODY = 65534
MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=17)))


def status_of(pid: int) -> dict:
    text = pathlib.Path("/proc/%d/status" % pid).read_text()
    return {line.split(":")[0]: line.split(":", 1)[1].split() for line in text.splitlines()}


def children_of(pid: int) -> list:
    out = subprocess.run(["pgrep", "-P", str(pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.root
@pytest.mark.clients
@needs_root
def test_the_login_process_is_nobody_without_capabilities(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    root_part = conv.process.pid
    # The greeting goes out before the fork: wait for the login process to
    # be there and to have dropped its privileges.
    deadline = time.monotonic() + 10
    while True:
        children = children_of(root_part)
        status = status_of(children[0]) if len(children) == 1 else {}
        if status.get("Uid") == [str(NOBODY)] * 4 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(children) == 1, children
    assert status["Uid"] == [str(NOBODY)] * 4 and status["Gid"] == [str(NOBODY)] * 4
    assert status["Groups"] in ([], [str(NOBODY)])
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap][0], 16) == 0, (cap, status[cap])
    assert status["NoNewPrivs"] == ["1"]
    assert status_of(root_part)["Uid"] == ["0"] * 4     # it reads nothing from the client
    assert conv.login().startswith(b"+OK alice has 3 ")
    assert children_of(root_part) == []                 # the login process is gone
    assert status_of(root_part)["Uid"] == [str(TEST_UID)] * 4
    assert conv.cmd("QUIT").startswith(b"+OK")


@pytest.mark.root
@pytest.mark.clients
@needs_root
@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
def test_strace_no_process_reads_the_client_as_root(mailhost, tmp_path):
    """Every read of the client's bytes, followed with strace -f: each is by
    a process whose last setresuid was to nobody (before login) or to the
    user (after); none by root."""
    mailhost.deliver(MAIL)
    trace = tmp_path / "strace.out"
    command = ["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=read,recvfrom,setresuid",
               "-s", "64"] + mailhost.command()
    conv = start_inetd(command)
    conv.send(b"CAPA\r\n")
    assert conv.multiline()
    assert conv.login().startswith(b"+OK")
    conv.send(b"STAT\r\nQUIT\r\n")
    assert conv.line().startswith(b"+OK 3 ") and conv.line().startswith(b"+OK")
    conv.close()
    uid, reads = {}, []
    for line in trace.read_text().splitlines():
        m = re.match(r"(\d+)\s+setresuid\((\d+), \d+, \d+\)\s+= 0", line)
        if m:
            uid[m.group(1)] = int(m.group(2))
        # What the client sent, read from fd 0 or a dup of it: its commands.
        m = re.match(r'(\d+)\s+(?:read|recvfrom)\(\d+, "((?:CAPA|USER|PASS|STAT).*?)"', line)
        if m:
            reads.append((m.group(1), uid.get(m.group(1), 0), m.group(2)))
    assert reads and reads[0][2].startswith("CAPA")
    assert [r for r in reads if r[1] == 0] == []
    assert any(r[1] == NOBODY and "PASS" in r[2] for r in reads)
    # The USER/PASS lines were read by the login process; STAT by the user.
    assert any(r[1] == TEST_UID and "STAT" in r[2] for r in reads)


@pytest.mark.clients
def test_pipelined_commands_after_pass_survive_the_hand_over(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    conv.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nUIDL 1\r\nNOOP\r\n")
    replies = [conv.line() for _ in range(4)]
    assert replies[0].startswith(b"+OK Password required")
    assert replies[1].startswith(b"+OK alice has 3 visible messages")
    assert replies[2].startswith(b"+OK 3 ") and replies[3].startswith(b"+OK 1 ")
    assert conv.line().startswith(b"+OK")
    assert conv.cmd("QUIT").startswith(b"+OK")


@pytest.mark.clients
def test_a_line_split_across_the_hand_over_is_whole(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    conv.send(b"USER alice\r\nPASS secret\r\nST")
    assert conv.line().startswith(b"+OK") and conv.line().startswith(b"+OK alice has")
    time.sleep(0.2)
    conv.send(b"AT\r\n")
    assert conv.line().startswith(b"+OK 3 ")
    assert conv.cmd("QUIT").startswith(b"+OK")


@pytest.mark.clients
def test_failures_then_a_login(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    for _ in range(3):
        assert conv.login(password="wrong").startswith(b"-ERR [AUTH] Password supplied")
    assert conv.cmd("USER alice\0junk").startswith(b"+OK")
    assert conv.cmd("PASS secret").startswith(b"-ERR [AUTH] Password supplied")
    assert conv.login().startswith(b"+OK alice has 3")
    assert conv.cmd("QUIT").startswith(b"+OK")


@pytest.mark.root
@pytest.mark.clients
@needs_root
def test_the_root_part_enforces_the_failure_delay(mailhost, inetd):
    mailhost.write_config("set auth-fail-delay = 1")
    conv = inetd()
    started = time.monotonic()
    assert conv.login(password="wrong").startswith(b"-ERR")
    assert time.monotonic() - started >= 1


@pytest.mark.slow
@pytest.mark.clients
def test_login_timeout_ends_a_session_that_never_logs_in(mailhost, inetd):
    mailhost.write_config("set login-timeout = 2")
    conv = inetd("-T", "30")
    started = time.monotonic()
    for _ in range(6):
        conv.cmd("NOOP")          # active, but never logged in
        time.sleep(0.2)
    with pytest.raises((EOFError, ConnectionResetError)):
        while time.monotonic() - started < 10:
            conv.cmd("CAPA")
            conv.multiline()
    assert time.monotonic() - started < 4


@pytest.mark.clients
def test_an_unknown_login_user_refuses_to_start(mailhost):
    mailhost.write_config("set login-user = no-such-user-here")
    result = subprocess.run(mailhost.command(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    if IS_ROOT:
        assert result.returncode == 1
        assert "login-user no-such-user-here: no such user" in result.stderr


@pytest.mark.clients
def test_login_user_none_serves_in_one_process(mailhost, inetd):
    mailhost.deliver(MAIL)
    mailhost.write_config("set login-user = none")
    conv = inetd()
    assert children_of(conv.process.pid) == []
    assert conv.login().startswith(b"+OK alice has 3")
    assert conv.cmd("QUIT").startswith(b"+OK")


# --- the root part, against a subverted login process ----------------------------------

class FakeBackend:
    def __init__(self):
        self.calls = []

    def authenticate(self, user, password, client):
        self.calls.append(user)
        if USERS.get(user) == password.decode("latin-1"):
            return Account(user, 4242, 4242)
        raise AuthError(R.BAD_PASSWORD, log="test", user=user)


class Log:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda message: self.lines.append((level, message))


def root_part(frames: list):
    """Run the root part's loop against a login process that sends these
    raw bytes; (result or exception, what it answered, backend calls)."""
    ours, theirs = socket.socketpair()
    theirs.sendall(b"".join(frames))
    theirs.shutdown(socket.SHUT_WR)
    settings = Settings()
    settings.auth_fail_delay = 0
    backend = FakeBackend()
    try:
        result = privsep._check_logins(privsep.Channel(ours), time.monotonic() + 5, settings,
                                       Gatekeeper(settings, backend, Log()),
                                       Client("h", "192.0.2.1"), Log())
    except privsep.ChannelError as exc:
        result = exc
    ours.close()                # the answers end at EOF, not at a timeout
    theirs.settimeout(1)
    answers = b""
    try:
        while True:
            piece = theirs.recv(65536)
            if not piece:
                break
            answers += piece
    except (socket.timeout, OSError):
        pass
    theirs.close()
    return result, answers, backend.calls


def frame(*fields: bytes) -> bytes:
    body = b"".join(len(f).to_bytes(4, "big") + f for f in fields)
    return len(body).to_bytes(4, "big") + body


def test_the_root_part_accepts_a_good_login_and_the_rest():
    result, answers, calls = root_part([frame(b"PASS", b"alice", b"wrong"),
                                        frame(b"PASS", b"alice", b"secret"),
                                        frame(b"REST", b"STAT\r\n")])
    account, rest, relay, no_mime = result
    assert account.name == "alice" and account.uid == 4242 and rest == b"STAT\r\n"
    assert not relay and not no_mime
    assert calls == ["alice", "alice"]
    assert answers.startswith(frame(b"NO", R.BAD_PASSWORD.encode(), b"user", b"alice"))
    assert answers.endswith(frame(b"YES", b"alice"))


def test_the_hand_over_carries_no_mime_and_nothing_else():
    """A -no-mime login's session mangles by default: the login process says
    so after the client's bytes; any other extra word is a bad hand-over."""
    result, _, _ = root_part([frame(b"PASS", b"alice", b"secret"),
                              frame(b"REST", b"", b"no-mime")])
    assert result[0].name == "alice" and result[3] is True
    result, _, _ = root_part([frame(b"PASS", b"alice", b"secret"),
                              frame(b"REST", b"", b"other")])
    assert isinstance(result, privsep.ChannelError)


@pytest.mark.parametrize("frames", [
    [b"\xff\xff\xff\xff"],                                        # a frame too big
    [(300000).to_bytes(4, "big") + b"x" * 100],
    [b"\x00\x00\x00\x09\x00\x00\x00\x10abcde"],                    # a field past the frame
    [frame(b"REST", b"STAT\r\n")],                                 # the rest before a yes
    [frame(b"PASS", b"alice")],                                    # too few fields
    [frame(b"PASS", b"alice", b"secret", b"more")],
    [frame(b"PASS", b"a" * 5000, b"secret")],                      # an over-long name
    [frame(b"APOP", b"alice", b"0" * 32)],                         # not a request it knows
    [frame(b"PASS", b"alice", b"secret"), frame(b"PASS", b"alice", b"secret")],
    [b"\x00\x00"],                                                 # cut short
])
def test_the_root_part_refuses_anything_else(frames):
    result, _, _ = root_part(frames)
    assert isinstance(result, privsep.ChannelError), result


def answer_frames(answers: bytes) -> list:
    """The frames of the root part's answers, as field lists."""
    out = []
    while answers:
        length = int.from_bytes(answers[:4], "big")
        body, answers = answers[4:4 + length], answers[4 + length:]
        fields = []
        while body:
            size = int.from_bytes(body[:4], "big")
            fields.append(body[4:4 + size])
            body = body[4 + size:]
        out.append(fields)
    return out


def test_sasl_requests_without_their_first_step_are_refused():
    """A subverted login process cannot skip CRAM-MD5's challenge or
    SCRAM's proof: the root part answers NO, and checks its own challenge,
    used once."""
    result, answers, _ = root_part([frame(b"CRAM", b"alice", b"0" * 32),
                                    frame(b"SCRAM3"),
                                    frame(b"SCRAM2", b"c=biws,r=x,p=AAAA"),
                                    frame(b"CHALLENGE"),
                                    frame(b"SCRAM1", b"not scram"),
                                    frame(b"PLAIN", b"bob", b"alice", b"secret")])
    assert isinstance(result, privsep.ChannelError)           # the end of the frames
    replies = answer_frames(answers)
    assert [r[:2] for r in replies[:3]] == [[b"NO", R.AUTH_FAILED.encode()]] * 3
    assert replies[3][0] == b"MORE" and re.match(rb"^<[0-9a-f]{16}\.\d+@", replies[3][1])
    assert replies[4][:2] == [b"NO", R.AUTH_MALFORMED.encode()]
    assert replies[5][:2] == [b"NO", R.AUTHZID_REFUSED.encode()]


def test_a_nul_or_slash_in_the_name_never_reaches_a_back_end():
    backend = FakeBackend()
    gate = Gatekeeper(Settings(), backend, Log())
    for name in ("alice\0junk", "../alice", "x/../../tmp/y", ".alice", "", "a" * 65):
        with pytest.raises(AuthError) as info:
            gate.authenticate(name, b"secret", Client("h", "192.0.2.1"))
        assert info.value.template == R.BAD_PASSWORD
    assert backend.calls == []


def test_an_account_name_a_path_cannot_be_built_from_is_refused():
    class Renaming(FakeBackend):
        def authenticate(self, user, password, client):
            return Account("../../tmp/y", 4242, 4242)
    gate = Gatekeeper(Settings(), Renaming(), Log())
    with pytest.raises(AuthError):
        gate.authenticate("alice", b"secret", Client("h", "192.0.2.1"))


def big_mail() -> bytes:
    body = b"".join(b"line %06d of a big message, to be cut short\n" % i for i in range(5000))
    return (b"From a@example.com Mon Jan  1 00:00:00 2024\nFrom: a@example.com\n"
            b"Message-ID: <big@example.com>\n\n" + body + b"\n" + MAIL)


@pytest.mark.clients
def test_auto_delete_keeps_a_message_the_client_reset_during(mailhost, tcp_inetd):
    """Finding 11: RETR of a 200 KiB message, the client reads 2 KB and
    resets; with auto-delete the message must stay."""
    mailhost.deliver(big_mail())
    mailhost.write_config("set auto-delete")
    server = tcp_inetd()
    conv = server.connect()
    assert conv.login().startswith(b"+OK alice has 4")
    conv.send(b"RETR 1\r\n")
    got = b""
    while len(got) < 2048:
        got += conv.sock.recv(2048)
    conv.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conv.sock.close()                                   # a reset
    deadline = time.monotonic() + 20
    while mailhost.temp_drop().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"<big@example.com>" in mailhost.spool().read_bytes()
    conv = server.connect()
    assert conv.login().startswith(b"+OK alice has 4")
    assert conv.cmd("RETR 4").startswith(b"+OK")
    conv.multiline()
    assert conv.cmd("QUIT").startswith(b"+OK")          # QUIT: RETR 4 was received
    deadline = time.monotonic() + 20
    while mailhost.temp_drop().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    data = mailhost.spool().read_bytes()
    assert b"<big@example.com>" in data and data.count(b"\nMessage-ID: ") == 3
