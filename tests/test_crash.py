"""Nothing lost: kill -9 at any instant of the login copy and of the QUIT
update, a full disk, and a delivery agent appending all the while.

Each trial starts popper on the spool, kills it at a random instant of the
login or of the QUIT update (some kills land after the work is done), then
runs a clean session that logs in and quits.  After it, every message ever
delivered must be in the spool exactly once, unchanged but for the X-UIDL:
and Status: headers popper writes, and the killed session's deletions must
be applied all or not at all.  Messages are checked by Message-ID and by a
digest of their header (less X-UIDL:/Status:) and body.

POPPER_CRASH_TRIALS sets the number of trials per mode (make check runs a
few dozen; `make soak` 500).
"""

import collections
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, corpus, start_inetd
from helpers import World, message_id, split_mbox
from mda import digest

pytestmark = pytest.mark.clients

TRIALS = int(os.environ.get("POPPER_CRASH_TRIALS", "24"))


def timed_session(world: World, extra_args: list) -> tuple:
    """(seconds for PASS, seconds for QUIT) of a session that deletes a tenth."""
    conv = start_inetd(world.host.command(*extra_args))
    try:
        conv.send(b"USER alice\r\n")
        conv.line()
        start = time.monotonic()
        reply = conv.cmd("PASS secret")
        login = time.monotonic() - start
        count = int(reply.split()[3])
        for n in range(1, count + 1, 10):
            conv.cmd("DELE %d" % n)
        start = time.monotonic()
        assert conv.cmd("QUIT").startswith(b"+OK")
        return login, time.monotonic() - start
    finally:
        conv.close()


