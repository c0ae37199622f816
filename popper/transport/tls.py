"""TLS: the server's SSLContext from the settings, TLS over a connection,
and the relay a login process runs after a login over TLS.

The stdlib's ssl module is imported here only, and only once TLS is
configured (-l 1 or -l 2): an inetd start-up without TLS never loads it
(tests/test_tls.py checks).

The context (docs/popper.8, TLS; docs/qpopper-options.md):
  tls-server-cert-file  the certificate, PEM, its chain after it (else
                        tls-identity-file, else Qpopper's default
                        /etc/mail/certs/identity.crt)
  tls-private-key-file  its key (else the key in the certificate file)
  tls-passphrase        the key's passphrase (never asked for on a terminal)
  tls-chain-file        popper's: intermediate certificates kept apart
  tls-cipher-list       OpenSSL's list, for TLS 1.2 and older
  tls-min-version       popper's: the oldest version spoken, TLSv1.2 unless set
  tls-version           Qpopper's: default, SSLv23 and all are any version from
                        tls-min-version up; SSLv2, SSLv3 and TLSv1 ask for
                        what popper does not speak below it, and are raised to it
  tls-workarounds, tls-options  accepted, no effect (OpenSSL's workarounds are
                        always on; Qpopper's numbers were OpenSSL 0.9's bits)
It is made as root at start-up (the key is root's file to read), before
any fork; the standalone listener makes a new one on SIGHUP (Credentials).

TLS over a connection (Stream) is ssl.SSLObject over memory BIOs: popper
reads and writes the socket itself, as for clear text (MSG_DONTWAIT, the
fd left blocking: inetd's fd 0 and 1 are one open file), so every wait
keeps its deadline, and the bytes read before the handshake are never
given to it: the session's and the transport's buffers are dropped at
STLS (CVE-2011-0411's class), and only what the client sends after the
+OK is read as TLS.
"""

import os
import select
import sys
import time

from popper.settings import tls_configured as configured

DEFAULT_IDENTITY = "/etc/mail/certs/identity.crt"     # Qpopper's popper.c
READ_SIZE = 64 * 1024
WRITE_SIZE = 256 * 1024         # plaintext encrypted at once (connection.FLUSH_AT)
RELAY_BUFFER = 1024 * 1024      # socket buffers of the relay's socketpair
# What Qpopper's tls-version can ask for that popper raises to tls-min-version.
UNSPOKEN = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLSv1": "TLS 1.0 alone"}


class TLSConfigError(Exception):
    """The settings' TLS cannot be set up; args[0] says why."""


class HandshakeFailed(Exception):
    """The client's TLS handshake failed; args[0] is the reason."""


def certificate_file(settings) -> str:
    return settings.tls_server_cert_file or settings.tls_identity_file or DEFAULT_IDENTITY


def warnings(settings) -> list:
    """What start-up says about TLS settings that do less than asked."""
    if not configured(settings):
        return []
    found = []
    if settings.tls_version in UNSPOKEN:
        found.append("tls-version %s: popper does not speak %s; TLS from %s (tls-min-version) "
                     "is offered" % (settings.tls_version, UNSPOKEN[settings.tls_version],
                                     settings.tls_min_version))
    if settings.tls_options:
        found.append("tls-options %d has no effect (OpenSSL 0.9's option bits)"
                     % settings.tls_options)
    key = settings.tls_private_key_file or certificate_file(settings)
    try:
        mode = os.stat(key).st_mode
    except OSError:
        mode = 0
    if mode & 0o026:        # a group of its own (Debian's ssl-cert) may read it
        found.append("the TLS private key %s may be read or changed by others (mode %04o): "
                     "chmod 600 it" % (key, mode & 0o7777))
    return found


