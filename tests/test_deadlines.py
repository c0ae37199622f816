"""Every wait of a session has a deadline (transport/connection.py): a
client that stops reading, one that dribbles a command a byte at a time,
one that pipelines without reading, one that never logs in -- each is
ended within its deadline, logged, and leaves the user's maildrop free."""

import socket
import threading
import time

import pytest

from conftest import Conversation, RecordingLog, Standalone, corpus, start_inetd

from popper import __version__
from popper.protocol.session import TRANSACTION
from popper.transport import connection

SMALL = corpus.mbox_bytes(list(corpus.messages(3, seed=71)))
# One message of 6 MB: more than any socket buffer between popper and a
# client holds (a socketpair's ~200 KB, TCP's 4 MB send buffer at most).
BIG = corpus.mbox_bytes([corpus.Message(
    1, b"From big@example.org Thu Nov 26 14:34:16 2026\n",
    b"Subject: big\nMessage-ID: <big@example.org>\n\n" + (b"x" * 99 + b"\n") * 60000)])


def wrap(syslog, command: list) -> list:
    """syslog.wrap(command) with the private /dev open to all, so that the
    session, once it is the user, still reaches /dev/log."""
    wrapped = syslog.wrap(command)
    script = wrapped.index("-c") + 1
    wrapped[script] = wrapped[script].replace("d=$(mktemp -d) && ",
                                              'd=$(mktemp -d) && chmod 755 "$d" && ', 1)
    return wrapped


def wait_for_line(syslog, text: str, seconds: float) -> float:
    """The time.monotonic() at which a log line containing text was seen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in line for line in syslog.texts(0.05)):
            return time.monotonic()
    raise AssertionError("no log line with %r in %r" % (text, syslog.texts(0)))


def next_login_works(conv) -> None:
    """The user's next session logs in: no [IN-USE], the lock was let go."""
    reply = conv.login()
    assert reply.startswith(b"+OK alice has "), reply
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.clients
@pytest.mark.parametrize("transport", ["inetd", "tcp"])
def test_a_client_that_never_reads_its_retr_is_ended_by_the_write_deadline(
        mailhost, syslog, transport):
    mailhost.deliver(BIG + SMALL)
    command = wrap(syslog, mailhost.command("-T", "2"))
    if transport == "inetd":
        conv, server = start_inetd(command), None
    else:
        server = Standalone(command)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # a small window
        sock.connect(("127.0.0.1", server.port))
        conv = Conversation(sock)
    try:
        assert conv.login().startswith(b"+OK alice has 4 visible messages")
        start = time.monotonic()
        conv.send(b"RETR 1\r\n")                # and never read
        seen = wait_for_line(syslog, "Timeout (2 secs) during nw write from alice at", 10)
        assert seen - start < 2 + 1.2
        if conv.process:
            conv.process.wait(5)
            assert time.monotonic() - start < 2 + 1.5
        # No -ERR was written into the middle of the message: what the
        # client got is the start of the reply, cut short.
        conv.sock.settimeout(5)
        got = conv.buf
        while True:
            data = conv.sock.recv(1 << 20)
            if not data:
                break
            got += data
        assert got.startswith(b"+OK ") and b"-ERR" not in got and len(got) < len(BIG)
        conv.sock.close()
        again = (start_inetd(mailhost.command()) if server is None else server.connect())
        next_login_works(again)
    finally:
        conv.close()
        if server:
            server.stop()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.clients
def test_a_command_dribbled_a_byte_at_a_time_times_out_within_T(mailhost, syslog):
    mailhost.deliver(SMALL)
    conv = start_inetd(wrap(syslog, mailhost.command("-T", "3")))
    try:
        assert conv.login().startswith(b"+OK")
        start = time.monotonic()
        conv.sock.settimeout(2)
        got = b""
        for byte in b"NOOP" + b"x" * 10:        # a byte every 2 s: never a line end
            conv.send(bytes([byte]))
            try:
                got = conv.sock.recv(1000)
            except socket.timeout:
                continue
            break
        ended = time.monotonic() - start
        assert got.startswith(b"-ERR POP timeout from "), got
        assert 3 - 0.5 < ended < 3 + 1
        conv.process.wait(5)
        wait_for_line(syslog, "Timeout (3 secs) during nw read from alice at", 5)
        next_login_works(start_inetd(mailhost.command()))
    finally:
        conv.close()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.clients
