"""The per-session loop of transport/connection.py, over a scripted
connection that records every write."""

import pytest

from conftest import RecordingLog, corpus

from popper.transport import connection

MAIL = corpus.mbox_bytes(list(corpus.messages(30, seed=51)))


class ScriptedConnection:
    """Hands out the given reads, then EOF; records each write."""

    def __init__(self, *reads: bytes):
        self.reads = list(reads)
        self.writes = []

    def wait_readable(self, timeout) -> bool:
        return True

    def recv(self) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    def send(self, data) -> None:
        self.writes.append(bytes(data))


def test_pipelined_replies_go_out_in_one_write(make_session):
    session, _ = make_session(mail=MAIL)
    conn = ScriptedConnection(b"USER alice\r\nPASS secret\r\n",
                              b"".join(b"RETR %d\r\n" % n for n in range(1, 21)) + b"LAST\r\n")
    connection.run(conn, session, 60, RecordingLog())
    greeting, login, *retrs, last = conn.writes
    assert greeting.startswith(b"+OK QPOP") and b"\r\n+OK alice has 30 " in login
    sent = b"".join(retrs)
    assert sent.count(b" octets\r\n") == 20
    # Twenty replies, gathered into as few writes as FLUSH_AT allows.
    assert len(retrs) <= len(sent) // connection.FLUSH_AT + 1 < 20
    # The RETRs were written before LAST ran, so they count as read.
    assert last == b"+OK 20 is the last read message.\r\n"


def test_a_large_reply_is_written_in_large_pieces(make_session):
    big = corpus.Message(1, b"From a@b Thu Nov 26 14:34:16 2026\n",
                         b"Subject: big\n\n" + b"0123456789" * 100000 + b"\n")
    session, _ = make_session(mail=corpus.mbox_bytes([big]))
    conn = ScriptedConnection(b"USER alice\r\nPASS secret\r\nRETR 1\r\nNOOP\r\n")
    connection.run(conn, session, 60, RecordingLog())
    pieces = conn.writes[2:]
    assert b"".join(pieces).endswith(b".\r\n+OK no big woop\r\n")
    assert sum(len(p) for p in pieces) > 1000000 and len(pieces) <= 6


def test_a_write_that_fails_mid_retr_is_a_hangup_and_not_a_read(make_session, spool):
    session, log = make_session(mail=MAIL)

    class Breaking(ScriptedConnection):
        def send(self, data):
            if b" octets\r\n" in bytes(data):
                raise BrokenPipeError(32, "Broken pipe")
            super().send(data)
    conn = Breaking(b"USER alice\r\nPASS secret\r\n", b"DELE 1\r\nRETR 2\r\nQUIT\r\n")
    connection.run(conn, session, 60, log)
    data = (spool / "alice").read_bytes()
    assert data.count(b"\nStatus: U\n") == 29                 # RETR 2 not counted as read
    assert any("-ERR POP hangup from mail.example" in m for m in log.texts("notice"))


def test_the_client_sees_the_end_before_the_session_closes_its_maildrop(make_session, spool):
    """After QUIT's reply the connection ends first; freeing the temporary
    drop (the session's close) follows, and the client does not wait for it."""
    import socket
    session, log = make_session(mail=MAIL)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    seen_at_close = []

    def ended_for_the_client() -> bool:
        while True:
            try:
                if ours.recv(65536) == b"":
                    return True
            except BlockingIOError:
                return False
    close = session.close

    def recording_close():
        seen_at_close.append(ended_for_the_client())
        close()
    session.close = recording_close
    ours.sendall(b"USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n")
    try:
        connection.run(connection.Connection(theirs.fileno(), theirs.fileno()), session, 60, log)
    finally:
        session.close = close
        theirs.close()
        ours.close()
    assert seen_at_close[:1] == [True]       # (the transport closes again: a no-op)
    assert (spool / "alice").read_bytes().count(b"\nFrom ") + 1 == 29     # the update was made


