"""Every line popper logs, its exact text and priority (issue 12: findings 3
and 10, "What to build" 4).

The sessions run popper in inetd mode and read what it sends to /dev/log
(conftest.SyslogCapture), several lines a session.  Each expected line
names where Qpopper writes it (qpopper-behaviour.md §10 and the 4.0.x
source file), or says it is popper's own; popper's own lines are listed in
docs/deviations.md ("Log lines"), which test_every_log_call_is_listed checks.
"""

import pathlib
import re
import socket
import time

import pytest

from conftest import ROOT, corpus, start_inetd

from popper import __version__, log as plog

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=12)))
NOTICE, WARNING, DEBUG = 5, 4, 7
LOCAL1 = 17
PEER = "127.0.0.1 (127.0.0.1)"         # the client as pop_msg.c prints it: host (ip), -R


def _drain(syslog) -> None:
    """Take what has arrived now: the socket queues only ~10 datagrams
    (net.unix.max_dgram_qlen), and popper drops what does not fit."""
    while True:
        try:
            data = syslog.sock.recv(65536, socket.MSG_DONTWAIT).decode("utf-8", "replace")
        except (BlockingIOError, socket.timeout):
            return
        pri, _, rest = data[1:].partition(">")
        syslog.records.append((int(pri) // 8, int(pri) % 8, rest))


def _cmd(conv, syslog, line: str) -> bytes:
    reply = conv.cmd(line)
    _drain(syslog)
    return reply


def _lines(records, pid):
    """(priority, message) of each record popper's session sent."""
    out = []
    for facility, priority, text in records:
        head, _, message = text.partition(": ")
        assert head.endswith("popper[%d]" % pid), text          # one pid a session
        assert facility == LOCAL1, text
        out.append((priority, message))
    return out


@pytest.mark.root
@pytest.mark.clients
def test_a_session_logs_qpoppers_lines(mailhost, syslog):
    """Failed logins of three kinds, a long name, a long line, a login, a
    DELE and an end of file: every line in order, as Qpopper writes it."""
    denied = mailhost.base / "nonauth"
    denied.write_text("bob\n")
    mailhost.write_config("set nonauth-file = %s" % denied)
    mailhost.deliver(MAIL)
    conv = start_inetd(syslog.wrap(mailhost.command("-s", "-d")))
    pid = conv.process.pid
    replies = [_cmd(conv, syslog, line) for line in (
        "BOGUS", "USER " + "x" * 70, "USER alice", "PASS wrong", "USER mallory", "PASS nope",
        "A" * 3000, "USER bob", "PASS hunter2", "USER alice", "PASS secret", "DELE 1")]
    assert replies[-2].startswith(b"+OK alice has 3 visible messages")
    conv.close()                                            # no QUIT: end of file
    err = [r.decode().rstrip("\r\n") for r in replies if r.startswith(b"-ERR")]
    assert len(err) == 5, replies
    sizes = [len(m.data.replace(b"\n", b"\r\n")) + 30 for m in corpus.messages(3, seed=12)]
    lines = _lines(syslog.collect(), pid)
    assert [(p, m) for p, m in lines if p != DEBUG] == [
        # pop_msg.c: every -ERR, with "(null)" before any USER
        (NOTICE, '(null) at %s: -ERR Unknown command: "bogus".' % PEER),
        # pop_user.c
        (WARNING, "Excessive user name length (70); truncated to 64: " + "x" * 64),
        # popper's reason line (Qpopper writes this shape only in its AIX
        # branch of pop_pass.c), pop_msg.c's -ERR with the user (finding 3:
        # not "(null)"), then pop_pass.c's line (finding 10: no suffix)
        (NOTICE, "Authentication failed for user alice: wrong password"),
        (NOTICE, "alice at %s: %s" % (PEER, err[1])),
        (NOTICE, "[AUTH] Failed attempted login to alice from host (127.0.0.1) 127.0.0.1"),
        (NOTICE, "Authentication failed for user mallory: no such user"),
        (NOTICE, "mallory at %s: %s" % (PEER, err[2])),
        (NOTICE, "[AUTH] Failed attempted login to mallory from host (127.0.0.1) 127.0.0.1"),
        # popper.c getline(): the user is the last name given to USER
        (NOTICE, "Excessive input from mallory 127.0.0.1 (127.0.0.1); discarded 3002 bytes"),
        (NOTICE, "mallory at %s: %s" % (PEER, err[3])),
        # popper's own (Qpopper checks the lists before the password, silently)
        (NOTICE, '[AUTH] "bob" is listed in %s' % denied),
        (NOTICE, "bob at %s: %s" % (PEER, err[4])),
        # popper.c pop_exit(), then pop_updt.c's Stats line (update on abort)
        (NOTICE, "alice at %s: -ERR POP EOF or I/O Error" % PEER),
        (NOTICE, "Stats: alice 1 %d 2 %d 127.0.0.1 127.0.0.1"
         % (sizes[0], sizes[1] + sizes[2])),
    ]
    assert err[1] == '-ERR [AUTH] Password supplied for "alice" is incorrect.'
    debug = [m for p, m in lines if p == DEBUG]
    # popper.c: the start of a session; the command trace, PASS masked
    assert debug[0] == '(v%s) Servicing request from "127.0.0.1" at 127.0.0.1' % __version__
    assert 'Received: "BOGUS"' in debug and 'Received: "DELE 1"' in debug
    assert debug.count('Received: "PASS xxxxxxxxx"') == 4
    assert not any("wrong" in m or "hunter2" in m for m in debug)


@pytest.mark.root
@pytest.mark.clients
def test_a_timeout_before_user_prints_no_user_and_the_err_says_null(mailhost, syslog):
    """popper.c tgetline() prints p->user as it is (nothing before USER),
    pop_msg.c prints "(null)"; the trace file (-t) gets both lines, each
    stamped as pop_log.c stamps it: ctime() without the weekday, the day
    padded with a space, milliseconds, the year."""
    trace = mailhost.base / "trace"
    conv = start_inetd(syslog.wrap(mailhost.command("-T", "1", "-t", str(trace))))
    pid = conv.process.pid
    got = conv.sock.recv(4096)
    while not got.endswith(b"signing off.\r\n"):
        more = conv.sock.recv(4096)
        if not more:
            break
        got += more
    conv.close()
    timeout_err = got.split(b"\r\n")[0].decode()
    assert timeout_err.startswith("-ERR POP timeout from ")
    expected = [
        (NOTICE, "(v%s) Timeout (1 secs) during nw read from  at %s" % (__version__, PEER)),
        (NOTICE, "(null) at %s: %s" % (PEER, timeout_err)),
    ]
    assert [(p, m) for p, m in _lines(syslog.collect(), pid) if p != DEBUG] == expected
    stamped = [line for line in trace.read_text().splitlines() if "timeout" in line.lower()]
    assert len(stamped) == 2
    stamp = re.fullmatch(r"(\w{3} [ \d]\d \d\d:\d\d:\d\d)\.\d{3} (\d{4}) \[%d\] (.*)" % pid,
                         stamped[0])
    assert stamp and stamp.group(3) == expected[0][1]


def test_the_trace_stamp_pads_the_day_with_a_space(tmp_path, monkeypatch):
    """pop_log.c takes ctime(): "Dec  2 07:08:09", not strftime's "Dec 02"."""
    now = time.mktime((2026, 12, 2, 7, 8, 9, 0, 0, -1)) + 0.25
    monkeypatch.setattr(plog.time, "time", lambda: now)
    log = plog.Log("popper", tracefile=str(tmp_path / "trace"))
    try:
        log.notice("a line")
    finally:
        log.close()
    assert (tmp_path / "trace").read_text() == "Dec  2 07:08:09.250 2026 [%d] a line\n" % (
        __import__("os").getpid())


# --- every log call is accounted for -------------------------------------------------------

# The start of each message popper logs (its format, as written in popper/),
# and where it comes from: a Qpopper source file (the line is Qpopper's), or
# "popper" with the words docs/deviations.md lists it by.  The tests that
# check each line's text: this file, or the one named.
LINES = {
    "%s at %s (%s): %s": "pop_msg.c (log.err_line)",
    "[AUTH] Failed attempted login to %s from host (%s) %s": "pop_pass.c",
    "Authentication failed for user %s: %s": "pop_pass.c (AIX)",
    "Excessive input from %s %s (%s); discarded %d bytes": "popper.c",
    "Excessive user name length (%d); truncated to %d: %s": "pop_user.c",
    'apop "%s"': "pop_apop.c",
    'popauth: user "%s" deleted by "%s" from db "%s"': "popauth.c",
    'popauth: user "%s" removed existing db "%s"': "popauth.c",
    'popauth: user "%s" initialized db "%s"': "popauth.c",
    "popauth: %s %s only APOP password for %s": "popauth.c",
    "Stats: %s %d %d %d %d %s %s": "pop_updt.c",
    "(v%s) Timeout (%d secs) during %s from %s at %s (%s)": "popper.c",
    'Received: "PASS xxxxxxxxx"': "popper.c (2.x)",
    'Received: "%s"': "popper.c (2.x)",
    '(v%s) Servicing request from \\"%s\\" at %s': "pop_init.c",
    "(v%s) Unable to get canonical name of client %s: %s (%d)": "pop_init.c",
    'Client at "%s" resolves to an unknown host name "%s"': "pop_init.c",
    'Client address "%s" not listed for its host name "%s"': "pop_init.c",
    "Unable to open temporary drop %s: %s (%d)": "popper: Unable to open temporary drop",
    "Unable to open configuration file %s: %s (%d)": "pop_config.c",
    "Unable to process %s options file for user %s": "pop_config.c",
    # popper's own (docs/deviations.md, "Log lines")
    "Refused %s options file %s: %s": "popper: options file",
    '[AUTH] "%s" is %s %s': "popper: is listed in",
    '[AUTH] "%s" may not log in as "%s": ': "popper: may not log in as",
    '"%s" logs in as "%s" (sasl-proxy-file)': "popper: logs in as",
    'Received: "AUTH %s xxxxxxxxx"': "popper: AUTH's initial response masked",
    "Unable to read %s: %s; nobody may log in": "popper: nobody may log in",
    "the APOP database: %s": "popper: the APOP database",
    "APOP is off for this session: %s": "popper: APOP is off",
    "Unable to read the shadow entry of %s: %s (%d); is popper root?": "popper: shadow entry",
    "Unable to read the user database %s: %s (%d)": "popper: user database",
    "%s line %d: %s; line ignored": "popper: line ignored",
    "%s: %d bytes of %s are not mail popper can read; they are set aside in %s. ":
        "popper: set aside",
    "%s: update of %s failed: %s; the mail is in %s": "popper: the mail is in",
    "refused the spool %s (%s): owner uid %s, mode %s, %s links; popper runs as ":
        "popper: LOG_ALERT",
    "%s: finishing what an earlier session left in %s (%s)": "popper: finishing what",
    "%s: taking %d bytes left in %s by an earlier session first": "popper: bytes left",
    "%s: %s: %s": "popper: LOG_CRIT",
    "%s: could not empty %s after login: %s; the journal says what ": "popper: journal says",
    "%s: the update of %s is made, but tidying after it failed: %s; the next ":
        "popper: tidying",
    "%s: could not empty the spool after a failed update: %s; the next login ":
        "popper: journal says",
    "%s: could not undo the start of the update of %s: %s; the ":
        "popper: the next login makes the update",
    "%s: the update of %s failed (%s); trying again": "popper: trying again",
    "%s: the update of %s is made, but writing it into the spool ":
        "popper: writing it into the spool",
    "%s: the spool is as cached: using the cached message ": "popper: cache",
    "%s: %s cannot be served in place; normal mode for this session": "popper: in place",
    "%s: no cache for the next login: %s": "popper: cache",
    "login process failed: %r": "popper: internal error",
    "the login process %d did not exit; killed": "popper: internal error",
    "internal error in %s: %s": "popper: internal error",
    "login of %s failed: %s": "popper: internal error",
    "update of %s failed: %s": "popper: internal error",
    "session aborted: %s": "popper: internal error",
    "session process failed: %s": "popper: internal error",
    "accept: %s": "popper: internal error",
    "Refused %d connection%s%s: %s": "popper: Refused",
    "listening on %s port %d": "popper: listening on",
    "stopped accepting; waiting for %d session(s)": "popper: stopped accepting",
    # enforce-login-delay (tests/test_login_delay.py)
    "%s logged in %d seconds ago; login refused for %d more seconds ":
        "popper: login refused for",
    "login delay record %s of %s is %s; not believed": "popper: login delay record",
    "Unable to record the login of %s in %s: %s (%d); the next login ":
        "popper: Unable to record the login",
    "%s: announce-login-delay %s ignored: the enforced login delay is %d seconds":
        "popper: ignored: the enforced login delay",
    # TLS (tests/test_tls.py)
    "TLS/SSL Handshake failed: %s; client %s (%s)": "popper: TLS/SSL Handshake failed",
    "TLS: %s with %s (%s)": "popper: TLS: <version>",
    "Dropped %d bytes sent before the TLS handshake by %s (%s)": "popper: Dropped",
    "TLS: %s; the certificate loaded before is kept": "popper: the certificate loaded before",
    "TLS: reloaded the certificate %s": "popper: reloaded the certificate",
    "the TLS relay failed: %r": "popper: internal error",
    "the TLS relay %d did not exit": "popper: internal error",
    # bulletins (tests/test_bulletins.py)
    "Can't find '.' in bulletin name; delivering to all users: %.128s": "pop_bull.c",
    'Non-existent group "%.128s" in bulletin; bulletin omitted: %.128s': "pop_bull.c",
    "Unable to open bulletin directory '%.128s': %s (%d)": "pop_bull.c",
    "Bulletin %.128s skipped for %s: %s": "popper: skipped for",
    "Unable to read bulletin file %.128s: %s (%d)": "popper: Unable to read bulletin file",
    "[SYS/TEMP] Unable to copy bulletins to pop dropbox %s: %s (%d)":
        "popper: Unable to copy bulletins",
    "%s: recorded bulletin %d, delivered by an earlier session": "popper: recorded bulletin",
    "%s: %s; the new bulletins are taken out again": "popper: taken out again",
    "%s: no bulletins: %s": "popper: no bulletins",
    "%s: the old bulletin record is not used: %s": "popper: old bulletin record",
    "%s: bulletins not recorded: %s": "popper: not recorded",
    "%s: could not finish the bulletins' append to %s: %s; the journal ":
        "popper: journal says",
    "Unable to open the bulletin database %s: %s": "popper: Unable to open the bulletin database",
    'Pop transmit from "%s" on "%s"': "pop_xmit.c",
    "XTND XMIT by %s: %s": "popper: XTND XMIT by",
}
CALL = re.compile(r'(?:\blog\.(?:alert|critical|error|warning|notice|info|debug)\(\s*\(?\s*'
                  r'|def err_line\(.*?return )(["\'])(.*?)(?<!\\)\1', re.S)


def test_every_log_call_is_listed():
    """A log line added to popper/ without saying where it comes from
    fails here; each popper-only line is in docs/deviations.md."""
    found = set()
    for path in sorted((ROOT / "popper").rglob("*.py")):
        for match in CALL.finditer(path.read_text()):
            text = match.group(2)
            key = next((k for k in LINES if text.startswith(k) or k.startswith(text)), None)
            assert key, "%s: a log line not in LINES: %r" % (path.name, text)
            found.add(key)
    assert found == set(LINES), set(LINES) - found           # no stale entry
    deviations = (ROOT / "docs" / "deviations.md").read_text()
    log_section = deviations.split("## Log lines", 1)[1]
    for where in LINES.values():
        if where.startswith("popper: "):
            assert where[len("popper: "):] in log_section, where


def test_the_log_login_line_keeps_qpoppers_default_template():
    """pop_log.c do_log_login(): `(v%0) POP login by user "%1" at (%2) %3`."""
    assert plog.log_login_line(plog.LOG_LOGIN_TEMPLATE, "alice", "host.example",
                               "192.0.2.1") == (
        '(v%s) POP login by user "alice" at (host.example) 192.0.2.1' % __version__)


def test_deviations_names_this_test_file():
    assert "tests/test_log_lines.py" in pathlib.Path(ROOT / "docs" / "deviations.md").read_text()


def test_an_address_without_a_name_is_logged_with_h_errno(monkeypatch):
    """pop_init.c: `(v<V>) Unable to get canonical name of client <ip>:
    <hstrerror> (<h_errno>)` at DEBUG, and the IP serves as the name."""
    from conftest import RecordingLog
    from popper import greeting
    from popper.settings import Settings

    def unknown(ip):
        raise socket.herror(1, "Unknown host")
    monkeypatch.setattr(greeting.socket, "gethostbyaddr", unknown)
    settings, log = Settings(), RecordingLog()
    settings.reverse_lookup = True
    client = greeting.client_for("192.0.2.7", settings, log)
    assert (client.host, client.ip) == ("192.0.2.7", "192.0.2.7")
    assert log.lines == [("debug", "(v%s) Unable to get canonical name of client 192.0.2.7: "
                                   "Unknown host (1)" % __version__)]
