"""What a file descriptor is and who is on its other end, asked before the
greeting (every inetd connection pays for what is imported then): bare
_socket objects, since socket.py loads enum, selectors and collections."""

import os
import sys

import _socket


def socket_of(fd: int):
    """A socket.socket on fd (a standalone listener's: accept() is
    socket.py's), with the socket's own family, as
    socket.socket(fileno=fd) gives from Python 3.7 on.  Python 3.6 takes
    AF_INET unless told, and then reads only the first half of an IPv6
    address (the peer ::1 came out as "::%<junk>"): there the family is read off
    the socket's own address, got through an AF_UNIX object, whose address
    buffer is the largest.  OSError if fd is not a socket (fd stays open)."""
    import socket       # the standalone listener's, which loads it once
    if sys.version_info >= (3, 7):
        return socket.socket(fileno=fd)
    return socket.socket(_family(fd), socket.SOCK_STREAM, 0, fd)


def probe_of(fd: int):
    """socket_of's light twin: an _socket.socket (socket.py's enums cost
    an inetd session ~3 ms), for the probes made before the greeting and
    for a connection's own reads and writes (connection.py); no context
    manager: close() it."""
    if sys.version_info >= (3, 7):
        return _socket.socket(fileno=fd)
    return _socket.socket(_family(fd), _socket.SOCK_STREAM, 0, fd)


def _family(fd: int) -> int:
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
    try:
        name = probe.getsockname()
    finally:
        probe.detach()
    return {2: _socket.AF_INET, 4: _socket.AF_INET6}.get(
        len(name) if isinstance(name, tuple) else 0, _socket.AF_UNIX)


def probe_copy(fd: int):
    """A probe_of a copy of fd (closing it leaves fd alone), or None if fd
    is no socket (the copy closed)."""
    try:
        copy = os.dup(fd)
    except OSError:
        return None
    try:
        return probe_of(copy)
    except OSError:
        os.close(copy)
        return None


def stdin_probe():
    """probe_copy(0): inetd's connection, if fd 0 is one."""
    return probe_copy(0)


def no_delay(fd: int) -> None:
    """TCP_NODELAY on a TCP connection: popper gathers its own writes (one per
    reply), so Nagle's algorithm could only hold back a reply's last piece
    until the client's delayed ACK, 40 ms on Linux."""
    sock = probe_copy(fd)
    if sock is None:
        return
    try:
        if sock.family in (_socket.AF_INET, _socket.AF_INET6):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    except OSError:
        pass
    finally:
        sock.close()


def peer_of(fd: int) -> str:
    """The IP of the peer on a socket fd; "0.0.0.0" when fd is not a socket."""
    sock = probe_copy(fd)
    if sock is None:
        return "0.0.0.0"
    try:
        address = sock.getpeername()
        return address[0] if isinstance(address, tuple) else "127.0.0.1"
    except OSError:
        return "0.0.0.0"
    finally:
        sock.close()
