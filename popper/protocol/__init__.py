"""The POP3 protocol: the session (session.py), its line reader and replies.

Here: what the session and its transport (transport/connection.py) both
speak, the session's states and the outputs it yields besides bytes,
apart from session.py so that the transport's module, loaded before the
greeting, does not load the session's (docs/architecture.md, "Start-up")."""


class Client:
    """The peer: its host name (the IP when unknown) and its IP."""

    __slots__ = ("host", "ip")

    def __init__(self, host: str, ip: str):
        self.host, self.ip = host, ip

    @property
    def is_local(self) -> bool:
        return self.ip.startswith("127.") or self.ip in ("::1", "::ffff:127.0.0.1")


AUTHORIZATION, AUTHORIZATION_PASS, TRANSACTION, DONE = "auth1", "auth2", "trans", "done"
# The login phase of a separated session (privsep.py) ends here: the root
# part serves the rest, starting with the bytes in Session.unread.
HANDED_OFF = "handed-off"


class Pause:
    """Wait this many seconds before sending what follows."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __repr__(self):
        return "Pause(%r)" % self.seconds


class AfterSend:
    """In a reply stream: call me once everything before me has been sent
    (a RETR'd message is then sent whole; it counts as retrieved once the
    client's next command shows the client is still there)."""

    __slots__ = ("callback",)

    def __init__(self, callback):
        self.callback = callback


# Yielded before a command that looks at what was retrieved (QUIT, LAST,
# RSET): send everything first, so that pending AfterSends have run and
# the messages they mark count as received.
FLUSH = "flush"

# Yielded after STLS's +OK: the transport sends everything, does the TLS
# handshake, then calls Session.tls_started() (or ends the session).
START_TLS = "start-tls"

# Yielded after QUIT's reply: the transport sends everything and ends the
# connection (the client sees its end at once), then goes on with the
# outputs after it, the session's close (the temporary drop's blocks
# freed, server mode's cache), which the client need not wait for.
HANG_UP = "hang-up"
