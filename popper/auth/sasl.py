"""SASL for POP3's AUTH (RFC 5034, RFC 4422): the mechanisms' exchanges.

Two halves.  The exchanges (exchange()) run in the session -- in the login
process of a separated session -- as continuations (Session.converse): a
generator that yields each challenge line and is sent the client's next
line.  They decode what the client sends and hand the credentials to the
session's authenticator, which checks them where the secrets are (the
root part, privsep.py; Gatekeeper's methods of the same names):

  PLAIN (RFC 4616), LOGIN   authenticator.plain(authzid, user, password):
                            the password check USER/PASS makes, any back-end
  CRAM-MD5 (RFC 2195)       authenticator.challenge(), then .cram(user,
                            digest): the challenge is made and kept by the
                            checker, as APOP's timestamp is (the login
                            process cannot choose what a digest is checked
                            against), and the digest checked against the
                            user's pop.auth secret
  SCRAM-SHA-256 (RFC 7677)  .scram_first(message), .scram_final(message),
                            .scram_done(): the checker runs the server side
                            (Scram) from the user's pop.auth secret

The checker's side of the secret mechanisms (cram_challenge, cram_digest,
Scram) is here too.  No line of an exchange is logged.

SCRAM's stored key: pop.auth keeps the APOP secret itself (APOP and
CRAM-MD5 need it as it is), so SCRAM needs nothing stored of its own.  The
checker salts it afresh for every exchange (SCRAM_SALT random bytes,
SCRAM_ITERATIONS rounds of PBKDF2-HMAC-SHA-256): a client learns nothing
reusable, and a failed exchange costs the same for every name (a dummy
secret is salted for a name without one).  No SASLprep: names and secrets
are taken as their bytes (the same for ASCII ones).
"""

import binascii     # not base64.py, which imports re (docs/architecture.md, "Start-up")
import os
import time

from popper import digests
from popper.auth import AuthError
from popper.protocol import replies as R
from popper.protocol.lines import TooLong

# Strongest first (the order of CAPA's SASL line and of a bare AUTH's list).
CLEAR_TEXT = ("PLAIN", "LOGIN")
BY_SECRET = ("SCRAM-SHA-256", "CRAM-MD5")          # those that need a pop.auth secret

SCRAM_ITERATIONS = 4096         # RFC 7677's minimum; the salt is new each time
SCRAM_SALT = 16                 # bytes
SCRAM_NONCE = 18                # random bytes of the server's nonce


class Ended(Exception):
    """The exchange is over before its end: args[0] is what to send."""


def available(session) -> list:
    """The mechanisms that can complete for some user now: PLAIN and LOGIN
    when clear-text passwords are allowed (session.clear_text_refusal()),
    those BY_SECRET when pop.auth was usable at the greeting (its APOP
    timestamp is there exactly then)."""
    names = list(BY_SECRET) if session.apop_timestamp else []
    if not session.clear_text_refusal():
        names += CLEAR_TEXT
    return names


# --- the exchanges (the session's side) -------------------------------------------------

def exchange(session, mechanism: str, initial):
    """The continuation for AUTH <mechanism> [initial]: its outputs."""
    try:
        return (yield from EXCHANGES[mechanism](session, initial))
    except Ended as end:
        return end.args[0]


BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64decode(data: bytes) -> bytes:
    """data decoded if it is base64 as RFC 4648 writes it (the alphabet,
    at most two "=" to end the last group of four), else binascii.Error:
    what base64.b64decode(data, validate=True) takes on Python 3.13."""
    body = data.rstrip(b"=")
    if len(data) % 4 or len(data) - len(body) > 2 or body.translate(None, BASE64):
        raise binascii.Error("Non-base64 digit found")
    return binascii.a2b_base64(data)


def b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def _decode(session, text: str) -> bytes:
    try:
        return b64decode(text.encode("latin-1"))
    except (binascii.Error, ValueError):
        raise Ended(session.err(R.AUTH_BAD_BASE64)) from None


