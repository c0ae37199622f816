"""Standalone mode's limits (transport/standalone.py): max-sessions,
max-sessions-per-address, max-connections-per-second.  Over a limit a
client gets one -ERR [SYS/TEMP] line and the close; the refusals are
logged, a line per address and second at most; other addresses are served."""

import re
import socket
import threading
import time

import pytest

from conftest import Conversation, Standalone

from popper.protocol import replies as R

pytestmark = [pytest.mark.root, pytest.mark.clients]

TOO_MANY_FROM = R.err(R.TOO_MANY_FROM_ADDRESS, address="127.0.0.1").rstrip(b"\r\n")
TOO_FAST = R.err(R.TOO_FAST_FROM_ADDRESS, address="127.0.0.1").rstrip(b"\r\n")
TOO_MANY = R.err(R.TOO_MANY_SESSIONS).rstrip(b"\r\n")


def start(mailhost, syslog, *config: str) -> Standalone:
    mailhost.write_config(*config)
    server = Standalone(syslog.wrap(mailhost.command()))
    time.sleep(0.3)             # the fixture's probe connection: its session is gone
    return server


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def first_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0]


def closed(sock: socket.socket) -> bool:
    """Whether popper closed the connection after its first line."""
    try:
        sock.settimeout(5)
        rest = sock.recv(4096)
        while b"\r\n" in rest:              # the rest of the first line's packet
            rest = rest.split(b"\r\n", 1)[1]
            if not rest:
                rest = sock.recv(4096)
        return rest == b""
    except ConnectionResetError:
        return True


def refusals(syslog, pattern: str) -> list:
    """The counts of the refusal lines matching pattern (after "Refused ")."""
    regex = re.compile(r"Refused (\d+) connections?" + pattern)
    return [int(m.group(1)) for m in (regex.search(t) for t in syslog.texts(0.3)) if m]


@pytest.mark.slow
def test_600_connections_from_one_address_get_20_sessions_and_others_are_served(
        mailhost, syslog):
    server = start(mailhost, syslog, "set max-connections-per-second = 0")
    flood, done = [], threading.Event()

    def attack():
        try:
            for _ in range(600):
                flood.append(connect(server.port))
        finally:
            done.set()
    attacker = threading.Thread(target=attack)
    try:
        attacker.start()
        while len(flood) < 300 and not done.is_set():
            time.sleep(0.01)
        began = time.monotonic()
        other = Conversation(connect(server.port, "127.0.0.2"))      # in the middle of it
        assert time.monotonic() - began < 1
        assert other.greeting.startswith(b"+OK QPOP")
        assert other.login().startswith(b"+OK alice has 0 visible messages")
        attacker.join(60)
        assert len(flood) == 600
        lines = [first_line(sock) for sock in flood]
        assert sum(line.startswith(b"+OK QPOP") for line in lines) == 20
        refused = [sock for sock, line in zip(flood, lines) if line == TOO_MANY_FROM]
        assert len(refused) == 580
        assert all(closed(sock) for sock in refused[:20])
        time.sleep(1.2)                                 # the last counts are logged
        counts = refusals(syslog, r" from 127\.0\.0\.1: 20 sessions from that address "
                                  r"\(max-sessions-per-address\)")
        assert sum(counts) == 580
        assert counts[0] == 1 and len(counts) <= 2 + (time.monotonic() - began)
        assert other.cmd("QUIT").startswith(b"+OK")
    finally:
        attacker.join(60)
        for sock in flood:
            sock.close()
        server.stop()


@pytest.mark.slow
def test_connections_per_second_from_one_address(mailhost, syslog):
    server = start(mailhost, syslog, "set max-connections-per-second = 5",
                   "set max-sessions-per-address = 0")
    time.sleep(1)               # the probe's start is a second old
    try:
        socks = [connect(server.port) for _ in range(12)]
        lines = [first_line(sock) for sock in socks]
        assert [line.startswith(b"+OK QPOP") for line in lines] == [True] * 5 + [False] * 7
        assert lines[5:] == [TOO_FAST] * 7
        other = connect(server.port, "127.0.0.2")               # another address: its own
        assert first_line(other).startswith(b"+OK QPOP")
        other.close()
        time.sleep(1.1)
        again = connect(server.port)
        assert first_line(again).startswith(b"+OK QPOP")        # a second later: served
        again.close()
        for sock in socks:
            sock.close()
        time.sleep(1.1)
        assert sum(refusals(syslog, r" from 127\.0\.0\.1: 5 connections from that address "
                                    r"in the last second \(max-connections-per-second\)")) == 7
    finally:
        server.stop()


def test_the_total_limit(mailhost, syslog):
    server = start(mailhost, syslog, "set max-sessions = 3", "set max-sessions-per-address = 0",
                   "set max-connections-per-second = 0")
    try:
        sessions = [Conversation(connect(server.port)) for _ in range(3)]
        assert all(conv.greeting.startswith(b"+OK QPOP") for conv in sessions)
        late = connect(server.port, "127.0.0.2")
        assert first_line(late) == TOO_MANY and closed(late)
        late.close()
        assert sessions[0].cmd("QUIT").startswith(b"+OK") and sessions[0].closed()
        deadline = time.monotonic() + 2         # the listener reaps the session: a place is free
        while True:
            conv = Conversation(connect(server.port, "127.0.0.2"))
            if conv.greeting.startswith(b"+OK QPOP") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert conv.greeting.startswith(b"+OK QPOP")
        assert sum(refusals(syslog, r": 3 sessions running \(max-sessions\)")) >= 1
        for conv in sessions[1:] + [conv]:
            conv.sock.close()
    finally:
        server.stop()
