"""Standalone mode: `popper [options] [ip][:port]` listens itself and forks
a process per connection; systemd socket activation (Accept=no, LISTEN_FDS)
hands it the listening sockets instead.

SIGHUP reopens the log and trace file; SIGTERM stops accepting, lets the
running sessions finish, and exits.  It stays in the foreground (for
systemd, runit, or `make demo`); put it in the background with your
service manager.
"""

import errno
import os
import select
import signal
import socket
import traceback

from popper import server
from popper.transport.connection import Connection, socket_of

DEFAULT_PORT = 110
SD_LISTEN_FDS_START = 3


class AddressError(Exception):
    """A listen address that cannot be used; args[0] says why."""


def parse_address(text: str):
    """(host, port) of "[ip][:port]"; host "" means every address."""
    host, port = text, ""
    if text.startswith("["):                          # [v6]:port
        close = text.find("]")
        if close < 0:
            raise AddressError("%s: missing ]" % text)
        host, rest = text[1:close], text[close + 1:]
        if rest and not rest.startswith(":"):
            raise AddressError("%s: expected :port after ]" % text)
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.isdigit():
        host, port = "", text
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise AddressError("%s: bad port %r" % (text, port))
    if host:
        try:
            socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise AddressError("%s: %r is not an IP address" % (text, host)) from None
    return host, int(port) if port else DEFAULT_PORT


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host or (not host and socket.has_ipv6) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and not host:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressError("%s:%d in use" % (host, port)) from None
        raise AddressError("%s:%d: %s" % (host, port, exc.strerror)) from None
    sock.listen(128)
    return sock


def inherited_listeners():
    """The sockets systemd passed (LISTEN_FDS), or []."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket_of(fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)]


class _Stop(Exception):
    pass


def serve(listeners, settings, log) -> int:
    """Accept connections until SIGTERM; one child process per session."""
    children = set()

    def on_term(signum, frame):
        raise _Stop()

    def on_hup(signum, frame):
        log.reopen()        # now: the next session must already use the new files

    def reap(signum=None, frame=None):
        while children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                return
            if pid == 0:
                return
            children.discard(pid)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGCHLD, reap)
    for sock in listeners:
        name = sock.getsockname()
        log.notice("listening on %s port %d" % (name[0], name[1]))
    try:
        while True:
            ready, _, _ = select.select(listeners, [], [])
            for sock in ready:
                try:
                    conn, address = sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                pid = os.fork()
                if pid == 0:
                    _child(conn, address, listeners, settings, log)
                children.add(pid)
                conn.close()
    except _Stop:
        pass
    for sock in listeners:
        sock.close()
    log.notice("stopped accepting; waiting for %d session(s)" % len(children))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
        except _Stop:
            continue
    return 0


def _child(conn, address, listeners, settings, log) -> None:
    status = 0
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for sock in listeners:
            sock.close()
        fd = conn.fileno()
        server.serve(Connection(fd, fd), address[0], settings, log)
    except BaseException:
        status = 1
        log.error("session process failed: %s" % traceback.format_exc())
    finally:
        os._exit(status)
