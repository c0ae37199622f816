"""Running one session over one connection: the loop every transport shares.

It reads, feeds the session, and writes what comes back: all the replies
produced by one read go out in one write (a long reply such as RETR in
writes of FLUSH_AT bytes), and an AfterSend runs once the bytes before it
have been written.  SIGHUP, SIGTERM or a dead peer end the session as a
hangup, but only while the loop waits for the peer: never in the middle of
a maildrop update.  A signal that comes while popper waits for a command
gets Qpopper's `-ERR POP hangup from <server>` and sign-off (pop_exit);
one in the middle of a reply ends it without them (they would land in it).

Every wait has a deadline, and none of them restarts at each byte:

- -T (`timeout`) bounds the whole wait for one command line, from the
  moment popper waits for it (its previous reply written) to the line's
  LF.  A client that dribbles a byte now and then is timed out as one that
  sends nothing; pipelined lines already read never wait.  On expiry: the
  timeout's -ERR and sign-off, as Qpopper.
- `set write-timeout` (default: the same as -T) bounds each write: the
  client must take each FLUSH_AT bytes of a reply within it.  On expiry
  the session ends as on a timeout, and nothing more is written (the client
  does not read; a reply cut short must not get an -ERR in its middle).
- `set login-timeout` (default 600 s) bounds the whole time before login
  (the AUTHORIZATION states), reads and writes alike.

The fds are never switched to non-blocking mode (under inetd fd 0 and 1 are
one open file, shared with whoever else holds it): a socket is written
with MSG_DONTWAIT, and waited for and read with one blocking recv() bounded
by SO_RCVTIMEO (a poll() and a recv() each command otherwise); anything
else (a pipe) is read and written after poll() said it is ready, at most
PIPE_BUF bytes at a time.  Should somebody else have set O_NONBLOCK on the
file, EAGAIN is taken as "not ready yet" (and the reads go back to poll()).
"""

import os
import select
import _signal     # not socket.py nor signal.py (docs/architecture.md, "Start-up")
import _socket
import sys
import time

from popper.protocol import (AUTHORIZATION, AUTHORIZATION_PASS, FLUSH, HANDED_OFF, HANG_UP,
                             START_TLS, AfterSend, Pause)
from popper.settings import TLS_ALTERNATE_PORT
from popper.transport.probes import probe_of

FLUSH_AT = 256 * 1024
READ_SIZE = 64 * 1024
PIPE_BUF = getattr(select, "PIPE_BUF", 512)
DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)
RCVTIMEO = getattr(_socket, "SO_RCVTIMEO", None) if sys.platform.startswith("linux") else None

LOGGED_OUT = (AUTHORIZATION, AUTHORIZATION_PASS)     # the states login-timeout bounds


class Hangup(Exception):
    """SIGHUP/SIGTERM arrived, or the peer went away; `reply`: while popper
    waited for a command, so the client may still be told."""

    reply = False


class _NoTLS(Exception):
    """The TLS handshake failed; args[0] says why."""


class _Expired(Exception):
    """A deadline passed: Session.end("timeout", seconds, during); `reply`
    says whether the -ERR and sign-off may still be written."""

    def __init__(self, seconds, during: str, reply: bool):
        super().__init__(during)
        self.seconds, self.during, self.reply = seconds, during, reply


class _Signals:
    """Turns SIGHUP/SIGTERM into Hangup, but only inside waiting()."""

    def __init__(self):
        self.pending = False
        self.waiting = False

    def handler(self, signum, frame):
        self.pending = True
        if self.waiting:
            raise Hangup()

    def install(self):
        for sig in (_signal.SIGHUP, _signal.SIGTERM):
            _signal.signal(sig, self.handler)

    def check(self):
        if self.pending:
            raise Hangup()


POLLIN = getattr(select, "POLLIN", 1)
POLLOUT = getattr(select, "POLLOUT", 4)


