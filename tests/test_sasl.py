"""SASL AUTH (RFC 5034): the mechanisms' exchanges in the sans-I/O session
(the continuation mechanism: AUTH reads further lines after its reply),
the list in CAPA and a bare AUTH, every bad input's -ERR with the session
going on, and the authorization identity.  The real program with real
clients is in test_sasl_clients.py."""

import base64

import pytest

from conftest import USERS, StubAuth, corpus
from popper.auth import Account
from popper.protocol import replies as R
from popper.protocol.session import AUTHORIZATION, TRANSACTION, Pause
from popper.settings import Settings

from test_session import run, text

pytestmark = pytest.mark.twin

MAIL = corpus.mbox_bytes(list(corpus.messages(2, seed=5)))
FAILED = b"-ERR [AUTH] authentication failure\r\n"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def plain(authzid: str, user: str, password: str) -> bytes:
    return b64(("%s\0%s\0%s" % (authzid, user, password)).encode())


class ProxyAuth(StubAuth):
    def account(self, user):
        return Account(user) if user in USERS else None


def session_for(make_session, *lines, auth=None, policy=0):
    settings = Settings()
    settings.clear_text_password = policy
    for line in lines:
        name, value = line
        setattr(settings, name, value)
    return make_session(settings, MAIL, auth=auth)


def logged_in(session) -> bool:
    return session.state == TRANSACTION


# --- what is offered ----------------------------------------------------------------

def test_capa_and_bare_auth_list_plain_and_login_when_clear_text_is_allowed(make_session):
    session, _ = make_session(mail=MAIL)
    capa = text(run(session, b"CAPA\r\n")).split(b"\r\n")
    assert capa[:3] == [b"+OK Capability list follows", b"TOP", b"SASL PLAIN LOGIN"]
    assert text(run(session, b"AUTH\r\n")) == (
        b"+OK Supported SASL mechanisms:\r\nPLAIN\r\nLOGIN\r\n.\r\n")
    login = text(run(session, b"AUTH PLAIN " + plain("", "alice", "secret") + b"\r\n"))
    assert login.startswith(b"+OK alice has 2 visible messages")
    assert b"SASL" not in text(run(session, b"CAPA\r\n"))          # AUTH is over


def test_without_clear_text_nothing_is_offered_and_plain_is_unknown(make_session):
    session, _ = session_for(make_session, policy=1)
    assert b"SASL" not in text(run(session, b"CAPA\r\n"))
    assert text(run(session, b"AUTH\r\n")) == (
        b"+OK Supported SASL mechanisms:\r\nX-NONE-SO-USE-APOP-OR-STLS\r\n.\r\n")
    assert text(run(session, b"AUTH PLAIN " + plain("", "alice", "secret") + b"\r\n")) == (
        b"-ERR Unknown authentication mechanism: PLAIN\r\n")
    assert text(run(session, b"AUTH CRAM-MD5\r\n")) == (
        b"-ERR Unknown authentication mechanism: CRAM-MD5\r\n")
    assert not logged_in(session)


# --- PLAIN and LOGIN ------------------------------------------------------------------

@pytest.mark.parametrize("lines", [
    [b"AUTH PLAIN " + plain("", "alice", "secret")],
    [b"AUTH plain " + plain("alice", "alice", "secret")],
    [b"AUTH PLAIN", plain("", "alice", "secret")],
    [b"AUTH LOGIN", b64(b"alice"), b64(b"secret")],
    [b"AUTH LOGIN " + b64(b"alice"), b64(b"secret")],
], ids=["initial", "authzid-same", "after-challenge", "login", "login-initial"])
def test_plain_and_login_log_in(make_session, lines):
    session, log = make_session(mail=MAIL)
    out = []
    for line in lines:
        out += run(session, line + b"\r\n")
    assert out[-1].startswith(b"+OK alice has 2 visible messages"), out
    assert all(x.startswith(b"+ ") for x in out[:-1])
    if lines[0] == b"AUTH LOGIN":
        assert out[:2] == [b"+ " + b64(b"Username:") + b"\r\n",
                           b"+ " + b64(b"Password:") + b"\r\n"]
    assert logged_in(session) and session.user == "alice"
    secrets = [word.decode() for line in lines
               for word in (line.split()[2:] if line.startswith(b"AUTH") else [line])]
    assert not [m for m in log.texts() if any(s in m for s in secrets)]


def test_pipelined_exchange_and_commands_after_it(make_session):
    session, _ = make_session(mail=MAIL)
    out = text(run(session, b"AUTH PLAIN\r\n" + plain("", "alice", "secret") + b"\r\nSTAT\r\n"))
    assert out.startswith(b"+ \r\n+OK alice has 2 ") and b"\r\n+OK 2 " in out