def test_a_retr_read_alone_counts_once_the_next_command_comes(make_session, spool):
    """Each RETR in its own read (the transport's short way, Session.quick):
    RETR 1 sent whole and followed by RETR 2 is read; RETR 2, whose write
    failed, and RETR 3 never sent are not."""
    session, log = make_session(mail=MAIL)
    writes = []

    class Breaking(ScriptedConnection):
        def send(self, data):
            writes.append(bytes(data))
            if len(writes) == 4:
                raise BrokenPipeError(32, "Broken pipe")
    conn = Breaking(b"USER alice\r\nPASS secret\r\n", b"RETR 1\r\n", b"RETR 2\r\n", b"RETR 3\r\n")
    connection.run(conn, session, 60, log)
    assert writes[2].startswith(b"+OK ") and writes[2].endswith(b"\r\n.\r\n")
    data = (spool / "alice").read_bytes()
    assert data.count(b"\nStatus: U\n") == 29 and data.count(b"\nStatus: RO\n") == 1


def test_a_retr_sent_whole_before_the_end_of_file_is_not_read(make_session, spool):
    session, log = make_session(mail=MAIL)
    conn = ScriptedConnection(b"USER alice\r\nPASS secret\r\n", b"RETR 1\r\n")
    connection.run(conn, session, 60, log)
    assert conn.writes[2].endswith(b"\r\n.\r\n")
    assert (spool / "alice").read_bytes().count(b"\nStatus: U\n") == 30


def _rcvtimeo(sock) -> float:
    import socket
    import struct
    seconds, micro = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    return seconds + micro / 1e6


@pytest.mark.skipif(connection.RCVTIMEO is None, reason="SO_RCVTIMEO reads are Linux's")
def test_recv_within_is_one_recv_bounded_by_so_rcvtimeo():
    """The wait for a command is the recv() itself: it ends at its bound
    (never later than asked), SO_RCVTIMEO is set only when the bound must
    change, and the data or the end of file comes back."""
    import socket
    import time
    ours, theirs = socket.socketpair()
    conn = connection.Connection(theirs.fileno(), theirs.fileno())
    try:
        start = time.monotonic()
        assert conn.recv_within(0.2) is None
        assert 0.19 < time.monotonic() - start < 0.6
        ours.send(b"NOOP\r\n")
        assert conn.recv_within(5) == b"NOOP\r\n"
        assert abs(_rcvtimeo(theirs) - 5) < 0.001
        ours.send(b"x")
        assert conn.recv_within(4.5) == b"x"                     # shorter: set anew
        assert abs(_rcvtimeo(theirs) - 4.5) < 0.001
        ours.send(b"y")
        assert conn.recv_within(5) == b"y"                       # up to 1 s shorter: kept
        assert abs(_rcvtimeo(theirs) - 4.5) < 0.001
        ours.send(b"z")
        assert conn.recv_within(None) == b"z" and _rcvtimeo(theirs) == 0
        ours.close()
        assert conn.recv_within(1) == b""
    finally:
        conn.release()
        theirs.close()


def test_a_socket_somebody_else_made_non_blocking_is_waited_for_not_spun_on(make_session):
    """O_NONBLOCK set on the shared file: recv() cannot wait, so the reads
    go back to poll(); -T 1 still ends the session after ~1 s, at little CPU."""
    import os
    import signal
    import socket
    import time
    session, log = make_session()
    ours, theirs = socket.socketpair()
    os.set_blocking(theirs.fileno(), False)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM)}
    start, cpu = time.monotonic(), time.process_time()
    try:
        connection.run(connection.Connection(theirs.fileno(), theirs.fileno()), session, 1, log)
        ended, cpu = time.monotonic() - start, time.process_time() - cpu
        ours.settimeout(5)
        got = ours.recv(65536)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        ours.close()
        theirs.close()
    assert b"-ERR POP timeout from mail.example\r\n" in got
    assert 0.9 < ended < 1.5 and cpu < 0.5
