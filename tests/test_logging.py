"""What popper sends to syslog, read off the socket glibc's syslog() writes to."""

import re

import pytest

from conftest import corpus

pytestmark = [pytest.mark.root, pytest.mark.clients]

MAIL = corpus.mbox_bytes(list(corpus.messages(3, seed=31)))
LOCAL1, LOCAL3, NOTICE, DEBUG = 17, 19, 5, 7


def session(mailhost, syslog, *args, script=("DELE 2", "QUIT")):
    from conftest import start_inetd
    mailhost.deliver(MAIL)
    conv = start_inetd(syslog.wrap(mailhost.command(*args)))
    conv.cmd("BOGUS %s%n")
    conv.login()
    replies = [conv.cmd(line) for line in script]
    conv.close()
    return conv, replies, syslog.collect()


def test_ident_pid_facility_and_err_lines(mailhost, syslog):
    conv, _, records = session(mailhost, syslog)
    pid = conv.process.pid
    errs = [(f, p, t) for f, p, t in records if "-ERR" in t]
    assert [(f, p) for f, p, _ in errs] == [(LOCAL1, NOTICE)]
    assert re.fullmatch(r'\w{3} [ \d]\d \d\d:\d\d:\d\d popper\[%d\]: \(null\) at 127\.0\.0\.1 '
                        r'\(127\.0\.0\.1\): -ERR Unknown command: "bogus"\.' % pid, errs[0][2])


def test_y_chooses_the_facility(mailhost, syslog):
    _, _, records = session(mailhost, syslog, "-y", "local3")
    assert records and {f for f, _, _ in records} == {LOCAL3}


def test_s_logs_the_stats_line(mailhost, syslog):
    _, replies, records = session(mailhost, syslog, "-s")
    assert replies[-1].startswith(b"+OK Pop server at")
    stats = [t for _, _, t in records if "Stats:" in t]
    sizes = [len(m.data.replace(b"\n", b"\r\n")) + 30 for m in corpus.messages(3, seed=31)]
    assert len(stats) == 1 and stats[0].endswith(
        "Stats: alice 1 %d 2 %d 127.0.0.1 127.0.0.1" % (sizes[1], sizes[0] + sizes[2]))


def test_d_logs_commands_at_debug_without_the_password(mailhost, syslog):
    _, _, records = session(mailhost, syslog, "-d")
    debug = [t for f, p, t in records if p == DEBUG]
    assert any(t.endswith('Received: "DELE 2"') for t in debug)
    assert any(t.endswith('Received: "PASS xxxxxxxxx"') for t in debug)
    assert not any("secret" in t for _, _, t in records)


def test_reverse_lookup_names_the_client_unless_r(mailhost, syslog):
    mailhost.write_config("reset reverse-lookup")   # lookups on: Qpopper's sense
    _, _, records = session(mailhost, syslog)
    assert any("(null) at localhost (127.0.0.1): -ERR" in t for _, _, t in records)
    syslog.records.clear()
    _, _, records = session(mailhost, syslog, "-R")
    assert any("(null) at 127.0.0.1 (127.0.0.1): -ERR" in t for _, _, t in records)


def test_refusing_to_start_is_logged_too(mailhost, syslog):
    import subprocess
    result = subprocess.run(syslog.wrap(mailhost.command("-k")), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            timeout=30)
    assert result.returncode == 1
    assert any(p == 3 and t.endswith("-k / -K: Kerberos support is not built")
               for _, p, t in syslog.collect())