@pytest.mark.parametrize("name,password", [("alice", "wrong"), ("nosuchuser", "secret")])
def test_every_failure_gets_the_one_answer_after_the_delay(make_session, name, password):
    settings = Settings()
    settings.auth_fail_delay = 3
    session, log = make_session(settings, MAIL)
    out = run(session, b"AUTH PLAIN " + plain("", name, password) + b"\r\n")
    assert isinstance(out[0], Pause) and out[0].seconds == 3
    assert text(out) == FAILED
    assert any("Failed attempted login to %s" % name in m for m in log.texts())
    # The session goes on: a right password logs in now.
    out = run(session, b"AUTH LOGIN\r\n" + b64(b"alice") + b"\r\n" + b64(b"secret") + b"\r\n")
    assert text(out).endswith(b"+OK alice has 2 visible messages (0 hidden) in %d octets.\r\n"
                              % session.total_octets)


# --- bad input: a clear -ERR, and the session goes on ----------------------------------

@pytest.mark.parametrize("lines,reply", [
    ([b"AUTH PLAIN", b"*"], b"-ERR [AUTH] AUTH cancelled by the client"),
    ([b"AUTH PLAIN *"], b"-ERR [AUTH] AUTH cancelled by the client"),
    ([b"AUTH LOGIN", b64(b"alice"), b"*"], b"-ERR [AUTH] AUTH cancelled by the client"),
    ([b"AUTH PLAIN", b"not base64!"], b"-ERR [AUTH] Not valid base64; the AUTH exchange is over"),
    ([b"AUTH PLAIN YWxpY2U"], b"-ERR [AUTH] Not valid base64; the AUTH exchange is over"),
    ([b"AUTH PLAIN " + b64(b"alice secret")],
     b"-ERR [AUTH] Malformed PLAIN message; the AUTH exchange is over"),
    ([b"AUTH PLAIN " + b64(b"\0\0secret")],
     b"-ERR [AUTH] Malformed PLAIN message; the AUTH exchange is over"),
    ([b"AUTH PLAIN " + b64(b"a\0b\0c\0d")],
     b"-ERR [AUTH] Malformed PLAIN message; the AUTH exchange is over"),
    ([b"AUTH LOGIN " + b64(b"al\0ice"), b64(b"secret")],
     b"-ERR [AUTH] Malformed LOGIN message; the AUTH exchange is over"),
    ([b"AUTH LOGIN =", b64(b"secret")],
     b"-ERR [AUTH] Malformed LOGIN message; the AUTH exchange is over"),
    ([b"AUTH PLAIN ="], b"-ERR [AUTH] Malformed PLAIN message; the AUTH exchange is over"),
], ids=["cancel", "cancel-initial", "cancel-login", "garbage", "no-padding", "no-nul",
        "empty-user", "four-fields", "nul-in-name", "login-empty-name", "empty"])
def test_bad_input_gets_a_clear_err_and_the_session_goes_on(make_session, lines, reply):
    session, _ = make_session(mail=MAIL)
    out = []
    for line in lines:
        out += run(session, line + b"\r\n")
    assert text(out).split(b"\r\n")[-2] == reply
    assert session.state == AUTHORIZATION and session.continuation is None
    assert text(run(session, b"NOOP\r\n")) == b'-ERR Unknown command: "noop".\r\n'
    out = run(session, b"AUTH PLAIN " + plain("", "alice", "secret") + b"\r\n")
    assert text(out).startswith(b"+OK alice has 2 ")


def test_a_100_kb_exchange_line_is_refused_whole(make_session):
    session, log = make_session(mail=MAIL)
    assert text(run(session, b"AUTH PLAIN\r\n")) == b"+ \r\n"
    out = []
    for _ in range(100):                              # 100 KB in pieces, as a socket gives it
        out += run(session, b"A" * 1024)
        assert len(session.reader.pending) <= 1024
    out += run(session, b"\r\n")
    assert text(out) == b"-ERR Command line too long: discarded 102402 bytes.\r\n"
    assert any("Excessive input" in m for m in log.texts())
    assert text(run(session, b"AUTH PLAIN " + plain("", "alice", "secret") + b"\r\n")).startswith(
        b"+OK alice has 2 ")


def test_a_100_kb_auth_line_is_refused_whole(make_session):
    session, _ = make_session(mail=MAIL)
    out = run(session, b"AUTH PLAIN " + b"A" * 102400 + b"\r\n")
    assert text(out) == b"-ERR Command line too long: discarded 102413 bytes.\r\n"
    assert session.continuation is None


# --- the authorization identity ----------------------------------------------------------

def test_another_authorization_identity_is_refused(make_session):
    session, log = make_session(mail=MAIL, auth=ProxyAuth())
    out = run(session, b"AUTH PLAIN " + plain("bob", "alice", "secret") + b"\r\n")
    assert text(out) == b'-ERR [AUTH] "alice" may not log in as "bob"\r\n'
    assert not logged_in(session)
    assert any('may not log in as "bob": not listed in sasl-proxy-file' in m
               for m in log.texts())
    # A wrong password says no more than any failure.
    assert text(run(session, b"AUTH PLAIN " + plain("bob", "alice", "x") + b"\r\n")) == FAILED


