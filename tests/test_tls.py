"""TLS: STLS (RFC 2595) and implicit TLS (-l 2, pop3s), the certificate
settings, -p 4, the relay of a login over TLS, and real clients checking
the server's certificate against a test CA (tests/tlsca.py).

The sans-I/O tests drive the session as the transport would; the rest run
one standalone popper per kind (STLS with clear-text-password = tls, and
alternate-port) for the whole module, each client a session of its own.
"""

import os
import pathlib
import poplib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

import clients as C
from conftest import IS_ROOT, MailHost, Standalone, TcpInetd, corpus, process_ids
from popper import cli
from popper.protocol import replies as R
from popper.protocol.session import START_TLS
from popper.settings import TLS_ALTERNATE_PORT, TLS_STLS, ConfigError, Settings, apply_line
from popper.transport import tls


def settings_of(*lines) -> Settings:
    settings = Settings()
    for line in lines:
        apply_line(settings, line)
    return settings


# --- the session, sans I/O -----------------------------------------------------------

def outputs(session, data: bytes) -> list:
    """What the session gives for data, the handshake "done" at START_TLS."""
    out = []
    for item in session.feed(data):
        out.append(item)
        if item is START_TLS:
            session.tls_started()
    return out


def test_stls_is_refused_without_tls(make_session):
    session, _ = make_session()
    assert outputs(session, b"STLS\r\n") == [R.err(R.STLS_NOT_ENABLED)]
    assert b"STLS" not in b"".join(outputs(session, b"CAPA\r\n"))


def test_stls_answers_then_starts_tls_and_drops_what_was_pipelined(make_session):
    settings = Settings()
    settings.tls_mode = TLS_STLS
    session, log = make_session(settings, mail=b"")
    capa = b"".join(outputs(session, b"CAPA\r\n"))
    assert b"\r\nSTLS\r\nIMPLEMENTATION" in capa
    # CVE-2011-0411's class: the injected USER/PASS are never commands.
    out = outputs(session, b"USER bob\r\nSTLS\r\nUSER alice\r\nPASS secret\r\nSTAT")
    assert out == [R.ok(R.PASSWORD_REQUIRED, user="bob"), R.ok(R.STLS_OK), START_TLS]
    assert session.state == "auth1" and session.user is None and session.tls_active
    assert any("Dropped 29 bytes sent before the TLS handshake" in t for t in log.texts())
    assert outputs(session, b"\r\nSTAT\r\n") == [
        R.err(R.UNKNOWN_COMMAND, command=""), R.err(R.UNKNOWN_COMMAND, command="stat")]
    assert b"STLS" not in b"".join(outputs(session, b"CAPA\r\n"))
    assert outputs(session, b"STLS\r\n") == [R.err(R.TLS_IN_PROGRESS)]
    assert outputs(session, b"USER alice\r\n")[0].startswith(b"+OK")


def test_stls_is_not_offered_with_implicit_tls(make_session):
    settings = Settings()
    settings.tls_mode = TLS_ALTERNATE_PORT
    session, _ = make_session(settings)
    session.tls_started()
    assert b"STLS" not in b"".join(outputs(session, b"CAPA\r\n"))
    assert outputs(session, b"STLS\r\n") == [R.err(R.STLS_NOT_ENABLED)]


def test_p4_allows_clear_text_passwords_only_under_tls(make_session):
    settings = Settings()
    settings.tls_mode, settings.clear_text_password = TLS_STLS, 4
    session, _ = make_session(settings, mail=b"")
    assert session.clear_text_refusal() == R.NEED_TLS
    capa = b"".join(outputs(session, b"CAPA\r\n"))
    assert b"\r\nUSER\r\n" not in capa and b"SASL" not in capa   # nor PLAIN, nor LOGIN
    assert outputs(session, b"USER alice\r\n") == [R.err(R.NEED_TLS)]
    outputs(session, b"STLS\r\n")
    assert session.clear_text_refusal() is None
    capa = b"".join(outputs(session, b"CAPA\r\n"))
    assert b"\r\nUSER\r\n" in capa and b"\r\nSASL PLAIN LOGIN\r\n" in capa
    assert outputs(session, b"USER alice\r\nPASS secret\r\n")[1].startswith(b"+OK alice has")