def _ready(fd: int, events: int, timeout) -> bool:
    """Whether fd is ready (or in error, or hung up) within timeout
    seconds (None: no limit)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, events)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
    lists = ([fd], [], [fd]) if events == POLLIN else ([], [fd], [fd])
    return any(select.select(*lists, timeout))


class Connection:
    """A byte stream to the client: a socket, or a pair of fds (inetd gives
    fd 0 and 1; they are the same socket unless run from a pipe).  No
    method ever blocks except the wait_* ones, which take a timeout."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd
        self._sockets = {}      # fd -> a socket object on a dup of it, None if not a socket
        self._pollers = {}      # (fd, events) -> a select.poll() with fd registered
        self._blocking_reads = RCVTIMEO is not None     # recv_within's one recv() a wait
        self._rcvtimeo = None   # the SO_RCVTIMEO recv_within last set (0: none; None: unknown)

    def _ready(self, fd: int, events: int, timeout) -> bool:
        """_ready() with one poll object per (fd, events), made once: not
        a new one and a register() at every command."""
        poller = self._pollers.get((fd, events))
        if poller is None:
            if not hasattr(select, "poll"):
                return _ready(fd, events, timeout)
            poller = self._pollers[fd, events] = select.poll()
            poller.register(fd, events)
        return bool(poller.poll(None if timeout is None
                                else max(0, int(timeout * 1000 + 0.999))))

    def _socket(self, fd: int):
        if fd not in self._sockets:
            sock = None
            if DONTWAIT:
                try:
                    dup = os.dup(fd)
                except OSError:
                    dup = None
                if dup is not None:
                    try:
                        sock = probe_of(dup)
                    except OSError:
                        os.close(dup)
            self._sockets[fd] = sock
        return self._sockets[fd]

    def hang_up(self) -> None:
        """End the stream to the client now (a socket's FIN, whatever else
        holds it: inetd's fd 0 and 1, the root part); never raises."""
        sock = self._socket(self.write_fd)
        if sock is not None:
            try:
                sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass

    def release(self) -> None:
        """Close popper's own duplicates of the fds (the fds stay open)."""
        for sock in self._sockets.values():
            if sock is not None:
                sock.close()
        self._sockets.clear()

    def wait_readable(self, timeout) -> bool:
        return self._ready(self.read_fd, POLLIN, timeout)

    def wait_writable(self, timeout) -> bool:
        return self._ready(self.write_fd, POLLOUT, timeout)

    def recv(self) -> bytes:
        """What the client sent (b"" at its end of file); BlockingIOError
        if nothing is there yet."""
        sock = self._socket(self.read_fd)
        if sock is not None:
            return sock.recv(READ_SIZE, DONTWAIT)
        if not self._ready(self.read_fd, POLLIN, 0):
            raise BlockingIOError()
        return os.read(self.read_fd, READ_SIZE)

    def recv_within(self, timeout):
        """What the client sent (b"" at its end of file), waiting for it at
        most timeout seconds (None: no limit); None if nothing came (in
        time, or yet: the caller reads its clock).  A socket's wait and read
        are one blocking recv(), bounded by SO_RCVTIMEO: set only when the
        bound must change (a bound up to a second shorter than asked is
        kept: the caller waits again for the rest)."""
        sock = self._socket(self.read_fd) if self._blocking_reads else None
        if sock is None:
            if not self.wait_readable(timeout):
                return None
            try:
                return self.recv()
            except (BlockingIOError, InterruptedError):
                return None
        bound = self._rcvtimeo
        if timeout is None:
            keep = bound == 0
        else:
            keep = bound is not None and bound != 0 and timeout - 1 < bound <= timeout
        if not keep:
            bound = 0 if timeout is None else timeout
            seconds = int(bound)
            micro = int((bound - seconds) * 1e6)
            if bound and not seconds and not micro:
                micro = 1               # (0 and 0 is no bound at all)
            try:
                import struct
                sock.setsockopt(_socket.SOL_SOCKET, RCVTIMEO, struct.pack("ll", seconds, micro))
            except OSError:             # (not the kernel's struct timeval): poll() then
                self._blocking_reads = False
                return self.recv_within(timeout)
            self._rcvtimeo = bound
        if bound:
            started = time.monotonic()
        try:
            return sock.recv(READ_SIZE)
        except BlockingIOError:
            # The bound ran out -- or the file is O_NONBLOCK (somebody
            # else's doing) and recv() did not wait: poll() from now on.
            if not bound or time.monotonic() - started < bound / 2:
                self._blocking_reads = False
            return None
        except InterruptedError:
            return None

    def send_some(self, data) -> int:
        """Write what the client takes now, without waiting: how many bytes
        (0: none)."""
        try:
            sock = self._socket(self.write_fd)
            if sock is not None:
                return sock.send(data, DONTWAIT)
            if not self._ready(self.write_fd, POLLOUT, 0):
                return 0
            return os.write(self.write_fd, data[:PIPE_BUF])
        except (BlockingIOError, InterruptedError):
            return 0

    def send(self, data, timeout=None) -> None:
        """Write all of data; socket.timeout if the client takes nothing
        for timeout seconds (None: no limit)."""
        view = memoryview(data)
        while view:
            n = self.send_some(view)
            if n:
                view = view[n:]
            elif not self.wait_writable(timeout):
                raise _socket.timeout("write timed out")