def test_a_user_in_sasl_proxy_file_may_log_in_as_another(make_session, tmp_path):
    proxies = tmp_path / "proxies"
    proxies.write_text("carol\n")
    (tmp_path / "spool" / "bob").write_bytes(MAIL)
    session, log = session_for(make_session, ("sasl_proxy_file", str(proxies)),
                               auth=ProxyAuth())
    out = run(session, b"AUTH PLAIN " + plain("bob", "carol", "pass word") + b"\r\n")
    assert text(out).startswith(b"+OK bob has 2 visible messages"), out
    assert session.user == "bob"
    assert '"carol" logs in as "bob" (sasl-proxy-file)' in log.texts()
    other, _ = session_for(make_session, ("sasl_proxy_file", str(proxies)), auth=ProxyAuth())
    assert text(run(other, b"AUTH PLAIN " + plain("nosuch", "carol", "pass word") + b"\r\n")) == (
        b'-ERR [AUTH] "carol" may not log in as "nosuch"\r\n')


def test_downcase_and_trim_domain_apply_to_both_identities(make_session):
    session, _ = session_for(make_session, ("downcase_user", True), ("trim_domain", True))
    out = run(session, b"AUTH PLAIN " + plain("ALICE@example.org", "Alice@Example.org", "secret")
              + b"\r\n")
    assert text(out).startswith(b"+OK alice has 2 ")


def test_a_user_with_an_apop_secret_keeps_to_user_rules():
    """Gatekeeper.plain refuses clear text for a name check_user refuses
    (pop_user.c), after a right password only."""
    from popper.auth import AuthError
    from popper.auth.gatekeeper import Gatekeeper
    from conftest import RecordingLog, Client

    class Keeper(Gatekeeper):
        def check_user(self, user):
            if user == "alice":
                raise AuthError(R.NEED_STRONGER_AUTH_APOP_USER, delay=False)
    keeper = Keeper(Settings(), StubAuth(), RecordingLog())
    client = Client("c", "192.0.2.1")
    with pytest.raises(AuthError) as wrong:
        keeper.plain("alice", "alice", b"wrong", client)
    assert wrong.value.template == R.AUTH_FAILED and wrong.value.attempt
    with pytest.raises(AuthError) as right:
        keeper.plain("alice", "alice", b"secret", client)
    assert right.value.template == R.NEED_STRONGER_AUTH_APOP_USER
    assert keeper.plain("bob", "bob", b"hunter2", client).name == "bob"


# --- CRAM-MD5 in the session: the checker's challenge, the checker's check ------------------

class CramChecker(StubAuth):
    """Makes a challenge and keeps it, as the root part does."""

    def __init__(self):
        self.asked = []

    def challenge(self):
        self.kept = "<1234.5678@checker>"
        return self.kept

    def cram(self, user, digest, client):
        from popper.auth import AuthError, sasl
        self.asked.append((user, digest))
        if user == "alice" and digest == sasl.cram_digest(self.kept, b"Apop-Secret9"):
            return Account(user)
        raise AuthError(R.AUTH_FAILED)


def cram_session(make_session, **settings):
    session, log = session_for(make_session, *settings.items())
    session.apop_timestamp = "<1.2@mail.example>"          # pop.auth was usable
    session.authenticator = CramChecker()
    return session, log


def test_cram_md5_is_offered_with_pop_auth_and_answers_the_checkers_challenge(make_session):
    from popper.auth import sasl
    session, _ = cram_session(make_session, downcase_user=True)
    assert b"\r\nSASL SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN\r\n" in text(run(session, b"CAPA\r\n"))
    challenge = text(run(session, b"AUTH CRAM-MD5\r\n"))
    assert challenge == b"+ " + b64(b"<1234.5678@checker>") + b"\r\n"
    digest = sasl.cram_digest("<1234.5678@checker>", b"Apop-Secret9")
    out = run(session, b64(b"ALICE " + digest.encode()) + b"\r\n")
    assert text(out).startswith(b"+OK alice has 2 visible messages")
    assert session.authenticator.asked == [("alice", digest)]


@pytest.mark.parametrize("lines,reply", [
    ([b"AUTH CRAM-MD5 " + b64(b"alice x")],
     b"-ERR [AUTH] Malformed CRAM-MD5 message; the AUTH exchange is over"),
    ([b"AUTH CRAM-MD5", b64(b"alice")],
     b"-ERR [AUTH] Malformed CRAM-MD5 message; the AUTH exchange is over"),
    ([b"AUTH CRAM-MD5", b64(b"alice 0123")],
     b"-ERR [AUTH] Malformed CRAM-MD5 message; the AUTH exchange is over"),
    ([b"AUTH CRAM-MD5", b"*"], b"-ERR [AUTH] AUTH cancelled by the client"),
    ([b"AUTH CRAM-MD5", b64(b"alice " + b"0" * 32)], b"-ERR [AUTH] authentication failure"),
], ids=["initial", "no-digest", "short-digest", "cancel", "wrong"])
def test_cram_md5_bad_input(make_session, lines, reply):
    session, _ = cram_session(make_session)
    out = []
    for line in lines:
        out += run(session, line + b"\r\n")
    assert text(out).split(b"\r\n")[-2] == reply
    assert session.continuation is None and not logged_in(session)
