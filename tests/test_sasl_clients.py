"""SASL AUTH in the real program (privilege-separated when the tests run as
root) with real clients: curl through PLAIN, LOGIN and CRAM-MD5, fetchmail
through CRAM-MD5 (asked for, and its default when offered), mpop (GNU
SASL) through SCRAM-SHA-256, a SCRAM client of the test's own; poplib's
raw exchanges for a cancel, garbage base64, a 100 KB line and another
authorization identity, each with its -ERR and the session going on; and
the login process, which runs the exchanges, never reads a secret.

One server for the module: a TCP "inetd" on a mail host with a pop.auth
(alice has an APOP secret, so -p 0 refuses her clear text: PLAIN and
LOGIN are bob's; CRAM-MD5 and SCRAM-SHA-256 are alice's).
"""

import base64
import hashlib
import hmac
import os
import pathlib
import poplib
import re
import shutil
import subprocess
import tempfile

import pytest

import clients
from conftest import IS_ROOT, MailHost, TcpInetd, corpus, start_inetd
from test_apop import ApopHost, SECRET

pytestmark = [pytest.mark.clients, pytest.mark.twin]

ALICE_MAIL = corpus.mbox_bytes(list(corpus.messages(2, seed=21)))
BOB_MAIL = corpus.mbox_bytes(list(corpus.messages(2, seed=22)))
BOB = ("bob", "hunter2")


@pytest.fixture(scope="module")
def host():
    base = pathlib.Path(tempfile.mkdtemp(prefix="popper-sasl-", dir="/tmp"))
    try:
        mailhost = MailHost(base)
        apop_host = ApopHost(mailhost)
        assert apop_host.popauth("-init").returncode == 0
        assert apop_host.popauth("-user", "alice", SECRET).returncode == 0
        mailhost.deliver(ALICE_MAIL, "alice")
        mailhost.deliver(BOB_MAIL, "bob")
        yield mailhost
    finally:
        shutil.rmtree(str(base), ignore_errors=True)


@pytest.fixture(scope="module")
def server(host):
    inetd = TcpInetd(host.command())
    yield inetd
    inetd.close()


@pytest.fixture
def pop(server):
    opened = []

    def connect() -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", server.port, timeout=30)
        opened.append(client)
        return client
    yield connect
    for client in opened:
        try:
            client.close()
        except OSError:
            pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def reply(client: poplib.POP3, line: str) -> bytes:
    """The server's one-line answer to line, +OK, + or -ERR alike."""
    client._putcmd(line)
    return client._getline()[0]


def first_message_id(mail: bytes) -> bytes:
    return clients.spool_message_ids(mail)[0]


# --- curl -------------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism,user,password,mail", [
    ("PLAIN", "bob", "hunter2", BOB_MAIL),
    ("LOGIN", "bob", "hunter2", BOB_MAIL),
    ("CRAM-MD5", "alice", SECRET, ALICE_MAIL),
    ("*", "alice", SECRET, ALICE_MAIL),             # curl's choice: the strongest offered
], ids=["PLAIN", "LOGIN", "CRAM-MD5", "curls-choice"])
def test_curl_fetches_mail_through(server, tmp_path, mechanism, user, password, mail):
    curl = [clients.need("curl"), "-q", "-sS", "-v", "--noproxy", "*",
            "--login-options", "AUTH=" + mechanism]
    result = clients.run(curl + ["-u", "%s:%s" % (user, password),
                                 "pop3://127.0.0.1:%d/1" % server.port], tmp_path)
    assert clients.message_id(clients.from_wire(result.stdout)) == first_message_id(mail)
    used = "CRAM-MD5" if mechanism == "*" else mechanism
    assert b"> AUTH " + used.encode() in result.stderr
    # A wrong password: curl's "Login denied" (67).
    clients.run(curl + ["-u", "%s:wrong" % user, "pop3://127.0.0.1:%d/1" % server.port],
                tmp_path, ok=(67,))


# --- fetchmail ----------------------------------------------------------------------------