# --- the settings and the context ------------------------------------------------------

def test_p4_is_refused_at_start_up_without_tls():
    assert cli.P4_WITHOUT_TLS in cli.check(cli.parse(["-p", "4"])[0])
    assert cli.P4_WITHOUT_TLS not in cli.check(cli.parse(["-l", "1", "-p", "4"])[0])
    assert cli.P4_WITHOUT_TLS not in cli.check(settings_of("set tls-support = alternate-port",
                                                           "set clear-text-password = tls"))


def test_tls_min_version_takes_the_names_only():
    assert Settings().tls_min_version == "TLSv1.2"
    assert settings_of("set tls-min-version = tlsv1.3").tls_min_version == "TLSv1.3"
    with pytest.raises(ConfigError):
        settings_of("set tls-min-version = SSLv3")


def served(context, client_context) -> ssl.SSLObject:
    """A handshake between the two contexts in memory: the client's end."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = context.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_context.wrap_bio(bios[2], bios[3], server_hostname="127.0.0.1")
    for _ in range(10):
        for end in (client, server):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
    return client


def test_the_context_serves_a_certificate_the_ca_vouches_for(ca):
    context = tls.make_context(settings_of(*ca.config_lines()))
    client = served(context, ca.client_context())
    assert client.version() in ("TLSv1.2", "TLSv1.3")
    assert ca.serial_of(ca.cert) == int(client.getpeercert()["serialNumber"], 16)


@pytest.mark.skipif(not hasattr(ssl, "TLSVersion"), reason="Python 3.7's maximum_version")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_and_older_are_refused_unless_asked_for(ca):
    old = ca.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        served(tls.make_context(settings_of(*ca.config_lines())), old)
    new_only = tls.make_context(settings_of(*ca.config_lines(), "set tls-min-version = TLSv1.3"))
    tls12 = ca.client_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        served(new_only, tls12)


def test_a_chain_file_completes_the_chain(ca, tmp_path):
    cert, key = ca.issue("chained", chained=True)
    lines = ca.config_lines(cert=cert, key=key)
    with pytest.raises(ssl.SSLError):       # the leaf alone: the client cannot verify it
        served(tls.make_context(settings_of(*lines)), ca.client_context())
    context = tls.make_context(settings_of(*lines, "set tls-chain-file = %s" % ca.intermediate))
    assert served(context, ca.client_context()).getpeercert()
    assert not list(pathlib.Path(tempfile.gettempdir()).glob("popper-chain-*"))


def test_an_encrypted_key_needs_its_passphrase_and_is_never_prompted_for(ca, tmp_path):
    key = tmp_path / "encrypted.key"
    subprocess.run([ca.openssl, "pkey", "-in", str(ca.key), "-aes256", "-passout",
                    "pass:sesame", "-out", str(key)], check=True)
    lines = ca.config_lines(key=key)
    with pytest.raises(tls.TLSConfigError):
        tls.make_context(settings_of(*lines))
    with pytest.raises(tls.TLSConfigError):
        tls.make_context(settings_of(*lines, "set tls-passphrase = wrong"))
    assert tls.make_context(settings_of(*lines, "set tls-passphrase = sesame"))


@pytest.mark.parametrize("line,reason", [
    ("set tls-server-cert-file = /nonexistent.pem", "/nonexistent.pem"),
    ("set tls-cipher-list = NO-SUCH-CIPHER", "tls-cipher-list"),
])
def test_unusable_settings_say_why(ca, line, reason):
    with pytest.raises(tls.TLSConfigError) as caught:
        tls.make_context(settings_of(*ca.config_lines(), line))
    assert reason in caught.value.args[0]


def test_a_python_without_ssl_is_a_start_up_refusal(ca, monkeypatch):
    monkeypatch.setitem(sys.modules, "ssl", None)          # import ssl: ImportError
    with pytest.raises(tls.TLSConfigError) as caught:
        tls.make_context(settings_of(*ca.config_lines()))
    assert "has no ssl module" in caught.value.args[0]


def test_qpoppers_identity_file_and_default(ca):
    assert tls.certificate_file(Settings()) == "/etc/mail/certs/identity.crt"
    both = pathlib.Path(str(ca.cert) + ".both")
    both.write_bytes(ca.cert.read_bytes() + ca.key.read_bytes())
    settings = settings_of("set tls-support = STLS", "set tls-identity-file = %s" % both)
    assert served(tls.make_context(settings), ca.client_context()).getpeercert()


def test_what_cannot_be_had_is_warned_about(ca):
    found = tls.warnings(settings_of(*ca.config_lines(), "set tls-version = SSLv3",
                                     "set tls-options = 8"))
    assert any("SSL 3.0" in w for w in found) and any("tls-options 8" in w for w in found)


def test_a_key_others_may_read_is_warned_about(ca, tmp_path):
    key = tmp_path / "key.pem"
    key.write_bytes(ca.key.read_bytes())
    for mode, warned in ((0o600, False), (0o640, False), (0o644, True), (0o660, True)):
        key.chmod(mode)
        found = tls.warnings(settings_of(*ca.config_lines(key=key)))
        assert any("may be read or changed by others" in w for w in found) == warned, mode


# --- the real program --------------------------------------------------------------------

COUNT = 3


@pytest.fixture(scope="module")
def host(ca):
    base = pathlib.Path(tempfile.mkdtemp(prefix="popper-tls-", dir="/tmp"))
    mailhost = MailHost(base)
    mailhost.messages = list(corpus.messages(COUNT, seed=2595))
    for user in ("alice", "bob"):
        mailhost.deliver(corpus.mbox_bytes(mailhost.messages), user)
    yield mailhost
    shutil.rmtree(base, ignore_errors=True)


def _server(host, name, *lines):
    config = host.base / (name + ".conf")
    trace = host.base / (name + ".trace")
    config.write_text(host.config.read_text() + "\n".join(lines) + "\n")
    server = Standalone([sys.executable, "-m", "popper", "-f", str(config), "-T", "60",
                         "-t", str(trace)])
    server.trace = trace
    return server


@pytest.fixture(scope="module")
def stls(host, ca):
    """STLS offered, clear-text passwords only under TLS (-p 4)."""
    server = _server(host, "stls", *ca.config_lines("STLS"), "set clear-text-password = tls")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pop3s(host, ca):
    server = _server(host, "pop3s", *ca.config_lines("alternate-port"))
    yield server
    server.stop()


@pytest.fixture
def work(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


def message_ids(host) -> set:
    return {m.message_id for m in host.messages}


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def lines_of(sock, count: int) -> list:
    data = b""
    while data.count(b"\r\n") < count:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data.split(b"\r\n")[:count]


@pytest.mark.clients
def test_poplib_stls_with_a_verifying_context(host, stls, ca):
    pop = poplib.POP3("127.0.0.1", stls.port, timeout=30)
    assert "STLS" in pop.capa() and "USER" not in pop.capa()
    with pytest.raises(poplib.error_proto) as refused:
        pop.user("alice")
    assert refused.value.args[0] == R.err(R.NEED_TLS)[:-2]
    assert pop.stls(context=ca.client_context()) == b"+OK " + R.STLS_OK.encode()
    assert "STLS" not in pop.capa() and "USER" in pop.capa()
    assert ca.serial_of(ca.cert) == int(pop.sock.getpeercert()["serialNumber"], 16)
    pop.user("alice")
    assert pop.pass_("secret").startswith(b"+OK alice has %d visible" % COUNT)
    ids = {C.message_id(b"\n".join(pop.retr(n)[1]) + b"\n") for n in range(1, COUNT + 1)}
    assert ids == message_ids(host)
    assert pop.quit().startswith(b"+OK")


@pytest.mark.clients
@pytest.mark.parametrize("mode", ["STLS", "alternate-port"])
def test_one_process_does_tls_without_a_login_process(host, ca, mode):
    """login-user none (or popper not root): TLS in the session's one process."""
    server = _server(host, "single-" + mode, *ca.config_lines(mode), "set login-user = none")
    try:
        if mode == "STLS":
            pop = poplib.POP3("127.0.0.1", server.port, timeout=30)
            pop.stls(context=ca.client_context())
        else:
            pop = poplib.POP3_SSL("127.0.0.1", server.port, context=ca.client_context(),
                                  timeout=30)
        assert "STLS" not in pop.capa()
        pop.user("alice")
        assert pop.pass_("secret").startswith(b"+OK alice has %d visible" % COUNT)
        ids = {C.message_id(b"\n".join(pop.retr(n)[1]) + b"\n") for n in range(1, COUNT + 1)}
        assert ids == message_ids(host)
        assert pop.quit().startswith(b"+OK")
    finally:
        server.stop()


