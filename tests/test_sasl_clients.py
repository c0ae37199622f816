"""SASL AUTH in the real program (privilege-separated when the tests run as
root) with real clients: curl through PLAIN, LOGIN and CRAM-MD5, fetchmail
through CRAM-MD5 (asked for, and its default when offered); poplib's
raw exchanges for a cancel, garbage base64, a 100 KB line and another
authorization identity, each with its -ERR and the session going on; and
the login process, which runs the exchanges, never reads a secret.

One server for the module: a TCP "inetd" on a mail host with a pop.auth
(alice has an APOP secret, so -p 0 refuses her clear text: PLAIN and
LOGIN are bob's; CRAM-MD5 is alice's).
"""

import base64
import hashlib
import hmac
import os
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

@pytest.mark.parametrize("mechanism,user,password,mail", [
    ("PLAIN", "bob", "hunter2", BOB_MAIL),
    ("LOGIN", "bob", "hunter2", BOB_MAIL),
    ("CRAM-MD5", "alice", SECRET, ALICE_MAIL),
    ("*", "alice", SECRET, ALICE_MAIL),             # curl's choice: the strongest offered
])
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
    assert capa["SASL"] == ["CRAM-MD5", "PLAIN", "LOGIN"], capa
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
@pytest.mark.parametrize("mechanism", ["PLAIN", "CRAM-MD5"])
def test_the_login_process_reads_no_hash_and_no_secret(host, tmp_path, mechanism):
    """Every read by every process, with strace -f: the user database's
    hashes and pop.auth's secrets are read only by processes that never
    became nobody; the login process (nobody) reads the client's AUTH
    lines, and hands over PLAIN's password or CRAM-MD5's digest (of the
    root part's challenge)."""
    trace = tmp_path / "strace.out"
    command = ["strace", "-f", "-qq", "-o", str(trace), "-e",
               "trace=read,pread64,recvfrom,recvmsg,setresuid", "-s", "8192", "-x"]
    from conftest import start_inetd
    conv = start_inetd(command + host.command())
    if mechanism == "PLAIN":
        assert conv.cmd("AUTH PLAIN " + b64(b"\0bob\0hunter2")).startswith(b"+OK bob has 2")
    else:
        challenge = conv.cmd("AUTH CRAM-MD5")
        assert conv.cmd(cram_response(challenge, "alice", SECRET)).startswith(b"+OK alice has 2")
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
