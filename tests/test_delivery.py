"""popper and real delivery agents from Debian on the same spool.

procmail (dot-lock made with link(), then an fcntl lock on the spool's
end) and liblockfile's dotlockfile with an fcntl-locked append (as
Postfix's local does: fcntl, then dot-lock) deliver while POP sessions log
in, delete and quit, in normal and in server mode.  Afterwards every
delivered message is in the spool exactly once, intact, and exactly the
deleted ones are gone.
"""

import collections
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

import mda
from conftest import IS_ROOT, TEST_GID, TEST_UID, corpus, start_inetd
from helpers import message_id, split_mbox

pytestmark = [pytest.mark.slow, pytest.mark.clients]

AGENT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/"}


def as_test_user():
    if IS_ROOT:
        os.setgroups([])
        os.setgid(TEST_GID)
        os.setuid(TEST_UID)


def procmail_agent(mailhost):
    if not shutil.which("procmail"):
        pytest.skip("procmail is not installed (tests/deps.sh installs it)")
    etc = mailhost.base / "etc"          # procmail wants its rcfile where others cannot write
    etc.mkdir()
    rc = etc / "procmailrc"
    # LOCKSLEEP: procmail waits 8 s between tries of a busy lock unless told otherwise.
    rc.write_text("SHELL=/bin/sh\nLOCKSLEEP=1\nLOCKTIMEOUT=60\n:0:\n%s\n" % mailhost.spool())

    def deliver(data: bytes) -> None:
        result = subprocess.run(["procmail", "-m", str(rc)], input=data, env=AGENT_ENV,
                                preexec_fn=as_test_user, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=120)
        assert result.returncode == 0, result.stderr
    return deliver


# fcntl on the spool, then liblockfile's dot-lock, append, unlock: Postfix's order.
# (It becomes the test user itself: the interpreter may live where that user
# cannot reach.)
DOTLOCKFILE_AGENT = r"""
import fcntl, os, subprocess, sys
spool, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
data = sys.stdin.buffer.read()
fd = os.open(spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX)
subprocess.run(["dotlockfile", "-l", "-r", "60", spool + ".lock"], check=True)
os.write(fd, data)
os.fsync(fd)
subprocess.run(["dotlockfile", "-u", spool + ".lock"], check=True)
fcntl.lockf(fd, fcntl.LOCK_UN)
"""


def dotlockfile_agent(mailhost):
    if not shutil.which("dotlockfile"):
        pytest.skip("dotlockfile is not installed (liblockfile-bin; tests/deps.sh installs it)")

    def deliver(data: bytes) -> None:
        result = subprocess.run([sys.executable, "-c", DOTLOCKFILE_AGENT, str(mailhost.spool()),
                                 str(TEST_UID), str(TEST_GID)],
                                input=data, env=AGENT_ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=120)
        assert result.returncode == 0, result.stderr
    return deliver


@pytest.mark.parametrize("agent", [procmail_agent, dotlockfile_agent],
                         ids=["procmail", "dotlockfile"])
def test_deliveries_interleave_with_sessions(mailhost, agent):
    deliver = agent(mailhost)
    rng = random.Random(2026)
    initial = list(corpus.messages(200, seed=5))
    mailhost.deliver(corpus.mbox_bytes(initial))
    expected = {m.message_id.decode(): mda.digest(m.envelope + m.data) for m in initial}
    delivered = {}
    failures = []

    pace = random.Random(7)

    def deliveries():
        try:
            for n in range(12):       # procmail sleeps 1 s at each busy lock: ~1 s a delivery
                data = mda.message("agent", n, pace.randrange(500, 30000))
                deliver(data)
                delivered["agent-%d@mda.test" % n] = mda.digest(data[:-1])
                time.sleep(pace.uniform(0, 0.05))
        except Exception as exc:          # reported below, in the test's thread
            failures.append(exc)
    thread = threading.Thread(target=deliveries)
    thread.start()
    gone = set()
    sessions = collections.Counter()
    while thread.is_alive() or sessions["total"] < 6:
        time.sleep(rng.uniform(0.05, 0.3))     # room for the agent between sessions
        mode = ["-S"] if sessions["total"] % 2 else []
        conv = start_inetd(mailhost.command(*mode))
        reply = conv.login()
        assert reply.startswith(b"+OK alice has "), reply
        count = int(reply.split()[3])
        for n in rng.sample(range(1, count + 1), min(count, 2)):
            conv.send(b"TOP %d 0\r\n" % n)
            assert conv.line().startswith(b"+OK")
            header = b"\n" + b"\n".join(conv.multiline())
            gone.add(re.search(rb"\nMessage-ID: <([^>]+)>", header).group(1).decode())
            assert conv.cmd("DELE %d" % n).startswith(b"+OK")
        assert conv.cmd("QUIT").startswith(b"+OK Pop server at"), mode
        conv.close()
        sessions["total"] += 1
    thread.join()
    assert not failures, failures
    conv = start_inetd(mailhost.command())
    assert conv.login().startswith(b"+OK")
    assert conv.cmd("QUIT").startswith(b"+OK")
    conv.close()
    messages = split_mbox(mailhost.spool().read_bytes())
    counts = collections.Counter(message_id(m).decode() for m in messages)
    assert max(counts.values()) == 1
    expected.update(delivered)
    assert set(counts) == set(expected) - gone
    for m in messages:
        assert mda.digest(m) == expected[message_id(m).decode()]
    print("%d sessions, %d delivered meanwhile, %d deleted" % (sessions["total"],
                                                               len(delivered), len(gone)))