@pytest.mark.parametrize("auth", ["cram-md5", "any"])
def test_fetchmail_fetches_mail_through_cram_md5(server, tmp_path, auth):
    """fetchmail's default (auth any) takes CRAM-MD5 when CAPA offers it."""
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text('set no syslog\npoll "127.0.0.1" with proto POP3 port %d uidl auth %s timeout 30\n'
                  '  user "alice" there with password "%s" is "root" here\n'
                  "  options keep no rewrite sslproto ''\n  mda \"%s\"\n"
                  % (server.port, auth, SECRET, clients.file_mda(out)))
    os.chmod(str(rc), 0o600)
    result = clients.run([clients.need("fetchmail"), "-v", "-v", "-f", str(rc), "--idfile",
                          str(tmp_path / "ids"), "--pidfile", str(tmp_path / "pid"),
                          "--invisible"], tmp_path, extra_env={"FETCHMAILHOME": str(tmp_path)})
    assert b"AUTH CRAM-MD5" in result.stdout + result.stderr
    assert sorted(clients.message_id(m) for m in clients.read_outputs(out)) == sorted(
        clients.spool_message_ids(ALICE_MAIL))


# --- raw exchanges: each bad input gets its -ERR, and the session goes on ------------------

def test_bad_exchanges_then_a_login(pop):
    client = pop()
    capa = client.capa()
    assert capa["SASL"] == ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"], capa
    assert reply(client, "AUTH PLAIN") == b"+ "
    assert reply(client, "*") == b"-ERR [AUTH] AUTH cancelled by the client"
    assert reply(client, "AUTH PLAIN") == b"+ "
    assert reply(client, "this is not base64") == (
        b"-ERR [AUTH] Not valid base64; the AUTH exchange is over")
    assert reply(client, "AUTH LOGIN") == b"+ " + b64(b"Username:").encode()
    client._putline(b"Q" * 102400)
    assert client._getline()[0] == b"-ERR Command line too long: discarded 102402 bytes."
    assert reply(client, "AUTH PLAIN " + b64(b"alice\0bob\0hunter2")) == (
        b'-ERR [AUTH] "bob" may not log in as "alice"')
    assert reply(client, "AUTH PLAIN " + b64(b"\0bob\0wrong")) == (
        b"-ERR [AUTH] authentication failure")
    assert reply(client, "AUTH SCRAM-SHA-1") == (
        b"-ERR Unknown authentication mechanism: SCRAM-SHA-1")
    assert reply(client, "AUTH CRAM-MD5 " + b64(b"alice x")) == (
        b"-ERR [AUTH] Malformed CRAM-MD5 message; the AUTH exchange is over")
    challenge = reply(client, "AUTH CRAM-MD5")
    assert re.match(rb"^\+ \S+$", challenge)
    assert re.match(rb"^<[0-9a-f]{16}\.\d+@\S+>$", base64.b64decode(challenge[2:])), challenge
    assert reply(client, b64(b"alice 0123456789abcdef")) == (
        b"-ERR [AUTH] Malformed CRAM-MD5 message; the AUTH exchange is over")
    reply(client, "AUTH CRAM-MD5")
    assert reply(client, b64(b"alice " + b"0" * 32)) == b"-ERR [AUTH] authentication failure"
    assert reply(client, "AUTH PLAIN " + b64(b"\0bob\0hunter2")).startswith(
        b"+OK bob has 2 visible messages")
    assert client.stat()[0] == 2
    assert client.quit().startswith(b"+OK")


def cram_response(challenge_line: bytes, user: str, secret: str) -> str:
    challenge = base64.b64decode(challenge_line[2:])
    return b64(user.encode() + b" " + hmac.new(secret.encode(), challenge,
                                               hashlib.md5).hexdigest().encode())


def test_a_cram_md5_challenge_answers_once(pop):
    """A response to an earlier challenge is not taken again (the root
    part forgets it), nor one to another session's."""
    client, other = pop(), pop()
    first = reply(client, "AUTH CRAM-MD5")
    old = cram_response(first, "alice", SECRET)
    assert reply(client, "*") == b"-ERR [AUTH] AUTH cancelled by the client"
    second = reply(client, "AUTH CRAM-MD5")
    assert second != first
    assert reply(client, old) == b"-ERR [AUTH] authentication failure"
    assert reply(other, "AUTH CRAM-MD5") != second
    assert reply(other, cram_response(second, "alice", SECRET)) == (
        b"-ERR [AUTH] authentication failure")
    answer = reply(client, cram_response(reply(client, "AUTH CRAM-MD5"), "alice", SECRET))
    assert answer.startswith(b"+OK alice has 2 visible messages"), answer
    assert client.quit().startswith(b"+OK")


# --- SCRAM-SHA-256 --------------------------------------------------------------------------