def _ask(session, challenge: bytes):
    """Send a challenge ("+ " and its base64), take the client's response."""
    line = yield b"+ " + b64encode(challenge) + b"\r\n"
    if isinstance(line, TooLong):
        raise Ended(session.err(R.LINE_TOO_LONG, count=line.discarded))
    text = line.decode("latin-1").strip(" \t")
    if text == "*":
        raise Ended(session.err(R.AUTH_CANCELLED))
    return _decode(session, text)


def _first(session, initial):
    """The client's first response: the initial one ("=" for an empty
    one, RFC 4422), or the answer to an empty challenge."""
    if initial is None:
        return (yield from _ask(session, b""))
    if initial == "=":
        return b""
    if initial == "*":
        raise Ended(session.err(R.AUTH_CANCELLED))
    return _decode(session, initial)


def _text(session, data: bytes, mechanism: str) -> str:
    """A name from the client: UTF-8 (RFC 4616), taken as latin-1 bytes as
    USER's are; no NUL (the back-ends' C calls would cut there)."""
    if b"\0" in data:
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism=mechanism))
    return data.decode("latin-1")


def _login(session, check, user: str):
    """check() -> Account, the session's login; or the failure, refused."""
    session.user = user
    try:
        account = check()
    except AuthError as exc:
        return session.refuse(exc)
    return session.login(account)


def _password_login(session, authzid: str, authcid: str, password: bytes):
    user = session.user_name(authcid)
    authzid = session.user_name(authzid) if authzid else user
    return _login(session, lambda: session.authenticator.plain(
        authzid, user, password, session.client), authzid)


def _plain(session, initial):
    message = yield from _first(session, initial)
    parts = message.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="PLAIN"))
    authzid, authcid = _text(session, parts[0], "PLAIN"), _text(session, parts[1], "PLAIN")
    return _password_login(session, authzid, authcid, parts[2])


def _login_mechanism(session, initial):
    # The draft's prompts; a client may send the name as an initial response.
    if initial is None:
        name = yield from _ask(session, b"Username:")
    else:
        name = yield from _first(session, initial)
    password = yield from _ask(session, b"Password:")
    if not name:
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="LOGIN"))
    return _password_login(session, "", _text(session, name, "LOGIN"), password)


def _cram(session, initial):
    if initial is not None:             # the server speaks first (RFC 4422 section 3.3)
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="CRAM-MD5"))
    try:
        challenge = session.authenticator.challenge()
    except AuthError as exc:            # the root part could not be asked
        return session.refuse(exc)
    response = yield from _ask(session, challenge.encode("latin-1"))
    name, _, digest = _text(session, response, "CRAM-MD5").rpartition(" ")
    if not name or len(digest) != 32:
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="CRAM-MD5"))
    user = session.user_name(name)
    return _login(session, lambda: session.authenticator.cram(user, digest, session.client),
                  user)


def _scram(session, initial):
    first = yield from _first(session, initial)
    _text(session, first, "SCRAM-SHA-256")
    user, authzid = scram_names(first)
    session.user = session.user_name(user or "")     # for the log
    if authzid:
        session.user_name(authzid)      # -no-mime: the authorization identity's
    checker = session.authenticator
    try:
        server_first = checker.scram_first(first)
    except AuthError as exc:
        return session.refuse(exc)
    final = yield from _ask(session, server_first)
    try:
        server_final = checker.scram_final(final, session.client)
    except AuthError as exc:
        return session.refuse(exc)
    # RFC 5034 section 4: the server's last data goes in a challenge, and
    # the client answers it with an empty response.
    if (yield from _ask(session, server_final)):
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="SCRAM-SHA-256"))
    return _login(session, lambda: checker.scram_done(session.client), session.user)


EXCHANGES = {"PLAIN": _plain, "LOGIN": _login_mechanism, "CRAM-MD5": _cram,
             "SCRAM-SHA-256": _scram}


# --- the checker's side -------------------------------------------------------------------