def test_pipelined_commands_never_read_end_with_the_write_deadline(mailhost, syslog):
    """300,000 CAPA before login (as root under inetd), the replies never
    read: write-timeout (here 2 s; -T stays 60) ends the session."""
    mailhost.write_config("set write-timeout = 2")
    conv = start_inetd(wrap(syslog, mailhost.command()))
    progress = [time.monotonic()]
    data = b"CAPA\r\n" * 300000

    def flood():
        try:
            for at in range(0, len(data), 65536):
                conv.sock.sendall(data[at:at + 65536])
                progress.append(time.monotonic())
        except OSError:
            pass
    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        conv.process.wait(15)
        ended = time.monotonic()
        assert ended - progress[-1] < 2 + 1
        assert len(progress) < len(data) // 65536      # popper stopped reading
        wait_for_line(syslog, "Timeout (2 secs) during nw write from  at", 5)
        sender.join(5)
        next_login_works(start_inetd(mailhost.command()))
    finally:
        conv.close()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.clients
def test_a_session_not_logged_in_after_login_timeout_is_ended(mailhost, syslog):
    """A command every 0.9 s, each answered: -T never expires, login-timeout does."""
    mailhost.write_config("set login-timeout = 3")
    conv = start_inetd(wrap(syslog, mailhost.command("-T", "2")))
    try:
        conv.sock.settimeout(0.9)
        start = time.monotonic()
        got = b""
        while time.monotonic() - start < 8:
            try:
                conv.send(b"CAPA\r\n")
            except OSError:
                pass                    # popper has closed: what it sent is still there
            try:
                data = conv.sock.recv(65536)
                while data:
                    got += data
                    data = conv.sock.recv(65536)
                break                   # the end of file
            except socket.timeout:
                continue
        ended = time.monotonic() - start
        assert got.startswith(b"+OK Capability list follows\r\n")
        host = conv.greeting.split(b" at ")[1].split(b" ")[0]
        assert got.endswith(b"-ERR POP timeout from %s\r\n"
                            b"+OK Pop server at %s signing off.\r\n" % (host, host)), got[-200:]
        assert 3 - 0.5 < ended < 3 + 1
        conv.process.wait(5)
        wait_for_line(syslog, "Timeout (3 secs) during login from  at", 5)
    finally:
        conv.close()


def test_run_sends_first_and_feeds_pending_before_reading(make_session):
    """The interface a process taking over a connection uses: `first`
    instead of the greeting, `pending` bytes before any read."""
    import signal
    session, log = make_session(mail=SMALL)
    ours, theirs = socket.socketpair()
    received = []

    def client():
        ours.sendall(b"OP\r\nQUIT\r\n")
        ours.settimeout(10)
        data = b""
        while b"signing off" not in data:
            chunk = ours.recv(65536)
            if not chunk:
                break
            data += chunk
        received.append(data)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert b"".join(session.feed(b"USER alice\r\nPASS secret\r\n")).startswith(b"+OK")
        assert session.state == TRANSACTION
        connection.run(connection.Connection(theirs.fileno(), theirs.fileno()), session, 5,
                       RecordingLog(), first=[b"+OK handed over\r\n"], pending=b"STAT\r\nNO")
        thread.join(10)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        ours.close()
        theirs.close()
    assert received[0].split(b"\r\n")[:4] == [
        b"+OK handed over", b"+OK 3 %d" % session.total_octets, b"+OK no big woop",
        b"+OK Pop server at mail.example signing off."]


def test_a_partial_line_keeps_its_deadline_across_reads(make_session):
    """In-process: -T 1, a byte every 0.4 s: the session ends after ~1 s
    with the timeout's -ERR, not at the first silent second."""
    import signal
    session, log = make_session()
    ours, theirs = socket.socketpair()
    got = []

    def client():
        ours.settimeout(0.4)
        data = b""
        for _ in range(10):
            try:
                chunk = ours.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"signing off" in data:
                    break
            except socket.timeout:
                ours.send(b"x")
        got.append(data)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    thread = threading.Thread(target=client)
    start = time.monotonic()
    thread.start()
    try:
        connection.run(connection.Connection(theirs.fileno(), theirs.fileno()), session, 1, log)
        ended = time.monotonic() - start
        thread.join(10)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        ours.close()
        theirs.close()
    assert b"\r\n-ERR POP timeout from mail.example\r\n" in got[0]
    assert 0.9 < ended < 1.5
    # popper.c's tgetline() prints p->user as it is: nothing before USER.
    assert "(v%s) Timeout (1 secs) during nw read from  at client.example (192.0.2.9)" \
        % __version__ in log.texts("notice")