class ScramClient:
    """The client side of RFC 5802 / 7677, for raw exchanges."""

    def __init__(self, user: str, secret: str, authzid: str = ""):
        self.secret = secret.encode()
        self.gs2 = "n,%s," % ("a=" + authzid if authzid else "")
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), self.nonce)

    def first(self) -> str:
        return b64((self.gs2 + self.bare).encode())

    def final(self, challenge_line: bytes, proof_secret: bytes = None, nonce: str = None) -> str:
        server_first = base64.b64decode(challenge_line[2:]).decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce)
        assert int(attrs["i"]) >= 4096 and len(base64.b64decode(attrs["s"])) >= 16
        self.salted = hashlib.pbkdf2_hmac("sha256", proof_secret or self.secret,
                                          base64.b64decode(attrs["s"]), int(attrs["i"]))
        without_proof = "c=%s,r=%s" % (b64(self.gs2.encode()), nonce or attrs["r"])
        self.message = ("%s,%s,%s" % (self.bare, server_first, without_proof)).encode()
        client_key = hmac.new(self.salted, b"Client Key", "sha256").digest()
        signature = hmac.new(hashlib.sha256(client_key).digest(), self.message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return b64((without_proof + ",p=" + b64(proof)).encode())

    def check(self, challenge_line: bytes) -> bool:
        """The server's signature: it knew the secret."""
        server_key = hmac.new(self.salted, b"Server Key", "sha256").digest()
        want = b"v=" + base64.b64encode(hmac.new(server_key, self.message, "sha256").digest())
        return base64.b64decode(challenge_line[2:]) == want


def test_scram_sha_256_logs_in_and_the_server_proves_it_knows_the_secret(pop):
    client = pop()
    scram = ScramClient("alice", SECRET)
    server_first = reply(client, "AUTH SCRAM-SHA-256 " + scram.first())
    server_final = reply(client, scram.final(server_first))
    assert server_final.startswith(b"+ ") and scram.check(server_final), server_final
    assert reply(client, "").startswith(b"+OK alice has 2 visible messages")
    assert client.quit().startswith(b"+OK")


def test_scram_sha_256_bad_exchanges_then_a_login(pop):
    client = pop()
    malformed = b"-ERR [AUTH] Malformed SCRAM-SHA-256 message; the AUTH exchange is over"
    for first in (b"alice", b"p=tls-unique,,n=alice,r=abc", b"n,,m=ext,n=alice,r=abc",
                  b"n,,n=al=ice,r=abc", b"n,,n=alice"):
        assert reply(client, "AUTH SCRAM-SHA-256 " + b64(first)) == malformed, first
    # A wrong secret, nobody's name, and a nonce not the server's.
    for user, secret, nonce, answer in (
            ("alice", "Apop-Secret8", None, b"-ERR [AUTH] authentication failure"),
            ("nosuchuser", SECRET, None, b"-ERR [AUTH] authentication failure"),
            ("bob", "hunter2", None, b"-ERR [AUTH] authentication failure"),
            ("alice", SECRET, "forged", malformed)):
        scram = ScramClient(user, SECRET)
        server_first = reply(client, "AUTH SCRAM-SHA-256")
        assert server_first == b"+ "
        server_first = reply(client, scram.first())
        assert reply(client, scram.final(server_first, secret.encode(), nonce)) == answer
    # Cancelled at the last step, after a right proof: no login.
    scram = ScramClient("alice", SECRET)
    server_final = reply(client, scram.final(reply(client, "AUTH SCRAM-SHA-256 "
                                                   + scram.first())))
    assert scram.check(server_final)
    assert reply(client, "*") == b"-ERR [AUTH] AUTH cancelled by the client"
    # Another authorization identity, after a right proof.
    scram = ScramClient("alice", SECRET, "bob")
    server_first = reply(client, "AUTH SCRAM-SHA-256 " + scram.first())
    assert reply(client, scram.final(server_first)) == (
        b'-ERR [AUTH] "alice" may not log in as "bob"')
    scram = ScramClient("alice", SECRET)
    server_final = reply(client, scram.final(reply(client, "AUTH SCRAM-SHA-256 "
                                                   + scram.first())))
    assert reply(client, "").startswith(b"+OK alice has 2 ")
    assert client.quit().startswith(b"+OK")


def test_mpop_fetches_mail_through_scram_sha_256(server, tmp_path):
    mpop = clients.need("mpop")
    version = subprocess.run([mpop, "--version"], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
    if "scram-sha-256" not in version:
        pytest.skip("this mpop has no SCRAM-SHA-256 (GNU SASL)")
    out = tmp_path / "out"
    out.mkdir()
    result = clients.run([mpop, "--host=127.0.0.1", "--port=%d" % server.port, "--user=alice",
                          "--passwordeval=echo '%s'" % SECRET, "--auth=scram-sha-256",
                          "--tls=off", "--keep=on", "--only-new=off", "--received-header=off",
                          "--uidls-file=%s" % (tmp_path / "uidls"),
                          "--delivery=mda,%s" % clients.file_mda(out), "--timeout=30", "-d"],
                         tmp_path)
    assert b"AUTH SCRAM-SHA-256" in result.stdout + result.stderr
    assert sorted(clients.message_id(m) for m in clients.read_outputs(out)) == sorted(
        clients.spool_message_ids(ALICE_MAIL))


def test_in_one_process_too(host):
    """set login-user = none (or popper not root): the session's own
    Gatekeeper checks, and keeps CRAM-MD5's and SCRAM's state."""
    config = host.base / "one-process.conf"
    config.write_text(host.config.read_text() + "set login-user = none\n")
    command = [part if part != str(host.config) else str(config) for part in host.command()]
    for mechanism in ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN"):
        conv = start_inetd(command)
        if mechanism == "SCRAM-SHA-256":
            scram = ScramClient("alice", SECRET)
            assert scram.check(conv.cmd(scram.final(conv.cmd("AUTH SCRAM-SHA-256 "
                                                             + scram.first()))))
            answer = conv.cmd("")
        elif mechanism == "CRAM-MD5":
            answer = conv.cmd(cram_response(conv.cmd("AUTH CRAM-MD5"), "alice", SECRET))
        else:
            answer = conv.cmd("AUTH PLAIN " + b64(b"\0bob\0hunter2"))
        assert answer.startswith(b"+OK"), (mechanism, answer)
        assert conv.cmd("QUIT").startswith(b"+OK")
        conv.close()


def test_plain_for_a_user_with_an_apop_secret_keeps_to_user_rules(pop):
    client = pop()
    assert reply(client, "AUTH PLAIN " + b64(b"\0alice\0secret")) == (
        b"-ERR [AUTH] You must use stronger authentication such as AUTH or APOP to connect "
        b"to this server")
    assert reply(client, "AUTH PLAIN " + b64(b"\0alice\0wrong")) == (
        b"-ERR [AUTH] authentication failure")


# --- the login process never reads a secret -----------------------------------------------

@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="privilege separation needs root")
@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
@pytest.mark.parametrize("mechanism", ["PLAIN", "CRAM-MD5", "SCRAM-SHA-256"])
def test_the_login_process_reads_no_hash_and_no_secret(host, tmp_path, mechanism):
    """Every read by every process, with strace -f: the user database's
    hashes and pop.auth's secrets are read only by processes that never
    became nobody; the login process (nobody) reads the client's AUTH
    lines, and hands over PLAIN's password or CRAM-MD5's digest (of the
    root part's challenge)."""
    trace = tmp_path / "strace.out"
    command = ["strace", "-f", "-qq", "-o", str(trace), "-e",
               "trace=read,pread64,recvfrom,recvmsg,setresuid", "-s", "8192", "-x"]
    conv = start_inetd(command + host.command())
    if mechanism == "PLAIN":
        assert conv.cmd("AUTH PLAIN " + b64(b"\0bob\0hunter2")).startswith(b"+OK bob has 2")
    elif mechanism == "CRAM-MD5":
        challenge = conv.cmd("AUTH CRAM-MD5")
        assert conv.cmd(cram_response(challenge, "alice", SECRET)).startswith(b"+OK alice has 2")
    else:
        scram = ScramClient("alice", SECRET)
        assert scram.check(conv.cmd(scram.final(conv.cmd("AUTH SCRAM-SHA-256 " + scram.first()))))
        assert conv.cmd("").startswith(b"+OK alice has 2")
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()
    nobody, reads = set(), []
    for line in trace.read_text().splitlines():
        m = re.match(r"(\d+)\s+setresuid\((\d+),", line)
        if m and m.group(2) == "65534":
            nobody.add(m.group(1))
        m = re.match(r'(\d+)\s+\w+\(\d+, "(.*)"', line)
        if m:
            reads.append((m.group(1), m.group(2).encode().decode("unicode_escape")))
    assert nobody
    by_nobody = "".join(data for pid, data in reads if pid in nobody)
    assert "AUTH " + mechanism in by_nobody
    assert "$6$testsalt$" not in by_nobody                  # the user database's hashes
    assert SECRET not in by_nobody
    obscured = "".join(chr(ord(c) ^ 0xFF) for c in SECRET)           # pop.auth's form
    assert obscured not in by_nobody
    # The root part read them.
    assert ("$6$testsalt$" if mechanism == "PLAIN" else obscured) in "".join(
        data for _, data in reads)
