"""The POP3 protocol: the session (session.py), its line reader and replies."""


class Client:
    """The peer: its host name (the IP when unknown) and its IP."""

    __slots__ = ("host", "ip")

    def __init__(self, host: str, ip: str):
        self.host, self.ip = host, ip

    @property
    def is_local(self) -> bool:
        return self.ip.startswith("127.") or self.ip in ("::1", "::ffff:127.0.0.1")
