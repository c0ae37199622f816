"""inetd mode: the connection is fd 0 and 1, as inetd, xinetd and systemd
(Accept=yes) hand it over.  BSD inetd puts the socket on fd 2 as well, so
fd 2 is pointed at /dev/null first: nothing meant for a log reaches the client."""

import os

from popper import server
from popper.transport.connection import Connection


def serve(settings, log) -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    server.serve(Connection(0, 1), server.peer_of(0), settings, log)
    return 0
