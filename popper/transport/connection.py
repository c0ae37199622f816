"""Running one session over one connection: the loop every transport shares.

It reads with the idle timeout, feeds the session, and writes what comes
back: all the replies produced by one read go out in one write (a long
reply such as RETR in writes of FLUSH_AT bytes), and an AfterSend runs
once the bytes before it have been written.  SIGHUP, SIGTERM or a dead peer
end the session as a hangup, but only while the loop waits for the peer:
never in the middle of a maildrop update.
"""

import os
import select
import signal
import socket
import sys
import time
import traceback

from popper.protocol.session import FLUSH, AfterSend, Pause

FLUSH_AT = 256 * 1024
READ_SIZE = 64 * 1024


def socket_of(fd: int) -> socket.socket:
    """A socket object on fd, with the socket's own family, as
    socket.socket(fileno=fd) gives from Python 3.7 on.  Python 3.6 takes
    AF_INET unless told, and then reads only the first half of an IPv6
    address (the peer ::1 came out as "::%<junk>"): there the family is read off
    the socket's own address, got through an AF_UNIX object, whose address
    buffer is the largest.  OSError if fd is not a socket (fd stays open)."""
    if sys.version_info >= (3, 7):
        return socket.socket(fileno=fd)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
    try:
        name = probe.getsockname()
    finally:
        probe.detach()
    family = {2: socket.AF_INET, 4: socket.AF_INET6}.get(
        len(name) if isinstance(name, tuple) else 0, socket.AF_UNIX)
    return socket.socket(family, socket.SOCK_STREAM, 0, fd)


class Hangup(Exception):
    """SIGHUP/SIGTERM arrived, or the peer went away."""


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
        for sig in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, self.handler)

    def check(self):
        if self.pending:
            raise Hangup()


class Connection:
    """A byte stream to the client: a socket, or a pair of fds (inetd gives
    fd 0 and 1; they are the same socket unless run from a pipe)."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd = read_fd, write_fd

    def wait_readable(self, timeout) -> bool:
        readable, _, _ = select.select([self.read_fd], [], [], timeout)
        return bool(readable)

    def recv(self) -> bytes:
        return os.read(self.read_fd, READ_SIZE)

    def send(self, data) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.write_fd, view)
            view = view[n:]


class _Writer:
    """Gathers replies into writes of up to FLUSH_AT bytes, and runs each
    AfterSend once everything before it has been written."""

    def __init__(self, send):
        self.send = send
        self.buf = bytearray()
        self.pending = []

    def add(self, data: bytes) -> None:
        if self.buf and len(self.buf) + len(data) > FLUSH_AT:
            self.flush()
        if len(data) >= FLUSH_AT:
            self.send(data)
        else:
            self.buf += data

    def after_send(self, item: AfterSend) -> None:
        if self.buf:
            self.pending.append(item.callback)
        else:
            item.callback()

    def flush(self) -> None:
        if self.buf:
            self.send(self.buf)
            self.buf = bytearray()
        callbacks, self.pending = self.pending, []
        for callback in callbacks:
            callback()


def run(connection: Connection, session, timeout: int, log) -> None:
    """Serve one session until QUIT, EOF, timeout or hangup."""
    signals = _Signals()
    signals.install()

    def send(data):
        signals.waiting = True
        try:
            signals.check()
            connection.send(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout) as exc:
            raise Hangup() from exc
        finally:
            signals.waiting = False

    writer = _Writer(send)

    def emit(outputs):
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
            else:
                for chunk in out:
                    if isinstance(chunk, AfterSend):
                        writer.after_send(chunk)
                    else:
                        writer.add(chunk)
        writer.flush()

    try:
        emit([session.greeting()])
        while not session.done:
            signals.waiting = True
            try:
                signals.check()
                if not connection.wait_readable(timeout or None):
                    signals.waiting = False
                    emit(session.end("timeout"))
                    return
                data = connection.recv()
            except OSError:
                data = b""          # a reset connection is an end of file
            finally:
                signals.waiting = False
            if not data:
                session.end("eof")
                return
            emit(session.feed(data))
    except Hangup:
        signals.waiting = False
        session.end("hangup")
    except Exception:
        # A bug or an I/O error mid-reply: the client cannot be told in band,
        # so the connection is cut (it sees an error, never a cut-short
        # message) and the session ends as a hangup would.
        signals.waiting = False
        log.error("session aborted: %s" % traceback.format_exc())
        session.end("hangup")
