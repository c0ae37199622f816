"""Shared test machinery: a mail host in a temporary directory, and popper
started on it in inetd mode (over a socketpair or a TCP "inetd") or in
standalone mode.

The tests import the installed popper (tox runs them from outside the
checkout); the corpus generator is loaded from bench/corpus.py by path so
that the checkout's popper/ never shadows the installed one.
"""

import importlib.util
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("popper_corpus", ROOT / "bench" / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

from popper.auth import cryptpw  # noqa: E402
from popper.auth import Account, AuthError  # noqa: E402
from popper.auth.gatekeeper import Gatekeeper  # noqa: E402
from popper.log import PRIORITIES  # noqa: E402
from popper.maildrop import open_maildrop as open_drop  # noqa: E402
from popper.protocol import replies as R  # noqa: E402
from popper.protocol.session import Client, Session  # noqa: E402
from popper.settings import Settings  # noqa: E402

IS_ROOT = os.geteuid() == 0
# As root, test users get this uid/gid (no passwd entry needed) and popper
# must drop to it; otherwise they are the user running the tests.
TEST_UID = 4242 if IS_ROOT else os.getuid()
TEST_GID = 4242 if IS_ROOT else os.getgid()

USERS = {"alice": "secret", "bob": "hunter2", "carol": "pass word"}


def hashed(password: str) -> str:
    return cryptpw.crypt(password.encode(), b"$6$testsalt$").decode()


def process_ids(pid: int) -> dict:
    """A process's Uid and Gid (real, effective, saved, filesystem) and
    Groups, as the kernel sees them."""
    status = pathlib.Path("/proc/%d/status" % pid).read_text()
    return {line.split(":")[0]: line.split()[1:] for line in status.splitlines()
            if line.startswith(("Uid:", "Gid:", "Groups:"))}


class MailHost:
    """A spool directory, a user database and a config file in a temporary
    directory that the test uid can reach."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.spool_dir = base / "spool"
        self.spool_dir.mkdir()
        os.chmod(base, 0o755)
        os.chmod(self.spool_dir, 0o1777)
        self.userdb = base / "users"
        self.userdb.write_text("".join("%s:%s:%d:%d::%s:/bin/sh\n"
                                       % (name, hashed(pw), TEST_UID, TEST_GID, base)
                                       for name, pw in USERS.items()))
        self.config = base / "popper.conf"
        self.write_config()

    def write_config(self, *extra: str, userdb: bool = True) -> pathlib.Path:
        """The config file; userdb=False leaves logins to the Unix databases."""
        lines = (["set userdb = %s" % self.userdb] if userdb else []) + [
            "set spool-dir = %s" % self.spool_dir,
            "set auth-fail-delay = 0",
            "set reverse-lookup"] + list(extra)      # Qpopper's sense: no lookups, as -R
        self.config.write_text("\n".join(lines) + "\n")
        return self.config

    def spool(self, user: str = "alice") -> pathlib.Path:
        return self.spool_dir / user

    def temp_drop(self, user: str = "alice") -> pathlib.Path:
        return self.spool_dir / (".%s.pop" % user)

    def deliver(self, data: bytes, user: str = "alice") -> None:
        """Write a spool as the user's MTA would have left it."""
        path = self.spool(user)
        with open(path, "ab") as f:
            f.write(data)
        os.chown(path, TEST_UID, TEST_GID)
        os.chmod(path, 0o600)

    def command(self, *args: str) -> list:
        return [sys.executable, "-m", "popper", "-f", str(self.config), "-T", "60", *args]


@pytest.fixture
def mailhost():
    base = pathlib.Path(tempfile.mkdtemp(prefix="popper-test-", dir="/tmp"))
    try:
        yield MailHost(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- talking to popper ---------------------------------------------------------

class Conversation:
    """A raw POP3 conversation over a connected socket."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen = None,
                 greet: bool = True):
        """greet=False: the caller reads the greeting (conv.greet()), so
        that a server gone before it still leaves its process here."""
        self.sock, self.process = sock, process
        self.sock.settimeout(30)
        self.buf = b""
        self.greeting = self.line() if greet else None

    def greet(self) -> bytes:
        self.greeting = self.line()
        return self.greeting

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed; had %r" % self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline(self) -> list:
        """The lines of a multi-line body up to '.', dot-unstuffed."""
        lines = []
        while True:
            line = self.line()
            if line == b".":
                return lines
            lines.append(line[1:] if line.startswith(b".") else line)

    def cmd(self, line: str) -> bytes:
        self.send(line.encode("latin-1") + b"\r\n")
        return self.line()

    def login(self, user: str = "alice", password: str = None) -> bytes:
        assert self.cmd("USER " + user).startswith(b"+OK")
        return self.cmd("PASS " + (password if password is not None else USERS[user]))

    def closed(self) -> bool:
        """True once popper closed its end (after QUIT)."""
        try:
            return self.sock.recv(1) == b""
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self) -> None:
        self.sock.close()
        if self.process:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_inetd(command: list, greet: bool = True, **popen) -> Conversation:
    """popper in inetd mode on one end of a socketpair."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(command, stdin=theirs, stdout=theirs, **popen)
    theirs.close()
    return Conversation(ours, process, greet)


def run_inetd(command: list, stderr: str = "socket"):
    """command with a socketpair as fd 0 and 1, and as fd 2 too ("socket")
    or a pipe ("pipe"): (what the client received until EOF, stderr's
    text, exit status)."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        process = subprocess.Popen(command, stdin=theirs, stdout=theirs,
                                   stderr=theirs if stderr == "socket" else subprocess.PIPE)
        theirs.close()
        ours.settimeout(30)
        received = b""
        while True:
            chunk = ours.recv(4096)
            if not chunk:
                break
            received += chunk
        text = process.stderr.read().decode() if process.stderr else ""
        return received, text, process.wait(30)


@pytest.fixture
def inetd(mailhost):
    """inetd(*args) -> a Conversation with a fresh popper on a socketpair."""
    conversations = []

    def start(*args, **popen):
        conv = start_inetd(mailhost.command(*args), **popen)
        conversations.append(conv)
        return conv
    yield start
    for conv in conversations:
        conv.close()


class TcpInetd:
    """A tiny inetd: each connection to 127.0.0.1:port runs a new popper
    with the connection as its fd 0 and 1."""

    def __init__(self, command: list, env: dict = None, cwd: str = None):
        self.command, self.env, self.cwd = command, env, cwd
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.processes = []
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.processes.append(subprocess.Popen(self.command, stdin=conn, stdout=conn,
                                                   env=self.env, cwd=self.cwd))
            conn.close()

    def connect(self) -> Conversation:
        return Conversation(socket.create_connection(("127.0.0.1", self.port)))

    def close(self):
        self.running = False
        # close() alone leaves the thread in accept() (Linux wakes it for a
        # shutdown), and a thread left there once took a connection meant
        # for a later listener: stopped and waited for.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(10)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


class Standalone:
    """popper listening on 127.0.0.1:port by itself; stopped by its pid."""

    def __init__(self, command: list):
        self.port = free_port()
        self.process = subprocess.Popen(command + ["127.0.0.1:%d" % self.port],
                                        stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process)

    def connect(self) -> Conversation:
        return Conversation(socket.create_connection(("127.0.0.1", self.port)))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("popper exited: %s" % process.stderr.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("popper did not listen on port %d" % port)


@pytest.fixture
def tcp_inetd(mailhost):
    servers = []

    def start(*args):
        server = TcpInetd(mailhost.command(*args))
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


@pytest.fixture
def standalone(mailhost):
    servers = []

    def start(*args):
        server = Standalone(mailhost.command(*args))
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()


# --- syslog ---------------------------------------------------------------------------

def with_dev_log(socket_path: str, command: list) -> list:
    """command, run in a mount namespace of its own whose /dev holds
    socket_path as /dev/log (and the real null, zero, random devices)."""
    script = ('d=$(mktemp -d) && chmod 755 "$d" && for f in null zero full random urandom tty; do '
              'touch "$d/$f" && mount --bind "/dev/$f" "$d/$f" || exit 1; done && '
              'ln -s /proc/self/fd "$d/fd" && touch "$d/log" && '
              'mount --bind "$0" "$d/log" && mount --rbind "$d" /dev && exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
            socket_path] + command


class SyslogCapture:
    """Receives what popper sends to /dev/log.

    popper runs in its own mount namespace whose /dev holds our socket as
    /dev/log (and the real null, zero, random devices), so the real
    glibc syslog path is exercised and the host's /dev is not touched."""

    def __init__(self, base: pathlib.Path):
        self.path = str(base / "log.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.settimeout(0.2)
        self.records = []

    def wrap(self, command: list) -> list:
        return with_dev_log(self.path, command)

    def collect(self, seconds: float = 0.5) -> list:
        """Read what arrived; (facility, priority, text) tuples."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                continue
            pri, _, rest = data[1:].partition(">")
            self.records.append((int(pri) // 8, int(pri) % 8, rest))
        return self.records

    def texts(self, seconds: float = 0.5) -> list:
        return [text for _, _, text in self.collect(seconds)]

    def close(self):
        self.sock.close()


def can_unshare() -> bool:
    if not IS_ROOT or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "true"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).returncode == 0


@pytest.fixture
def syslog(mailhost):
    if not can_unshare():
        pytest.skip("capturing syslog needs root (a private mount namespace)")
    capture = SyslogCapture(mailhost.base)
    yield capture
    capture.close()


# --- a session in-process (sans-I/O), on a real maildrop -----------------------

class RecordingLog:
    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        if level in PRIORITIES:
            return lambda message: self.lines.append((level, message))
        raise AttributeError(level)

    def reopen_syslog(self):
        pass

    def texts(self, level=None):
        return [m for lv, m in self.lines if level in (None, lv)]


class StubAuth:
    """Knows USERS; fails like the real ones do."""

    def authenticate(self, user, password, client):
        if USERS.get(user) == password.decode("latin-1"):
            return Account(user, None, None)
        raise AuthError(R.BAD_PASSWORD, log="test", user=user)


@pytest.fixture
def spool(tmp_path):
    d = tmp_path / "spool"
    d.mkdir()
    return d


@pytest.fixture
def make_session(spool):
    made = []

    def make(settings=None, mail: bytes = None, auth=None, user="alice", client=None):
        s = settings or Settings()
        s.spool_dir = str(spool)
        if mail is not None:
            (spool / user).write_bytes(mail)
        log = RecordingLog()

        def open_maildrop(account):
            return open_drop(s, account.name, log)
        session = Session(s, Gatekeeper(s, auth or StubAuth(), log), open_maildrop, log,
                          client or Client("client.example", "192.0.2.9"), "mail.example")
        made.append(session)
        return session, log
    yield make
    for session in made:
        session.close()




# --- TLS ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    """The test certificate authority (tests/tlsca.py), one per test run."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    import tlsca
    return tlsca.TestCA(tmp_path_factory.mktemp("tlsca"))
