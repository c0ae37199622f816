"""SASL AUTH in the real program (privilege-separated when the tests run as
root) with real clients: curl and mpop through PLAIN and LOGIN; poplib's
raw exchanges for a cancel, garbage base64, a 100 KB line and another
authorization identity, each with its -ERR and the session going on; and
the login process, which runs the exchanges, never reads a secret.

One server for the module: a TCP "inetd" on a mail host with a pop.auth
(alice has an APOP secret, so -p 0 refuses her clear text: PLAIN and
LOGIN are bob's).
"""

import base64
import pathlib
import poplib
import re
import shutil
import tempfile

import pytest

import clients
from conftest import IS_ROOT, MailHost, TcpInetd, corpus
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

@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_curl_fetches_mail_through(server, tmp_path, mechanism):
    result = clients.run([clients.need("curl"), "-q", "-sS", "-v", "--noproxy", "*",
                          "--login-options", "AUTH=" + mechanism, "-u", "%s:%s" % BOB,
                          "pop3://127.0.0.1:%d/1" % server.port], tmp_path)
    assert clients.message_id(clients.from_wire(result.stdout)) == first_message_id(BOB_MAIL)
    assert b"> AUTH " + mechanism.encode() in result.stderr
    # A wrong password: curl's "Login denied" (67).
    clients.run([clients.need("curl"), "-q", "-sS", "--noproxy", "*", "--login-options",
                 "AUTH=" + mechanism, "-u", "bob:wrong", "pop3://127.0.0.1:%d/1" % server.port],
                tmp_path, ok=(67,))


# --- raw exchanges: each bad input gets its -ERR, and the session goes on ------------------

def test_bad_exchanges_then_a_login(pop):
    client = pop()
    capa = client.capa()
    assert capa["SASL"] == ["PLAIN", "LOGIN"], capa
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
    assert reply(client, "AUTH PLAIN " + b64(b"\0bob\0hunter2")).startswith(
        b"+OK bob has 2 visible messages")
    assert client.stat()[0] == 2
    assert client.quit().startswith(b"+OK")


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
def test_the_login_process_reads_no_hash_and_no_secret(host, tmp_path):
    """Every read by every process, with strace -f: the user database's
    hashes and pop.auth's secrets are read only by processes that never
    became nobody; the login process (nobody) reads the client's AUTH
    lines, and hands the password over."""
    trace = tmp_path / "strace.out"
    command = ["strace", "-f", "-qq", "-o", str(trace), "-e",
               "trace=read,pread64,recvfrom,recvmsg,setresuid", "-s", "256", "-x"]
    from conftest import start_inetd
    conv = start_inetd(command + host.command())
    assert conv.cmd("AUTH PLAIN " + b64(b"\0bob\0hunter2")).startswith(b"+OK bob has 2")
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
    assert "AUTH PLAIN" in by_nobody
    assert "$6$testsalt$" not in by_nobody                  # the user database's hashes
    assert SECRET not in by_nobody
    assert "".join(chr(ord(c) ^ 0xFF) for c in SECRET) not in by_nobody      # pop.auth's form
    everything = "".join(data for _, data in reads)
    assert "$6$testsalt$" in everything                      # the root part read them