def make_context(settings):
    """The server's ssl.SSLContext; TLSConfigError with the reason."""
    try:
        import ssl
    except ImportError:         # a Python built without OpenSSL (an old SCO one, say)
        raise TLSConfigError("this Python (%s) has no ssl module: TLS cannot be used"
                             % sys.executable) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_minimum(ssl, context, settings.tls_min_version)
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE)
    if settings.tls_cipher_list:
        try:
            context.set_ciphers(settings.tls_cipher_list)
        except ssl.SSLError:
            raise TLSConfigError("tls-cipher-list %r: no cipher OpenSSL knows"
                                 % settings.tls_cipher_list) from None
    certificate = certificate_file(settings)
    key = settings.tls_private_key_file
    # Never OpenSSL's prompt on a terminal: no passphrase is an empty one.
    passphrase = settings.tls_passphrase if settings.tls_passphrase is not None else (
        lambda: b"")
    try:
        if settings.tls_chain_file:
            with _certificates_with_chain(certificate, settings.tls_chain_file) as chained:
                context.load_cert_chain(chained, key or certificate, passphrase)
        else:
            context.load_cert_chain(certificate, key, passphrase)
    except (OSError, ValueError) as exc:       # ssl.SSLError is an OSError
        raise TLSConfigError("cannot use the TLS certificate %s%s: %s"
                             % (certificate, " and key %s" % key if key else "",
                                _reason(exc))) from None
    return context


def _set_minimum(ssl, context, name: str) -> None:
    if hasattr(context, "minimum_version"):         # Python 3.7
        context.minimum_version = getattr(ssl.TLSVersion, name.replace(".", "_"))
        return
    for older, flag in (("TLSv1", ssl.OP_NO_TLSv1), ("TLSv1.1", ssl.OP_NO_TLSv1_1),
                        ("TLSv1.2", ssl.OP_NO_TLSv1_2)):
        if older == name:
            return
        context.options |= flag


class _certificates_with_chain:
    """A private temporary file holding the certificate file's certificates
    (never its key) and then the chain file's: OpenSSL reads one file."""

    def __init__(self, certificate: str, chain: str):
        self.paths = (certificate, chain)

    def __enter__(self) -> str:
        pem = b""
        for path in self.paths:
            with open(path, "rb") as f:
                pem += b"".join(_pem_blocks(f.read(), b"CERTIFICATE"))
        import tempfile
        fd, self.path = tempfile.mkstemp(prefix="popper-chain-")
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return self.path

    def __exit__(self, *exc):
        os.unlink(self.path)


def _pem_blocks(data: bytes, label: bytes) -> list:
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    blocks, at = [], 0
    while True:
        start = data.find(begin, at)
        stop = data.find(end, start)
        if start < 0 or stop < 0:
            return blocks
        at = stop + len(end)
        blocks.append(data[start:at] + b"\n")


def _reason(exc) -> str:
    """An OpenSSL or OS error as one short line: OpenSSL's reason code
    ("HTTP_REQUEST": "http request"), else the error's own text."""
    reason = getattr(exc, "reason", None)
    if reason:
        return reason.replace("_", " ").lower()
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


class Credentials:
    """The context the sessions use: made once, and made again by reload()
    (the standalone listener's SIGHUP), which keeps the one it had if the
    new files cannot be used."""

    def __init__(self, settings):
        self.settings = settings
        self.context = make_context(settings)

    def reload(self, log) -> None:
        try:
            self.context = make_context(self.settings)
        except TLSConfigError as exc:
            log.error("TLS: %s; the certificate loaded before is kept" % exc)
            return
        log.notice("TLS: reloaded the certificate %s" % certificate_file(self.settings))


# --- TLS over a connection ---------------------------------------------------------

