"""Logging that a broken syslog daemon or another local user cannot turn
against popper.

- A syslog daemon that stops reading (its /dev/log queue full) must not
  stall a session: popper's own syslog client never waits; what it could
  not send is counted and the count logged once syslog reads again.
- What reaches /dev/log is byte for byte what glibc's syslog(3) sent.
- The trace file (-t) is opened without following links and checked before
  popper writes to it: a hard link to a root file, a symbolic link, a FIFO,
  a file others may write or another user's file is refused at start-up.

The end-to-end tests need root: /dev/log is replaced in a private mount
namespace (conftest.SyslogCapture), and the trace files are made by root
for another uid in a 1777 directory.
"""

import errno
import fcntl
import os
import re
import select
import socket
import stat
import statistics
import subprocess
import sys
import threading
import time

import pytest

from conftest import IS_ROOT, TEST_UID, Conversation, Standalone, SyslogCapture, can_unshare

from popper import log as popper_log

LOCAL1, WARNING, ERR = 17, 4, 3
DROPPED = re.compile(r"popper\[(\d+)\]: (\d+) log messages? (?:was|were) dropped while "
                     r"syslog was not reading$")

needs_namespace = pytest.mark.skipif(not can_unshare(),
                                     reason="replacing /dev/log needs root (a mount namespace)")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="files of another uid need root")


# --- syslog daemons that misbehave ----------------------------------------------------

