"""What a connection does before its greeting.  Every inetd connection
pays for this module and its imports before the client hears anything
(docs/architecture.md, "Start-up"), so it imports only what the greeting
needs.  greet() sends the greeting; then server.serve() loads the
session's modules and goes on."""

import _socket as socket    # not socket.py (enum, selectors, collections)
import os
import select
import time

from popper import __version__
from popper.protocol import Client, replies
from popper.settings import TLS_ALTERNATE_PORT
from popper.transport.probes import no_delay


class Greeted:
    """What greet() found for the session: the client (its name), this
    host's name, the APOP timestamp (None: no APOP), the login process's
    identity (None: one process) and the login's monotonic deadline."""

    __slots__ = ("client", "hostname", "timestamp", "identity", "login_by")

    def __init__(self, client, hostname, timestamp, identity, login_by):
        self.client, self.hostname, self.timestamp = client, hostname, timestamp
        self.identity, self.login_by = identity, login_by


def greet(fd: int, peer_ip: str, settings, log, tls=None):
    """Greet the client on fd (with -l 2 the greeting follows the TLS
    handshake: the login process's, or run's in one process): a Greeted,
    or None when the greeting cannot be written."""
    no_delay(fd)
    client = client_for(peer_ip, settings, log)
    log.debug("(v%s) Servicing request from \"%s\" at %s" % (__version__, client.host, client.ip))
    hostname = local_hostname()
    timestamp = apop_timestamp(settings, hostname, log)
    greeted = Greeted(client, hostname, timestamp, login_identity(settings),
                      time.monotonic() + settings.login_timeout)
    return greeted if send_greeting(fd, settings, hostname, timestamp, tls) else None


def client_for(ip: str, settings, log) -> Client:
    """The client's name as Qpopper finds it: the reverse lookup of its IP,
    kept only if that name resolves back to the IP (unless -R)."""
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    if not settings.reverse_lookup:
        return Client(ip, ip)
    try:
        name = socket.gethostbyaddr(_ascii(ip))[0]
    except (OSError, UnicodeError) as exc:
        # pop_init.c: hstrerror(h_errno) and h_errno, which herror carries.
        code = exc.errno if isinstance(exc, OSError) and exc.errno is not None else 0
        log.debug("(v%s) Unable to get canonical name of client %s: %s (%d)"
                  % (__version__, ip, getattr(exc, "strerror", None) or exc, code))
        return Client(ip, ip)
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(_ascii(name), None)}
    except (OSError, UnicodeError):
        log.notice('Client at "%s" resolves to an unknown host name "%s"' % (ip, name))
        return Client(ip, ip)
    if ip not in addresses:
        log.notice('Client address "%s" not listed for its host name "%s"' % (ip, name))
        return Client(ip, ip)
    return Client(name, ip)


def _ascii(host: str):
    """host as bytes when it is ASCII: the resolver functions encode a str
    with the idna codec, which loads re, stringprep and unicodedata
    before the greeting."""
    try:
        return host.encode("ascii")
    except UnicodeEncodeError:
        return host


def local_hostname() -> str:
    """This host's name as Qpopper takes it: gethostname(), or the
    resolver's canonical name for it when that has no domain; found once."""
    if not _HOSTNAME:
        _HOSTNAME.append(_hostname())
    return _HOSTNAME[0]


_HOSTNAME = []


def _hostname() -> str:
    name = socket.gethostname()
    if "." not in name:
        try:
            canonical = socket.getaddrinfo(_ascii(name), None, 0, socket.SOCK_STREAM, 0,
                                           socket.AI_CANONNAME)[0][3]
        except (OSError, IndexError, UnicodeError):
            canonical = ""
        if "." in canonical:
            name = canonical
    return name


def login_identity(settings):
    """(uid, gid) the login process runs as, or None when sessions are not
    separated (popper is not root, or login-user is off).  LookupError if
    login-user is not an account, or is root."""
    if os.geteuid() != 0 or not settings.login_user:
        return None
    # The stdlib's pwd, unixdb's pure twin: asked before the greeting, this
    # lookup of the administrator's setting does not wait for cffi's backend
    # and the C extension (about 1.5 ms), which load with the session.
    import pwd
    try:        # the name's latin-1 bytes, as unixdb gives them to the C library
        entry = pwd.getpwnam(os.fsdecode(settings.login_user.encode("latin-1")))
    except (KeyError, ValueError, UnicodeError):
        raise LookupError("login-user %s: no such user" % settings.login_user) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise LookupError("login-user %s: must not be root (uid %d, gid %d)"
                          % (settings.login_user, entry.pw_uid, entry.pw_gid))
    return entry.pw_uid, entry.pw_gid


def implicit_tls(settings, tls) -> bool:
    """-l 2: TLS from the first byte, so the login process greets."""
    return tls is not None and settings.tls_mode == TLS_ALTERNATE_PORT


def send_greeting(fd: int, settings, hostname: str, apop_timestamp, tls) -> bool:
    """The greeting, but with -l 2 (TLS from the first byte: it follows
    the handshake); False when it cannot be written."""
    return implicit_tls(settings, tls) or _send(
        fd, replies.greeting(settings, hostname, apop_timestamp),
        time.monotonic() + settings.timeout)


def _send(fd: int, data: bytes, deadline: float) -> bool:
    """Write data to the client by the deadline; False if it cannot be."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        try:
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return False
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except OSError:
            return False
    return True


def apop_timestamp(settings, hostname: str, log):
    """The greeting's <pid.time@host>, exactly when pop.auth is there and
    this process can use it (curl and Thunderbird try APOP whenever the
    greeting has a timestamp, and never fall back to USER/PASS); else None."""
    if not settings.apop_db:
        return None
    from popper.auth import apop
    from popper.auth.gatekeeper import admin
    try:
        why = apop.usable(settings.apop_db, admin(settings)[0])
    except apop.DBError as exc:
        why = str(exc)
    if why:
        if os.path.lexists(apop.names(settings.apop_db)["dir"]):
            log.error("APOP is off for this session: %s" % why)
        return None
    return apop.timestamp(hostname)