class Stream:
    """A Connection's interface (recv, send_some, wait_readable,
    wait_writable, release) over TLS on the plain connection raw."""

    tls = True

    def __init__(self, raw, context):
        import ssl
        self.ssl, self.raw = ssl, raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls_object = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.notified = False           # close_notify() sent
        self.unsent = memoryview(b"")   # ciphertext the socket has not taken yet
        self.taken = 0                  # the plaintext bytes it carries
        self.ready = []                 # the client's clear bytes, decrypted, not taken
        self.ended = False              # close_notify (or the end) came

    def handshake(self, deadline: float) -> None:
        """HandshakeFailed(reason) if it cannot be done by the deadline."""
        while True:
            try:
                self.tls_object.do_handshake()
                break
            except self.ssl.SSLWantReadError:
                pass
            except self.ssl.SSLError as exc:
                self._flush(deadline, quiet=True)          # the alert, if it goes
                raise HandshakeFailed(_reason(exc)) from None
            self._flush(deadline)
            if not self.raw.wait_readable(max(0.0, deadline - time.monotonic())):
                raise HandshakeFailed("timed out")
            try:
                data = self.raw.recv()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise HandshakeFailed(_reason(exc)) from None
            if not data:
                raise HandshakeFailed("the client closed the connection")
            self.incoming.write(data)
        self._flush(deadline)

    def version(self) -> str:
        return "%s %s" % (self.tls_object.version(), self.tls_object.cipher()[0])

    def _flush(self, deadline: float, quiet: bool = False) -> None:
        """Send what OpenSSL wrote (handshake records) by the deadline."""
        self.unsent = memoryview(bytes(self.unsent) + self.outgoing.read())
        try:
            while self.unsent:
                n = self.raw.send_some(self.unsent)
                self.unsent = self.unsent[n:]
                if not n and not self.raw.wait_writable(max(0.0, deadline - time.monotonic())):
                    raise HandshakeFailed("timed out")
        except (OSError, HandshakeFailed) as exc:
            if not quiet:
                raise HandshakeFailed(_reason(exc) if isinstance(exc, OSError)
                                      else exc.args[0]) from None

    def recv(self) -> bytes:
        """The client's clear bytes (b"" at the end of the stream, a
        close_notify or a TLS error); BlockingIOError if none came yet."""
        if not self._decrypt():
            data = self.raw.recv()              # BlockingIOError: nothing yet
            if not data:
                return b""
            self.incoming.write(data)
            if not self._decrypt():
                raise BlockingIOError()         # not a whole record yet
        return self._take()                     # b"" once the stream has ended

    def _decrypt(self) -> bool:
        """Decrypt every whole record the socket gave (the handshake's last
        read may have brought the first command too): whether there are
        clear bytes to take, so a wait is never a wait for what is here."""
        while not self.ended:
            try:
                piece = self.tls_object.read(READ_SIZE)
            except self.ssl.SSLWantReadError:
                break
            except (self.ssl.SSLZeroReturnError, self.ssl.SSLEOFError):
                self.ended = True
                break
            if not piece:
                self.ended = True
                break
            self.ready.append(piece)
        if self.outgoing.pending:               # a key update's answer, say
            self.unsent = memoryview(bytes(self.unsent) + self.outgoing.read())
        return bool(self.ready) or self.ended

    def _take(self) -> bytes:
        data, self.ready = b"".join(self.ready), []
        return data

    def send_some(self, data) -> int:
        """As Connection.send_some: how many of data's bytes the client has
        been sent (0: none yet; call again with the same bytes).  Counted
        only once the socket has taken all of their ciphertext."""
        if not self.unsent:
            piece = data[:WRITE_SIZE]
            self.tls_object.write(piece)
            self.unsent, self.taken = memoryview(self.outgoing.read()), len(piece)
        n = self.raw.send_some(self.unsent)
        self.unsent = self.unsent[n:]
        if self.unsent:
            return 0
        taken, self.taken = self.taken, 0
        return taken

    def wait_readable(self, timeout) -> bool:
        return self._decrypt() or self.raw.wait_readable(timeout)

    def wait_writable(self, timeout) -> bool:
        return self.raw.wait_writable(timeout)

    def close_notify(self, timeout: float) -> None:
        """Tell the client the stream ends (what it has is all), waiting
        at most timeout seconds for the socket to take it; never raises;
        once."""
        if self.notified:
            return
        self.notified = True
        try:
            self.tls_object.unwrap()
        except (self.ssl.SSLError, ValueError):
            pass
        try:
            self._flush(time.monotonic() + timeout, quiet=True)
        except HandshakeFailed:
            pass

    def hang_up(self) -> None:
        """close_notify, then the plain connection's end."""
        self.close_notify(1)
        ending = getattr(self.raw, "hang_up", None)
        if ending is not None:
            ending()

    def release(self) -> None:
        self.raw.release()

    @property
    def read_fd(self) -> int:
        return self.raw.read_fd

    @property
    def write_fd(self) -> int:
        return self.raw.write_fd