class _Writer:
    """Gathers replies into writes of up to FLUSH_AT bytes, and runs each
    AfterSend once everything before it has been written.  A reply that is
    one piece (a RETR'd message with its +OK line) is written as it is,
    not copied."""

    def __init__(self, send):
        self.send = send
        self.pieces = []
        self.size = 0
        self.pending = []

    def add(self, data: bytes) -> None:
        if self.pieces and self.size + len(data) > FLUSH_AT:
            self.flush()
        self.pieces.append(data)
        self.size += len(data)
        if self.size >= FLUSH_AT:
            self.flush()

    def after_send(self, item: AfterSend) -> None:
        if self.pieces:
            self.pending.append(item.callback)
        else:
            item.callback()

    def flush(self) -> None:
        if self.pieces:
            pieces, self.pieces, self.size = self.pieces, [], 0
            self.send(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        callbacks, self.pending = self.pending, []
        for callback in callbacks:
            callback()


def _earliest(*deadlines):
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def run(connection: Connection, session, timeout: int, log, first: list = None,
        pending: bytes = b"", login_by: float = None, tls=None):
    """Serve one session until QUIT, EOF, a timeout or a hangup.

    timeout: -T, the seconds one command line may take (0 or None: no limit).
    first: the outputs (as Session methods return them) to send before
      anything else, instead of session.greeting(); None: the greeting.
    pending: bytes already read from the client, fed to the session before
      anything more is read.
    login_by: the time.monotonic() value by which the session must have left
      the AUTHORIZATION states (CLOCK_MONOTONIC is one clock for every
      process of the host, so a value can be handed to another process);
      None: settings.login_timeout seconds from now (no limit if that is 0).
    The write deadline is session.settings.write_timeout (None: timeout).
    tls: the tls.Credentials STLS and -l 2 use (None: no TLS here).  With
      -l 2 the handshake comes first, then the greeting; STLS's START_TLS
      makes it in the middle.  Either has -T (else login-timeout) and
      login-timeout to finish; a failed one is logged and ends the session,
      nothing more written.

    Returns the connection it ended on: the TLS stream once TLS is up.
    A connection that lacks send_some (a test's scripted one) is written
    with its own blocking send(data)."""
    settings = getattr(session, "settings", None)
    write_timeout = getattr(settings, "write_timeout", None)
    if write_timeout is None:
        write_timeout = timeout
    login_timeout = getattr(settings, "login_timeout", 0) or 0
    if login_by is None and login_timeout:
        login_by = time.monotonic() + login_timeout
    nonblocking = hasattr(connection, "send_some")
    signals = _Signals()
    signals.install()

    def login_deadline():
        return login_by if login_by is not None and session.state in LOGGED_OUT else None

    def write_all(data):
        view = memoryview(data).cast("B")
        pos, total = 0, len(view)
        while pos < total:
            # login-timeout bounds the waits only: a reply the client takes
            # at once is written (read() enforces it before the next command).
            # The piece's clock is read only if it has to wait: a reply the
            # client takes at once (most of them) costs no clock reads.
            started = False
            end = min(pos + FLUSH_AT, total)
            while pos < end:
                n = connection.send_some(view[pos:end])
                if n:
                    pos += n
                    continue
                if not started:
                    started, login = True, login_deadline()
                    piece_by = time.monotonic() + write_timeout if write_timeout else None
                deadline = _earliest(piece_by, login)
                wait = None if deadline is None else deadline - time.monotonic()
                if (wait is not None and wait <= 0) or not connection.wait_writable(wait):
                    if deadline == piece_by:
                        raise _Expired(write_timeout, "nw write", reply=False)
                    raise _Expired(login_timeout, "login", reply=False)

    def send(data):
        signals.waiting = True
        try:
            signals.check()
            if nonblocking:
                write_all(data)
            else:
                connection.send(data)
        except (ConnectionError, _socket.timeout) as exc:
            raise Hangup() from exc
        finally:
            signals.waiting = False

    def start_tls():
        nonlocal connection
        if tls is None:
            raise _NoTLS("TLS is not set up")
        from popper.transport import tls as tls_layer
        limit = timeout or login_timeout or 60
        deadline = _earliest(time.monotonic() + limit, login_deadline())
        try:
            connection = tls_layer.start(connection, tls.context, deadline)
        except tls_layer.HandshakeFailed as exc:
            raise _NoTLS(exc.args[0]) from None
        session.tls_started()
        log.info("TLS: %s with %s (%s)" % (connection.version(), session.client.host,
                                          session.client.ip))

    def emit(outputs):
        writer = _Writer(send)
        for out in outputs:
            if isinstance(out, bytes):
                writer.add(out)
            elif isinstance(out, Pause):
                writer.flush()
                time.sleep(out.seconds)
            elif isinstance(out, AfterSend):
                writer.after_send(out)
            elif out is FLUSH:
                writer.flush()
            elif out is START_TLS:
                writer.flush()
                start_tls()
            elif out is HANG_UP:
                writer.flush()
                if hasattr(connection, "hang_up"):      # (a test's scripted one has none)
                    connection.hang_up()
            else:
                for chunk in out:
                    if isinstance(chunk, AfterSend):
                        writer.after_send(chunk)
                    else:
                        writer.add(chunk)
        writer.flush()

    def read():
        """The client's next bytes (b"" at its end); None if nothing came
        yet; _Expired when a deadline passed."""
        now = time.monotonic()
        login = login_deadline()
        deadline = _earliest(line_by, login)
        signals.waiting = True
        try:
            signals.check()
            wait = None if deadline is None else deadline - now
            if wait is None or wait > 0:
                recv_within = getattr(connection, "recv_within", None)   # (a TLS stream has none)
                if recv_within is not None:
                    data = recv_within(wait)
                    if data is not None or deadline is None or time.monotonic() < deadline:
                        return data
                elif connection.wait_readable(wait):
                    return connection.recv()
            if login is not None and (line_by is None or login <= line_by):
                raise _Expired(login_timeout, "login", reply=True)
            raise _Expired(timeout, "nw read", reply=True)
        except Hangup as exc:
            exc.reply = True
            raise
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""          # a reset connection is an end of file
        finally:
            signals.waiting = False

    quick = getattr(session, "quick", None)     # (a test's scripted session has none)
    line_by = None              # when the command line being read must be complete
    try:
        try:
            if (tls is not None and session.settings.tls_mode == TLS_ALTERNATE_PORT
                    and not session.tls_active):
                start_tls()                     # pop3s: TLS before the greeting
            emit([session.greeting()] if first is None else first)
            data = pending
            while not session.done:
                if data:
                    if b"\n" in data:
                        line_by = None          # a line ended: the next one's wait starts anew
                    out = quick(data) if quick is not None else None
                    emit(session.feed(data) if out is None else out)
                    data = b""
                    continue
                if line_by is None and timeout:
                    line_by = time.monotonic() + timeout
                data = read()
                if data == b"":
                    session.end("eof")
                    return
        except _Expired as exc:
            signals.waiting = False
            out = session.end("timeout", seconds=exc.seconds, during=exc.during)
            if exc.reply:
                try:
                    emit(out)
                except (_Expired, Hangup):
                    pass
        except Hangup as exc:
            signals.waiting = False
            out = session.end("hangup")
            if exc.reply:
                signals.pending = False         # told once; a second signal cuts it short
                try:
                    emit(out)
                except (_Expired, Hangup):
                    pass
        except _NoTLS as exc:
            # Qpopper's "TLS/SSL Handshake failed: <n>", with the client.
            signals.waiting = False
            log.notice("TLS/SSL Handshake failed: %s; client %s (%s)"
                       % (exc.args[0], session.client.host, session.client.ip))
            session.end("eof")
        except Exception:
            # A bug or an I/O error mid-reply: the client cannot be told in band,
            # so the connection is cut (it sees an error, never a cut-short
            # message) and the session ends as a hangup would.
            signals.waiting = False
            from popper.log import trace
            log.error("session aborted: %s" % trace())
            session.end("hangup")
    finally:
        # After a QUIT whose reply could not be written, its AfterSend (the
        # close) has not run: close here (a no-op for a closed session).
        if session.done and hasattr(session, "close"):
            session.close()
        if getattr(connection, "tls", False) and session.state != HANDED_OFF:
            connection.close_notify(1)
        release = getattr(connection, "release", None)
        if release is not None:
            release()
    return connection