@pytest.mark.clients
def test_poplib_pop3_ssl_with_a_verifying_context(host, pop3s, ca):
    pop = poplib.POP3_SSL("127.0.0.1", pop3s.port, context=ca.client_context(), timeout=30)
    assert pop.getwelcome().startswith(b"+OK QPOP")
    assert "STLS" not in pop.capa()
    pop.user("bob")
    assert pop.pass_("hunter2").startswith(b"+OK bob has")
    assert pop.stat()[0] == COUNT
    assert pop.quit().startswith(b"+OK")


@pytest.mark.clients
def test_under_inetd_l2_after_a_config_file_with_stls_is_pop3s(host, ca):
    """As the README's pop3s line: -l 2 after -f overrides its tls-support."""
    config = host.base / "inetd.conf"
    config.write_text(host.config.read_text() + "\n".join(ca.config_lines("STLS")) + "\n")
    inetd = TcpInetd([sys.executable, "-m", "popper", "-s", "-f", str(config), "-l", "2"])
    try:
        pop = poplib.POP3_SSL("127.0.0.1", inetd.port, context=ca.client_context(), timeout=30)
        assert "STLS" not in pop.capa()
        pop.user("alice")
        assert pop.pass_("secret").startswith(b"+OK alice has %d visible" % COUNT)
        assert pop.quit().startswith(b"+OK")
    finally:
        inetd.close()