def start(raw, context, deadline: float) -> Stream:
    """TLS on the plain connection raw, its handshake done: a Stream;
    HandshakeFailed(reason)."""
    stream = Stream(raw, context)
    stream.handshake(deadline)
    return stream


# --- the relay ----------------------------------------------------------------------

def relay_pair():
    """(the session's end, the relay's end) of the socketpair a session
    after a login over TLS is served through, with large buffers."""
    import socket
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sock in pair:
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RELAY_BUFFER)
            except OSError:
                pass
    return pair


def _read(recv):
    """recv()'s bytes; None if none are there yet; b"" at the end or an error."""
    try:
        return recv()
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def relay(stream: Stream, session, write_timeout) -> None:
    """Copy clear bytes between the TLS stream and the session's socket
    until either side ends: the client's end of stream is passed on as a
    shutdown of the socket's write side, the session's as TLS's
    close_notify once all it wrote has been sent.  Each side is read only
    while what was read from it has been passed on (no buffer grows), so
    a client that does not read stops the session's writes, whose
    write-timeout then ends it.  write_timeout bounds each wait for the
    client to take bytes (None: none).  A wait with nothing on its way
    lasts as long as the session: every wait of the session has its
    deadline (-T, login-timeout, write-timeout), and the session's end
    (or death) closes its socket, which ends the relay; a deadline here
    would cut the reply to a long QUIT."""
    import socket
    session.setblocking(False)
    to_client, to_session = memoryview(b""), memoryview(b"")
    client_open, session_open = True, True
    session_fd = session.fileno()
    readable = {stream.read_fd, session_fd}     # to try; then what poll() says is ready
    while session_open:
        if client_open and not to_session and stream.read_fd in readable:
            data = _read(stream.recv)
            if data == b"":
                client_open = False
                try:
                    session.shutdown(socket.SHUT_WR)     # the session reads its end
                except OSError:
                    pass
            elif data:
                to_session = memoryview(data)
        if to_session:
            try:
                to_session = to_session[session.send(to_session):]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return
        if not to_client and session_fd in readable:
            data = _read(lambda: session.recv(WRITE_SIZE))
            if data == b"":
                session_open = False
            elif data:
                to_client = memoryview(data)
        if to_client:
            try:
                to_client = to_client[stream.send_some(to_client):]
            except OSError:
                return
        if not session_open:
            break
        events = {}
        for fd, wanted, event in ((stream.read_fd, client_open and not to_session, select.POLLIN),
                                  (stream.write_fd, to_client, select.POLLOUT),
                                  (session_fd, not to_client, select.POLLIN),
                                  (session_fd, to_session, select.POLLOUT)):
            if wanted:
                events[fd] = events.get(fd, 0) | event
        poller = select.poll()
        for fd, mask in events.items():
            poller.register(fd, mask)
        wait = write_timeout if to_client else None
        ready = poller.poll(None if not wait else int(wait * 1000))
        if not ready:
            return                                  # a deadline passed
        readable = {fd for fd, revents in ready if revents & ~select.POLLOUT}
    end_by = time.monotonic() + (write_timeout or 60)
    while to_client:
        n = stream.send_some(to_client)
        to_client = to_client[n:]
        if not n and not stream.wait_writable(max(0.0, end_by - time.monotonic())):
            return
    stream.close_notify(max(0.0, end_by - time.monotonic()))