def cram_challenge(hostname: str) -> str:
    """A challenge in RFC 2195's form, never the same twice:
    <random.time@host>."""
    return "<%s.%d@%s>" % (os.urandom(8).hex(), int(time.time()), hostname)


def cram_digest(challenge: str, secret: bytes) -> str:
    """The lower-case hex HMAC-MD5 of the challenge, keyed with the secret."""
    return digests.hmac(secret, challenge.encode("latin-1"), digests.md5).hex()


def _saslname(value: str):
    """RFC 5802's saslname decoded (=2C is ",", =3D is "="), or None when
    it has another "="."""
    if "=" in value.replace("=2C", "").replace("=3D", ""):
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


def scram_names(message: bytes):
    """(user, authzid) a client-first-message names ("" when not there),
    or (None, None) when it is not one.  Its parts: the GS2 header
    (channel binding flag, authzid) and the bare message (n=, r=, ...)."""
    parts = message.decode("latin-1").split(",")
    if len(parts) < 4 or parts[0] not in ("n", "y") or not parts[2].startswith("n="):
        return None, None
    if parts[1] and not parts[1].startswith("a="):
        return None, None
    user, authzid = _saslname(parts[2][2:]), _saslname(parts[1][2:])
    if not user or authzid is None or not parts[3].startswith("r=") or len(parts[3]) < 3:
        return None, None
    return user, authzid


def _hmac(key: bytes, data: bytes) -> bytes:
    return digests.hmac(key, data, digests.sha256)


class Scram:
    """The server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677),
    for the checker: first(client-first) -> server-first; then
    final(client-final) -> (the user's secret -> is the proof right?), and
    after a right proof, server_final().  ValueError for a message that is
    not SCRAM's."""

    def __init__(self, client_first: bytes):
        self.user, self.authzid = scram_names(client_first)
        if self.user is None:
            raise ValueError("not a client-first-message")
        text = client_first.decode("latin-1")
        gs2_end = text.index(",", text.index(",") + 1) + 1
        self.gs2_header, self.client_first_bare = text[:gs2_end], text[gs2_end:]
        client_nonce = self.client_first_bare.split(",")[1][2:]
        self.nonce = client_nonce + b64encode(os.urandom(SCRAM_NONCE)).decode()
        self.salt = os.urandom(SCRAM_SALT)
        self.server_first = "r=%s,s=%s,i=%d" % (self.nonce, b64encode(self.salt).decode(),
                                                SCRAM_ITERATIONS)
        self.server_signature = None

    def final(self, client_final: bytes):
        """The check of client-final's proof: a function of the secret."""
        text = client_final.decode("latin-1")
        without_proof, _, proof = text.rpartition(",p=")
        parts = without_proof.split(",")
        binding = b64encode(self.gs2_header.encode("latin-1")).decode()
        if len(parts) < 2 or parts[0] != "c=" + binding or parts[1] != "r=" + self.nonce:
            raise ValueError("not this exchange's client-final-message")
        try:
            proof = b64decode(proof.encode("latin-1"))
        except (binascii.Error, ValueError):
            raise ValueError("a proof that is not base64") from None
        if len(proof) != digests.sha256().digest_size:
            raise ValueError("a proof of %d bytes" % len(proof))
        message = ("%s,%s,%s" % (self.client_first_bare, self.server_first,
                                 without_proof)).encode("latin-1")

        def right(secret: bytes) -> bool:
            import hashlib      # OpenSSL's PBKDF2: as root, in the exchange (digests.py)
            salted = hashlib.pbkdf2_hmac("sha256", secret, self.salt, SCRAM_ITERATIONS)
            stored_key = digests.sha256(_hmac(salted, b"Client Key")).digest()
            signature = _hmac(stored_key, message)
            client_key = bytes(a ^ b for a, b in zip(proof, signature))
            if not digests.compare_digest(digests.sha256(client_key).digest(), stored_key):
                return False
            self.server_signature = _hmac(_hmac(salted, b"Server Key"), message)
            return True
        return right

    def server_final(self) -> bytes:
        return b"v=" + b64encode(self.server_signature)