@pytest.mark.clients
def test_plaintext_pipelined_behind_stls_is_never_executed(host, stls, ca):
    start = len(stls.trace.read_text())
    sock = raw(stls.port)
    assert lines_of(sock, 1)[0].startswith(b"+OK")
    sock.sendall(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert lines_of(sock, 1) == [b"+OK STLS"]
    secure = ca.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
    secure.sendall(b"STAT\r\nSTLS\r\nQUIT\r\n")
    assert lines_of(secure, 3) == [R.err(R.UNKNOWN_COMMAND, command="stat")[:-2],
                                   R.err(R.TLS_IN_PROGRESS)[:-2],
                                   R.ok(R.SIGN_OFF, host=socket.gethostname())[:-2]]
    secure.close()
    trace = stls.trace.read_text()[start:]
    assert "Dropped 25 bytes sent before the TLS handshake" in trace
    assert 'Received: "USER alice"' not in trace


@pytest.mark.clients
def test_a_failed_handshake_is_logged_and_ends_cleanly(host, stls):
    sock = raw(stls.port)
    lines_of(sock, 1)
    sock.sendall(b"STLS\r\n")
    assert lines_of(sock, 1) == [b"+OK STLS"]
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert sock.recv(4096) == b""               # logged before the connection closes
    sock.close()
    trace = stls.trace.read_text()
    failed = [line for line in trace.splitlines() if "TLS/SSL Handshake failed: " in line]
    assert any(line.endswith("TLS/SSL Handshake failed: http request; client 127.0.0.1 "
                             "(127.0.0.1)") for line in failed), failed
    assert "Traceback" not in trace and "aborted" not in trace


@pytest.mark.clients
def test_implicit_tls_handshake_has_a_deadline(host, ca):
    server = _server(host, "deadline", *ca.config_lines("alternate-port"),
                     "set login-timeout = 1")
    try:
        sock = raw(server.port)
        started = time.monotonic()
        assert sock.recv(10) == b""                 # no greeting before TLS, then the end
        assert time.monotonic() - started < 10
    finally:
        server.stop()
    assert "TLS/SSL Handshake failed: timed out; client 127.0.0.1" in server.trace.read_text()


def children_of(pid: int) -> list:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path("/proc/%s/stat" % entry).read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.root
@pytest.mark.clients
@pytest.mark.skipif(not IS_ROOT, reason="privilege separation needs root")
@pytest.mark.parametrize("kind", ["stls", "pop3s"])
def test_the_process_doing_tls_is_not_root(request, host, ca, kind):
    server = request.getfixturevalue(kind)
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    pop = (poplib.POP3_SSL("127.0.0.1", server.port, context=ca.client_context(), timeout=30)
           if kind == "pop3s" else poplib.POP3("127.0.0.1", server.port, timeout=30))
    if kind == "stls":
        pop.stls(context=ca.client_context())
    pop.capa()
    (session,) = children_of(server.process.pid)
    (login,) = children_of(session)
    assert process_ids(session)["Uid"] == ["0"] * 4
    assert process_ids(login)["Uid"] == [nobody] * 4
    pop.user("alice")
    pop.pass_("secret")
    assert pop.stat()[0] == COUNT
    # After the login: the session is the user, the relay still nobody.
    assert children_of(session) == [login]
    assert process_ids(login)["Uid"] == [nobody] * 4
    assert process_ids(session)["Uid"] == [str(os.stat(host.spool("alice")).st_uid)] * 4
    big = pop.retr(1)
    assert C.message_id(b"\n".join(big[1]) + b"\n") in message_ids(host)
    pop.quit()


@pytest.mark.clients
def test_a_client_gone_mid_session_ends_the_session_and_the_relay(host, pop3s, ca):
    pop = poplib.POP3_SSL("127.0.0.1", pop3s.port, context=ca.client_context(), timeout=30)
    pop.user("bob")
    pop.pass_("hunter2")
    pop.file.close()
    pop.sock.close()                            # no QUIT: the relay passes the end on
    deadline = time.monotonic() + 20
    while children_of(pop3s.process.pid):
        assert time.monotonic() < deadline, "the session or its relay is still there"
        time.sleep(0.01)
    again = poplib.POP3_SSL("127.0.0.1", pop3s.port, context=ca.client_context(), timeout=30)
    again.user("bob")
    assert again.pass_("hunter2").startswith(b"+OK bob has %d visible" % COUNT)
    again.quit()


@pytest.mark.slow
@pytest.mark.clients
def test_a_client_that_stops_reading_ends_session_and_relay_by_write_timeout(host, ca):
    """The relay waits write-timeout for the client to take bytes, as the
    session does: a client that asks for 32 MB and reads none of it holds
    neither process."""
    line = b"x" * 76 + b"\n"
    host.deliver(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: big\n\n"
                 + line * (32 * 1024 * 1024 // len(line)), "carol")
    server = _server(host, "stalled", *ca.config_lines("alternate-port"),
                     "set write-timeout = 1")
    try:
        sock = ca.client_context().wrap_socket(raw(server.port), server_hostname="127.0.0.1")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        lines_of(sock, 1)
        sock.sendall(b"USER carol\r\nPASS pass word\r\nRETR 1\r\n")
        started = time.monotonic()
        while children_of(server.process.pid):
            assert time.monotonic() - started < 30, "a process waits for the client still"
            time.sleep(0.05)
        sock.close()
        # Whichever gives up first: the session (its write-timeout) or the
        # relay (its own), which ends the session as a hangup.
        trace = server.trace.read_text()
        assert ("Timeout (1 secs) during nw write" in trace
                or "carol at 127.0.0.1 (127.0.0.1): -ERR POP hangup from" in trace), trace
        pop = poplib.POP3_SSL("127.0.0.1", server.port, context=ca.client_context(), timeout=30)
        pop.user("carol")
        assert pop.pass_("pass word").startswith(b"+OK carol has 1 visible")
        pop.quit()
    finally:
        server.stop()


@pytest.mark.clients
def test_curl_over_stls_and_pop3s(host, stls, pop3s, ca, work):
    curl = [C.need("curl"), "-q", "-sS", "--noproxy", "*", "--cacert", str(ca.root),
            "-u", "alice:secret"]
    listing = C.run(curl + ["--ssl-reqd", "pop3://127.0.0.1:%d/" % stls.port], work)
    assert listing.stdout.count(b"\r\n") == COUNT
    plain = C.run(curl + ["--ssl-reqd", "--login-options", "AUTH=PLAIN",
                          "pop3://127.0.0.1:%d/1" % stls.port], work)
    assert C.message_id(C.from_wire(plain.stdout)) in message_ids(host)
    one = C.run(curl + ["pop3s://127.0.0.1:%d/2" % pop3s.port], work)
    assert C.message_id(C.from_wire(one.stdout)) in message_ids(host)
    refused = C.run(curl[:5] + ["--ssl-reqd", "-u", "alice:secret",
                                "pop3://127.0.0.1:%d/" % stls.port], work, ok=(60,))
    assert b"certificate" in refused.stderr          # the system's CAs do not vouch for it


@pytest.mark.clients
@pytest.mark.parametrize("ssl_options", [
    "sslproto TLS1.2+ sslcertck sslcertfile {ca}",
    "sslcertfile {ca}",                     # fetchmail's defaults: STLS when offered, checked
])
def test_fetchmail_sslcertck_over_stls(host, stls, ca, work, ssl_options):
    binary = C.need("fetchmail")
    rc = work / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        'poll "127.0.0.1" with proto POP3 port %d auth password timeout 30\n'
        '  user "alice" there with password "secret" is "root" here\n'
        "  options keep fetchall no rewrite %s\n"
        '  mda "%s"\n' % (stls.port, ssl_options.format(ca=ca.root), C.file_mda(work / "out")))
    os.chmod(rc, 0o600)
    result = C.run([binary, "-v", "-f", str(rc), "--idfile", str(work / "ids"),
                    "--pidfile", str(work / "pid"), "--invisible"], work,
                   extra_env={"FETCHMAILHOME": str(work)})
    assert b"upgrade to TLS succeeded" in result.stderr + result.stdout
    got = {C.message_id(m) for m in C.read_outputs(work / "out")}
    assert got == message_ids(host)


@pytest.mark.clients
@pytest.mark.parametrize("starttls", ["on", "off"])
def test_mpop_with_its_trust_file(host, stls, pop3s, ca, work, starttls):
    server = stls if starttls == "on" else pop3s
    C.run([C.need("mpop"), "--host=127.0.0.1", "--port=%d" % server.port, "--user=bob",
           "--passwordeval=echo hunter2", "--auth=user", "--tls=on",
           "--tls-starttls=%s" % starttls, "--tls-trust-file=%s" % ca.root, "--keep=on",
           "--only-new=off", "--received-header=off", "--uidls-file=%s" % (work / "uidls"),
           "--delivery=mda,%s" % C.file_mda(work / "out"), "--timeout=30"], work)
    got = {C.message_id(C.from_wire(m) if b"\r\n" in m else m)
           for m in C.read_outputs(work / "out")}
    assert got == message_ids(host)


@pytest.mark.clients
def test_mutt_with_debians_configuration_fetches_over_stls(host, stls, ca, work):
    """Debian's /etc/Muttrc and mutt's defaults (ssl_starttls, certificate
    checks), told only where the server, the CA and the mailbox are."""
    C.need("mutt")
    script = C.need("script")
    muttrc = work / "muttrc"
    muttrc.write_text('set pop_host="pop://alice@127.0.0.1:%d"\nset pop_pass="secret"\n'
                      'set ssl_ca_certificates_file="%s"\nset pop_delete=no\n'
                      'set spoolfile="%s"\nset mbox_type=mbox\nset folder="%s"\n'
                      'set quit=yes\nset move=no\n'
                      % (stls.port, ca.root, work / "inbox", work))
    before = stls.trace.read_text().count('Received: "STLS"')
    C.run([script, "-qfec", "mutt -F %s -e 'push <fetch-mail><quit>'" % muttrc, "/dev/null"],
          work, extra_env={"TERM": "xterm"})
    assert stls.trace.read_text().count('Received: "STLS"') == before + 1
    inbox = (work / "inbox").read_bytes()
    assert {mid for mid in message_ids(host) if b"<" + mid + b">" in inbox} == message_ids(host)


@pytest.mark.clients
def test_a_renewed_certificate_is_served_after_sighup(host, ca, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(str(ca.cert), str(cert))
    shutil.copy(str(ca.key), str(key))
    server = _server(host, "reload", *ca.config_lines("alternate-port", cert=cert, key=key))
    try:
        def serial():
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                with ca.client_context().wrap_socket(sock, server_hostname="127.0.0.1") as s:
                    return int(s.getpeercert()["serialNumber"], 16)

        def after_sighup(want):
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while serial() != want:
                assert time.monotonic() < deadline, "still the old certificate"
        assert serial() == ca.serial_of(ca.cert)
        renewed, renewed_key = ca.issue("renewed")
        shutil.copy(str(renewed), str(cert))
        shutil.copy(str(renewed_key), str(key))
        after_sighup(ca.serial_of(renewed))
        cert.write_text("not a certificate\n")          # a bad one: the renewed one stays
        server.process.send_signal(signal.SIGHUP)
        assert serial() == ca.serial_of(renewed)        # accepted after the signal's handler
        assert "the certificate loaded before is kept" in server.trace.read_text()
    finally:
        server.stop()


@pytest.mark.clients
def test_inetd_start_up_without_tls_never_imports_ssl(host, ca):
    """The ssl module is loaded only when TLS is configured."""
    probe = ("import sys\n"
             "from popper import cli\n"
             "report = sys.argv.pop(1)\n"
             "status = cli.main(['popper'] + sys.argv[1:])\n"
             "open(report, 'w').write('ssl' if 'ssl' in sys.modules else 'none')\n")
    report = host.base / "probe.report"
    for lines, want in (([], "none"), (ca.config_lines(), "ssl")):
        config = host.base / "probe.conf"
        config.write_text(host.config.read_text() + "\n".join(lines) + "\n")
        ours, theirs = socket.socketpair()
        process = subprocess.Popen([sys.executable, "-c", probe, str(report), "-f", str(config)],
                                   stdin=theirs, stdout=theirs)
        theirs.close()
        ours.settimeout(30)
        assert ours.recv(4096).startswith(b"+OK")
        ours.sendall(b"QUIT\r\n")
        assert process.wait(30) == 0
        assert report.read_text() == want
        ours.close()