def run_trial(world: World, rng: random.Random, extra_args: list, spans: tuple) -> str:
    """One session killed at a random instant of its login or its QUIT
    (spans: how long each takes), then a clean one, then the check."""
    host = world.host
    conv = start_inetd(host.command(*extra_args))
    phase = rng.choice(["login", "quit", "quit"])
    deleted = set()
    try:
        if phase == "login":
            conv.send(b"USER alice\r\nPASS secret\r\n")
            time.sleep(rng.uniform(0, 1.2 * spans[0]))
        else:
            reply = conv.login()
            assert reply.startswith(b"+OK alice has "), reply
            count = int(reply.split()[3])
            numbers = rng.sample(range(1, count + 1), rng.randrange(0, max(1, count // 5)))
            if numbers:
                conv.send(b"".join(b"UIDL %d\r\n" % n for n in numbers))
                uids = [conv.line() for _ in numbers]
                conv.send(b"".join(b"TOP %d 0\r\n" % n for n in numbers))
                for _ in numbers:
                    assert conv.line().startswith(b"+OK")
                    header = b"\n".join(conv.multiline())
                    deleted.add(message_id(b"\n" + header))
                conv.send(b"".join(b"DELE %d\r\n" % n for n in numbers))
                for _ in numbers:
                    assert conv.line().startswith(b"+OK Message")
                assert all(u.startswith(b"+OK") for u in uids)
            conv.send(b"QUIT\r\n")
            time.sleep(rng.uniform(0, 1.2 * spans[1]))
    finally:
        conv.process.send_signal(signal.SIGKILL)
        conv.close()
    # A clean session: it must succeed and leave everything in the spool.
    after = start_inetd(host.command(*extra_args))
    try:
        reply = after.login()
        assert reply.startswith(b"+OK alice has "), reply
        assert after.cmd("QUIT").startswith(b"+OK Pop server at")
    finally:
        after.close()
    world.check(deleted, "%s trial" % phase)
    return phase


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["-S"]], ids=["normal", "server-mode"])
def test_kill_9_at_random_instants_loses_nothing(mailhost, mode):
    seed = int(os.environ.get("POPPER_CRASH_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    world = World(mailhost, seed)
    mailhost.write_config("set tracefile = %s" % (mailhost.base / "trace"))
    spans = timed_session(world, mode)
    kept = mailhost.spool().read_text("latin-1")
    world.gone |= {m for m in world.known if m not in kept}
    world.start_mda(TRIALS * 6)
    phases = collections.Counter()
    try:
        for _ in range(TRIALS):
            phases[run_trial(world, rng, mode, spans)] += 1
    finally:
        world.stop_mda()
    # The last deliveries, and a final clean session.
    after = start_inetd(mailhost.command(*mode))
    assert after.login().startswith(b"+OK")
    after.cmd("QUIT")
    after.close()
    world.check(set(), "final")
    trace = (mailhost.base / "trace").read_text()
    recovered = collections.Counter(re.findall(r"left in \S+ \((\w+)\)", trace))
    print("seed %d, %d trials %s (login %.3f s, QUIT %.3f s), recovered journal records %s, "
          "%d messages deleted for good, %d delivered meanwhile"
          % (seed, TRIALS, dict(phases), spans[0], spans[1], dict(recovered), len(world.gone),
             len(world.delivered())))
    assert sum(recovered.values()) > 0, "no kill landed inside the work (%s)" % dict(phases)


# --- a full disk ---------------------------------------------------------------------

@contextlib.contextmanager
def small_spool_dir(mailhost, megabytes: int):
    """The mail host's spool directory moved onto a tmpfs of this size."""
    small = mailhost.base / "small"
    small.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=1777" % megabytes,
                             "tmpfs", str(small)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    if result.returncode:
        pytest.skip("cannot mount a small tmpfs: %s" % result.stderr.strip())
    try:
        mailhost.spool_dir = small
        mailhost.write_config("set spool-dir = %s" % small)
        yield small
    finally:
        subprocess.run(["umount", "-l", str(small)])


needs_root = pytest.mark.skipif(not IS_ROOT, reason="a small filesystem needs root to mount")


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("mode", [[], ["-S"]], ids=["normal", "server-mode"])
def test_a_full_disk_during_the_update_loses_nothing(mailhost, mode):
    with small_spool_dir(mailhost, 8) as small:
        msgs = list(corpus.messages(150, seed=77))
        data = corpus.mbox_bytes(msgs)
        assert 1 << 20 < len(data) < 3 << 20
        mailhost.deliver(data)
        conv = start_inetd(mailhost.command(*mode))
        assert conv.login().startswith(b"+OK alice has 150 visible messages")
        assert conv.cmd("DELE 3").startswith(b"+OK")
        deadline = time.monotonic() + 10        # normal mode empties the spool after +OK
        while not mode and mailhost.spool().stat().st_size and time.monotonic() < deadline:
            time.sleep(0.01)
        filler = small / "filler"
        # Leave room for anything but the rewrite.
        free = shutil.disk_usage(small).free
        with open(filler, "wb") as f:
            f.write(b"\0" * (free - (256 << 10)))
        reply = conv.cmd("QUIT")
        conv.close()
        if mode:
            # Server mode rewrites the spool in place: its plan and the stage
            # of the small gap DELE 3 leaves fit in what is left.
            assert reply.startswith(b"+OK"), reply
            msgs = msgs[:2] + msgs[3:]
        else:
            assert reply.startswith(b"-ERR Error updating primary drop.  Mail left in "
                                    b"temporary maildrop [No space left on device (28)]"), reply
        os.unlink(filler)
        # Room again: the next session finds all 150 (the deletion was not applied),
        # or in server mode the 149 kept.
        conv = start_inetd(mailhost.command(*mode))
        assert conv.login().startswith(b"+OK alice has %d visible messages" % len(msgs))
        assert conv.cmd("QUIT").startswith(b"+OK")
        conv.close()
        kept = split_mbox(mailhost.spool().read_bytes())
        assert [digest(m) for m in kept] == [digest(m.envelope + m.data) for m in msgs]


@pytest.mark.root
@needs_root
def test_a_full_disk_at_login_leaves_the_spool_alone(mailhost):
    with small_spool_dir(mailhost, 4) as small:
        data = corpus.mbox_bytes(list(corpus.messages(150, seed=77)))
        mailhost.deliver(data)
        with open(small / "filler", "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(small).free - (256 << 10)))
        conv = start_inetd(mailhost.command())
        reply = conv.login()
        conv.close()
        assert reply == b"-ERR [SYS/TEMP] Unable to copy mail spool file, quota exceeded (28)"
        assert mailhost.spool().read_bytes() == data
        assert not mailhost.temp_drop().exists() or mailhost.temp_drop().stat().st_size == 0
