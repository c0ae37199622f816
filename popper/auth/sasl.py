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

The checker's side of the secret mechanisms (cram_challenge, cram_digest)
is here too.  No line of an exchange is logged.
"""

import base64
import binascii
import hashlib
import hmac
import os
import time

from popper.auth import AuthError
from popper.protocol import replies as R
from popper.protocol.lines import TooLong

# Strongest first (the order of CAPA's SASL line and of a bare AUTH's list).
CLEAR_TEXT = ("PLAIN", "LOGIN")
BY_SECRET = ("CRAM-MD5",)          # the mechanisms that need a pop.auth secret


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


def _decode(session, text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        raise Ended(session.err(R.AUTH_BAD_BASE64)) from None


def _ask(session, challenge: bytes):
    """Send a challenge ("+ " and its base64), take the client's response."""
    line = yield b"+ " + base64.b64encode(challenge) + b"\r\n"
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
    challenge = session.authenticator.challenge()
    response = yield from _ask(session, challenge.encode("latin-1"))
    name, _, digest = _text(session, response, "CRAM-MD5").rpartition(" ")
    if not name or len(digest) != 32:
        raise Ended(session.err(R.AUTH_MALFORMED, mechanism="CRAM-MD5"))
    user = session.user_name(name)
    return _login(session, lambda: session.authenticator.cram(user, digest, session.client),
                  user)


EXCHANGES = {"PLAIN": _plain, "LOGIN": _login_mechanism, "CRAM-MD5": _cram}


# --- the checker's side -------------------------------------------------------------------

def cram_challenge(hostname: str) -> str:
    """A challenge in RFC 2195's form, never the same twice:
    <random.time@host>."""
    return "<%s.%d@%s>" % (os.urandom(8).hex(), int(time.time()), hostname)


def cram_digest(challenge: str, secret: bytes) -> str:
    """The lower-case hex HMAC-MD5 of the challenge, keyed with the secret."""
    return hmac.new(secret, challenge.encode("latin-1"), hashlib.md5).hexdigest()
