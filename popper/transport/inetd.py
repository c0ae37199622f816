"""inetd mode: the connection is fd 0 and 1, as inetd, xinetd and systemd
(Accept=yes) hand it over.  BSD inetd puts the socket on fd 2 as well, so
fd 2 is pointed at /dev/null first: nothing meant for a log reaches the client.

When popper cannot start (a bad option, a bad config file line, a feature
not built), the client gets one line, `UNAVAILABLE`, and the end of the
connection; the reason goes to syslog, where the administrator looks
(cli.refuse).  Qpopper printed its usage text or error on stderr, which
BSD inetd and xinetd make the connection: the client read it instead of a
greeting."""

import os

import _socket as socket    # not socket.py (docs/architecture.md, "Start-up")

from popper import greeting
from popper.transport.probes import peer_of, stdin_probe

# The same line the installed launcher sends when popper cannot even be
# imported (packaging/launcher.py): no detail, which is for the log.
UNAVAILABLE = b"-ERR [SYS/TEMP] POP server unavailable, see the system log\r\n"


def serve(settings, log, tls=None) -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    greeted = greeting.greet(1, peer_of(0), settings, log, tls)
    if greeted is not None:
        # The session's half after the greeting (docs/architecture.md, "Start-up").
        from popper import server
        from popper.transport.connection import Connection
        server.serve(Connection(0, 1), greeted, settings, log, tls)
    return 0


def has_client() -> bool:
    """Whether fd 0 is a client's connection (inetd mode): a stream socket
    with a peer, not a listening one and not a terminal, pipe or file."""
    probe = stdin_probe()
    if probe is None:
        return False
    try:
        if probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
            return False
        probe.getpeername()
        return True
    except OSError:
        return False
    finally:
        probe.close()


def stdin_is_listening() -> bool:
    """Whether fd 0 is a listening socket rather than a connection: inetd's
    `wait`, systemd's Accept=no with StandardInput=socket, or
    `systemd-socket-activate --inetd` without -a."""
    probe = stdin_probe()
    if probe is None:
        return False
    try:
        return bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False
    finally:
        probe.close()


def refuse() -> None:
    """Tell the client on fd 0 that there is no POP service, in one line,
    and end the connection (shutdown: whatever else holds the socket, the
    client sees the end at once).  Never waits, never raises."""
    probe = stdin_probe()
    if probe is None:
        return
    try:
        probe.send(UNAVAILABLE, socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0))
        probe.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        probe.close()