def fill(sock_path: str) -> socket.socket:
    """Queue datagrams on the socket at sock_path until one more would
    block: its reader has stopped.  The sender is returned (closing it
    would free the queue)."""
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.connect(sock_path)
    for n in range(100000):
        try:
            sender.send(b"<13>Jan  1 00:00:00 filler: %d" % n, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return sender
    raise AssertionError("the queue of %s never filled" % sock_path)


class StalledSyslog(SyslogCapture):
    """A /dev/log whose reader has stopped: its queue is full."""

    def __init__(self, base):
        base.mkdir()
        super().__init__(base)
        self.sender = fill(self.path)

    def drain(self) -> int:
        """The reader reads again: empty the queue; how many datagrams it held
        that were not our own filler."""
        theirs = 0
        self.sock.setblocking(False)
        try:
            while True:
                theirs += b" filler: " not in self.sock.recv(65536)
        except BlockingIOError:
            pass
        self.sock.settimeout(0.2)
        return theirs

    def close(self):
        self.sender.close()
        super().close()


class ReadingSyslog(SyslogCapture):
    """A /dev/log that is read all the time (a healthy daemon)."""

    def __init__(self, base):
        base.mkdir()
        super().__init__(base)
        self.lines = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                self.lines.append(self.sock.recv(65536))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.running = False
        self.thread.join()
        super().close()


def start(command: list, greeting_within: float = 10) -> Conversation:
    """popper on a socketpair; failing (not hanging) if no greeting comes."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(command, stdin=theirs, stdout=theirs)
    theirs.close()
    if not select.select([ours], [], [], greeting_within)[0]:
        process.kill()
        process.wait()
        ours.close()
        pytest.fail("no greeting within %g s: popper is stuck (in syslog?)" % greeting_within)
    return Conversation(ours, process)


def login_seconds(capture, mailhost) -> float:
    """A USER/PASS login with -d (a debug line per command), over the wire."""
    conv = start(capture.wrap(mailhost.command("-d")))
    try:
        began = time.monotonic()
        reply = conv.login()
        took = time.monotonic() - began
        assert reply.startswith(b"+OK"), reply
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        conv.close()
    return took


@pytest.fixture
def stalled(mailhost):
    if not can_unshare():
        pytest.skip("replacing /dev/log needs root (a mount namespace)")
    capture = StalledSyslog(mailhost.base / "stalled")
    yield capture
    capture.close()


@pytest.fixture
def reading(mailhost):
    if not can_unshare():
        pytest.skip("replacing /dev/log needs root (a mount namespace)")
    capture = ReadingSyslog(mailhost.base / "reading")
    yield capture
    capture.close()


@pytest.mark.root
@pytest.mark.clients
def test_a_stalled_syslog_does_not_delay_a_login(mailhost, stalled, reading):
    healthy = [login_seconds(reading, mailhost) for _ in range(3)]
    stuck = [login_seconds(stalled, mailhost) for _ in range(3)]
    print("login with -d: reading syslog %s s, stalled syslog %s s"
          % (["%.4f" % t for t in healthy], ["%.4f" % t for t in stuck]))
    assert any(b'Received: "PASS xxxxxxxxx"' in line for line in reading.lines)
    assert statistics.median(stuck) < statistics.median(healthy) + 0.1, (healthy, stuck)
    assert stalled.drain() == 0         # nothing of popper's was queued: all of it dropped


@pytest.mark.root
@pytest.mark.clients
def test_the_dropped_lines_are_counted_once_syslog_reads_again(mailhost, stalled):
    conv = start(stalled.wrap(mailhost.command("-d")))
    assert conv.login().startswith(b"+OK")
    assert stalled.drain() == 0
    assert conv.cmd("STAT").startswith(b"+OK")
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()
    records = stalled.collect()
    texts = [t for _, _, t in records]
    notes = [(f, p, DROPPED.search(t)) for f, p, t in records if DROPPED.search(t)]
    assert len(notes) == 1, texts
    facility, priority, match = notes[0]
    assert (facility, priority, int(match.group(1))) == (LOCAL1, WARNING, conv.process.pid)
    # at least the greeting's "Servicing request", USER's and PASS's debug lines
    assert int(match.group(2)) >= 3
    assert DROPPED.search(texts[0]) and texts[1].endswith('Received: "STAT"'), texts


@pytest.mark.root
@pytest.mark.clients
def test_refusing_to_start_does_not_wait_for_a_stalled_syslog(mailhost, stalled):
    began = time.monotonic()
    try:
        result = subprocess.run(stalled.wrap(mailhost.command("-k")), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("popper hung on syslog while refusing to start")
    assert result.returncode == 1
    assert "Kerberos support is not built" in result.stderr
    assert time.monotonic() - began < 5


# --- the client itself, on a socket of the test's own ---------------------------------

@pytest.fixture
def dgram(tmp_path):
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_the_client_never_blocks_and_counts_what_it_dropped(dgram):
    path, sock = dgram
    sender = fill(path)
    client = popper_log.SyslogSocket("popper", popper_log.FACILITIES["local1"], path)
    began = time.monotonic()
    for n in range(2000):
        client.send(popper_log.LOG_DEBUG, "line %d" % n)
    assert time.monotonic() - began < 0.5
    assert client.dropped == 2000
    sender.close()
    sock.setblocking(False)             # the reader reads again
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass
    sock.settimeout(2)
    client.send(popper_log.LOG_INFO, "back")
    note, line = sock.recv(65536).decode(), sock.recv(65536).decode()
    assert re.fullmatch(r"<%d>\w{3} [ \d]\d \d\d:\d\d:\d\d popper\[%d\]: 2000 log messages were "
                        r"dropped while syslog was not reading" % (8 * LOCAL1 + WARNING,
                                                                   os.getpid()), note)
    assert line.endswith("popper[%d]: back" % os.getpid()) and line.startswith("<142>")
    assert client.dropped == 0
    client.close()


def test_the_client_reconnects_when_the_daemon_restarts(dgram, tmp_path):
    path, sock = dgram
    client = popper_log.SyslogSocket("popper", popper_log.FACILITIES["local1"], path)
    client.send(popper_log.LOG_INFO, "one")
    assert sock.recv(65536).endswith(b": one")
    sock.close()
    os.unlink(path)
    client.send(popper_log.LOG_INFO, "lost")        # nobody there: dropped, no error
    restarted = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    restarted.bind(path)
    restarted.settimeout(2)
    client.send(popper_log.LOG_INFO, "two")
    assert DROPPED.search(restarted.recv(65536).decode())
    assert restarted.recv(65536).endswith(b": two")
    restarted.close()
    client.close()


def test_the_pid_is_the_senders_and_the_socket_is_close_on_exec(dgram):
    path, sock = dgram
    client = popper_log.SyslogSocket("popper", popper_log.FACILITIES["local1"], path)
    fd = client.fileno()
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    child = os.fork()
    if child == 0:
        client.send(popper_log.LOG_INFO, "from the child")
        os._exit(0)
    os.waitpid(child, 0)
    client.send(popper_log.LOG_INFO, "from the parent")
    lines = {sock.recv(65536).decode() for _ in range(2)}
    assert lines == {l for l in lines if l.startswith("<142>")}
    assert {re.search(r"popper\[(\d+)\]: (.*)", l).groups() for l in lines} == {
        (str(child), "from the child"), (str(os.getpid()), "from the parent")}
    client.close()


def test_a_stream_socket_gets_glibcs_nul_terminated_records(tmp_path):
    path = str(tmp_path / "log")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    client = popper_log.SyslogSocket("popper", popper_log.FACILITIES["mail"], path)
    conn, _ = listener.accept()
    conn.settimeout(2)
    client.send(popper_log.LOG_ERR, "first")
    client.send(popper_log.LOG_NOTICE, "second")
    data = b""
    while data.count(b"\0") < 2:
        data += conn.recv(65536)
    first, second, rest = data.split(b"\0")
    assert rest == b""
    assert first.startswith(b"<19>") and first.endswith(b"popper[%d]: first" % os.getpid())
    assert second.startswith(b"<21>") and second.endswith(b": second")
    client.close()
    conn.close()
    listener.close()


def test_a_stalled_stream_socket_keeps_whole_records(tmp_path):
    """A stream the daemon stopped reading takes part of a record: the rest
    goes first once it reads again, so no record is cut or interleaved."""
    path = str(tmp_path / "log")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    client = popper_log.SyslogSocket("popper", popper_log.FACILITIES["local1"], path)
    conn, _ = listener.accept()
    began = time.monotonic()
    for n in range(100):
        client.send(popper_log.LOG_INFO, "%06d %s" % (n, "y" * 150000))
    assert time.monotonic() - began < 2
    assert client.dropped > 0 and client.pending        # a record half sent, then drops
    conn.settimeout(0.3)
    data = b""
    try:
        while True:                     # the daemon reads again
            data += conn.recv(1 << 20)
    except socket.timeout:
        pass
    client.send(popper_log.LOG_INFO, "last")
    conn.settimeout(5)
    while not data.endswith(b": last\0"):
        more = conn.recv(1 << 20)
        assert more, data[-100:]
        data += more
    assert client.dropped == 0 and not client.pending
    records = data.split(b"\0")
    assert records[-1] == b"" and records[-2].endswith(b": last")
    record = re.compile(rb"<14[02]>\w{3} [ \d]\d \d\d:\d\d:\d\d popper\[%d\]: (\d{6} y{150000}|last|"
                        rb"\d+ log messages were dropped while syslog was not reading)"
                        % os.getpid())
    assert all(record.fullmatch(r) for r in records[:-1]), [r[:60] for r in records[:-1]
                                                            if not record.fullmatch(r)][:3]
    assert any(b"dropped while" in r for r in records)
    client.close()
    conn.close()
    listener.close()


@pytest.mark.parametrize("when", [
    (2024, 12, 2, 0, 5, 2), (2025, 1, 31, 23, 59, 59), (2023, 7, 9, 12, 0, 0),
    (2024, 2, 29, 1, 2, 3), (2020, 10, 10, 10, 10, 10)])
def test_the_timestamp_is_glibcs(when):
    moment = time.mktime(when + (0, 0, -1))
    # glibc: strftime "%h %e %T " in the C locale (Python's LC_TIME is C)
    assert popper_log.timestamp(moment) == time.strftime("%b %e %H:%M:%S",
                                                         time.localtime(moment))


GLIBC_AND_OURS = r"""
import sys, syslog, time
from popper import log
syslog.openlog("popper", syslog.LOG_PID, syslog.LOG_LOCAL1)
ours = log.Log("popper", "local1")
for message in sys.argv[1:]:
    if time.time() % 1 > 0.7:                   # both in the same second
        time.sleep(0.35)
    syslog.syslog(syslog.LOG_NOTICE, message)
    ours.notice(message)
    syslog.syslog(syslog.LOG_ERR, message)
    ours.error(message)
    # A pause for the reader: a burst would fill the socket's queue (ten
    # datagrams), where glibc waits and ours drops -- by design, not here.
    time.sleep(0.05)
"""

MESSAGES = ["plain", '(null) at 127.0.0.1 (127.0.0.1): -ERR Unknown command: "bogus".',
            "percent %s %n %% signs", "utf-8: h\u00e9llo \u2713", "x" * 3000, ""]


@pytest.mark.root
@pytest.mark.clients
def test_the_lines_are_byte_for_byte_glibcs(mailhost, reading):
    result = subprocess.run(reading.wrap([sys.executable, "-c", GLIBC_AND_OURS] + MESSAGES),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=30)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 5
    while len(reading.lines) < 4 * len(MESSAGES) and time.monotonic() < deadline:
        time.sleep(0.05)
    data = reading.lines
    assert len(data) == 4 * len(MESSAGES)
    for i in range(0, len(data), 2):
        assert data[i] == data[i + 1]
    assert data[0].startswith(b"<141>") and data[0].endswith(b"]: plain")
    assert data[2].startswith(b"<139>") and data[-1].endswith(b"]: ")


STREAM_SCRIPT = r"""
import sys, syslog, time
from popper import log
if time.time() % 1 > 0.7:
    time.sleep(0.35)
syslog.openlog("popper", syslog.LOG_PID, syslog.LOG_LOCAL1)
syslog.syslog(syslog.LOG_NOTICE, "over a stream")
log.Log("popper", "local1").notice("over a stream")
"""


@pytest.mark.root
@pytest.mark.clients
@needs_namespace
def test_over_a_stream_socket_too(mailhost):
    class Stream:
        path = str(mailhost.base / "stream.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(Stream.path)
    os.chmod(Stream.path, 0o666)
    listener.listen(4)
    listener.settimeout(10)
    process = subprocess.Popen(SyslogCapture.wrap(Stream, [sys.executable, "-c", STREAM_SCRIPT]))
    received = []
    for _ in range(2):                  # glibc's connection, then ours
        conn, _ = listener.accept()
        conn.settimeout(10)
        data = b""
        while not data.endswith(b"\0"):
            more = conn.recv(65536)
            assert more, data
            data += more
        received.append(data)
        conn.close()
    assert process.wait(30) == 0
    listener.close()
    assert received[0] == received[1] and received[0].endswith(b"]: over a stream\0")


# --- the trace file -------------------------------------------------------------------

@pytest.fixture
def sticky(mailhost):
    """A 1777 directory (as /tmp), and a root file an attacker would aim at:
    a copy of /etc/hostname (never a real system file)."""
    d = mailhost.base / "tmp"
    d.mkdir()
    os.chmod(d, 0o1777)
    target = mailhost.base / "secret"
    target.write_bytes(b"mailhost.example\n")
    os.chmod(target, 0o644)
    return d, target


def fingerprint(path) -> tuple:
    st = os.lstat(path)
    content = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_mtime_ns, content


def other_users(path, mode=0o600, content=b""):
    path.write_bytes(content)
    os.chown(path, TEST_UID, TEST_UID)
    os.chmod(path, mode)


def hard_link(trace, target):
    # As uid 4242 this needs fs.protected_hardlinks = 0; the entry left is the
    # same when root makes it: a second name of root's file.
    os.link(target, trace)


HOSTILE = {
    "hard link to a root file": (hard_link, r"a regular file, owner uid 0 \(root\), "
                                            r"mode 0644, 2 links"),
    "symbolic link": (lambda trace, target: (os.symlink(target, trace),
                                             os.lchown(trace, TEST_UID, TEST_UID)),
                      r"a symbolic link, owner uid %d\b.*1 link\b" % TEST_UID),
    "FIFO": (lambda trace, target: (os.mkfifo(trace), os.chown(trace, TEST_UID, TEST_UID)),
             r"a FIFO, owner uid %d\b.*mode 0[0-7]{3}, 1 link\b" % TEST_UID),
    "group-writable": (lambda trace, target: (trace.write_bytes(b""), os.chmod(trace, 0o620)),
                       r"a regular file, owner uid 0 \(root\), mode 0620, 1 link\b"),
    "world-writable": (lambda trace, target: (trace.write_bytes(b""), os.chmod(trace, 0o602)),
                       r"a regular file, owner uid 0 \(root\), mode 0602, 1 link\b"),
    "another user's": (lambda trace, target: other_users(trace),
                       r"a regular file, owner uid %d\b.*mode 0600, 1 link\b" % TEST_UID),
    "hard link to another user's file": (
        lambda trace, target: (other_users(target, 0o644, b"mailhost.example\n"),
                               os.link(target, trace)),
        r"owner uid %d\b.*2 links\b" % TEST_UID),
}


@pytest.mark.root
@pytest.mark.clients
@needs_root
@needs_namespace
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_trace_file_is_refused(mailhost, syslog, sticky, kind):
    d, target = sticky
    trace = d / "popper.trace"
    make, described = HOSTILE[kind]
    make(trace, target)
    before = fingerprint(target), fingerprint(trace)
    try:
        result = subprocess.run(syslog.wrap(mailhost.command("-t", str(trace))),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True,
                                timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("popper hung opening the trace file")
    assert (fingerprint(target), fingerprint(trace)) == before
    assert result.returncode == 1 and result.stdout == ""
    assert str(trace) in result.stderr and re.search(described, result.stderr), result.stderr
    logged = [t for f, p, t in syslog.collect() if p == ERR and f == LOCAL1]
    assert any(str(trace) in t and re.search(described, t) for t in logged), logged


@pytest.mark.root
@pytest.mark.clients
@needs_root
def test_a_good_trace_file_is_appended_to_and_a_missing_one_made_0600(mailhost, inetd, sticky):
    d, _ = sticky
    existing, missing = d / "existing.trace", d / "missing.trace"
    existing.write_text("an older line\n")
    os.chmod(existing, 0o600)
    for trace in (existing, missing):
        conv = inetd("-t", str(trace))
        assert conv.login().startswith(b"+OK")
        conv.cmd("QUIT")
        conv.close()
        st = os.stat(trace)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_nlink) == (0o600, 0, 1)
        assert 'Received: "PASS xxxxxxxxx"' in trace.read_text()
    assert existing.read_text().startswith("an older line\n")


@pytest.mark.root
@pytest.mark.clients
@needs_root
@needs_namespace
def test_a_trace_file_swapped_before_sighup_is_refused_and_the_server_runs_on(
        mailhost, syslog, sticky):
    d, target = sticky
    trace = d / "popper.trace"
    server = Standalone(syslog.wrap(mailhost.command("-t", str(trace))))
    try:
        os.unlink(trace)
        hard_link(trace, target)
        before = fingerprint(target)
        server.process.send_signal(1)
        deadline = time.monotonic() + 10
        while not any("2 links" in t for t in syslog.texts(0.2)):
            assert time.monotonic() < deadline, syslog.records
        conv = server.connect()
        assert conv.login().startswith(b"+OK")
        conv.cmd("QUIT")
        conv.close()
        assert server.process.poll() is None
        assert fingerprint(target) == before
    finally:
        assert server.stop() == 0
    assert any(str(trace) in t and "2 links" in t for _, _, t in syslog.collect())


def test_the_trace_file_opener_refuses_without_root(tmp_path):
    """The checks themselves, as whoever runs the tests."""
    good = tmp_path / "good"
    popper_log.open_trace(str(good)).close()
    assert stat.S_IMODE(os.stat(good).st_mode) == 0o600
    os.link(good, tmp_path / "second")
    with pytest.raises(popper_log.UnsafeTraceFile, match="2 links"):
        popper_log.open_trace(str(good))
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(popper_log.UnsafeTraceFile, match="a symbolic link"):
        popper_log.open_trace(str(tmp_path / "dangling"))
    assert not (tmp_path / "nowhere").exists()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(popper_log.UnsafeTraceFile, match="a FIFO"):
        popper_log.open_trace(str(tmp_path / "fifo"))
    with pytest.raises(OSError) as exc:
        popper_log.open_trace(str(tmp_path / "no" / "such"))
    assert exc.value.errno == errno.ENOENT
