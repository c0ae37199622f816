"""Helpers the crash, fault, delivery and maildrop tests share: an
independent mbox reader, the checker that says what became of every
message, and the World of the random kill -9 trials (test_crash.py).

The checker knows nothing of popper's files but the spool: it reads the
spool as any mail reader would and compares each message, by Message-ID
and by a digest of its header (less the X-UIDL:/Status: lines popper
writes) and body, with what was delivered.
"""

import collections
import os
import random
import re
import subprocess
import sys

import mda
from conftest import IS_ROOT, ROOT, TEST_GID, TEST_UID, corpus
from mda import digest

MDA = str(ROOT / "tests" / "mda.py")
# make soak's fault runs: every N (make check tries a subset).
FAULTS_FULL = os.environ.get("POPPER_FAULTS_FULL", "") not in ("", "0")


SUBSET = 6          # make check's fault trials per kind of call, at most


def fault_subset(count: int) -> list:
    """The N of `count` calls a fault test tries: all with
    POPPER_FAULTS_FULL (make soak); else the first, every third and the
    last, and of many only SUBSET spread evenly from the first to the last."""
    if FAULTS_FULL or count <= 2:
        return list(range(1, count + 1))
    thirds = sorted(set(range(1, count + 1, 3)) | {count})
    if len(thirds) <= SUBSET:
        return thirds
    step = (count - 1) / (SUBSET - 1)
    return sorted({1 + round(i * step) for i in range(SUBSET)})


MARKER = b"\0popper-rewrite\0"      # a spool's first bytes while popper rewrites it


def split_mbox(data: bytes) -> list:
    """The messages of an mbox, each without the blank line that ends it.
    An independent reader: a From line after a blank line starts a message."""
    if not data:
        return []
    assert data.startswith(b"From "), data[:80]
    starts = [0] + [m.start() + 2 for m in re.finditer(rb"\n\nFrom \S+ \w{3} \w{3} [ \d]\d ", data)]
    out = []
    for a, b in zip(starts, starts[1:] + [len(data)]):
        chunk = data[a:b]
        out.append(chunk[:-1] if chunk.endswith(b"\n\n") else chunk)
    return out


def message_id(message: bytes):
    """The Message-ID of a message (bytes, without the angle brackets), or
    None if its header has none."""
    found = re.search(rb"\nMessage-ID: <([^>]+)>", message)
    return found.group(1) if found else None


def mbox_problem(data: bytes):
    """What makes a spool something no mail reader can read, or None: a
    spool must be empty or start with a From line, and mail holds no NUL
    bytes (popper's rewrite marker and a preallocation's zeros do)."""
    if data.startswith(MARKER):
        return "it starts with popper's rewrite marker %r" % MARKER
    if data and not data.startswith(b"From "):
        return "it starts with %r, not a From line" % data[:24]
    if b"\0" in data:
        return "it holds %d NUL bytes, the first at offset %d of %d" % (
            data.count(b"\0"), data.index(b"\0"), len(data))
    return None


def quarantine_files(directory, user: str = "alice") -> list:
    """The files popper set bytes aside in that it could not understand
    (.<user>.pop.damaged.<something>, beside the temporary drop)."""
    prefix = ".%s.pop.damaged" % user
    return sorted(os.path.join(str(directory), name) for name in os.listdir(str(directory))
                  if name.startswith(prefix))


def short(ids, n: int = 6) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:n]) + (" and %d more" % (len(ids) - n) if len(ids) > n else "")


def check_mail(data: bytes, expected: dict, deleted=(), gone=(), strict: bool = False,
               quarantined=()) -> tuple:
    """(problems, applied) for a spool's bytes.

    expected: Message-ID (str) -> digest of every message the spool must
    hold once, unchanged; deleted: the Message-IDs one session deleted,
    which must be all gone or all there (applied: the set gone); gone:
    messages deleted for good before.  strict: a message nobody delivered
    is a problem too (without it, one a delivery agent has not logged yet
    is not).  quarantined: Message-IDs found in a quarantine file, counted
    as neither lost nor duplicated.  problems is a list of sentences."""
    problems = []
    if data and not data.startswith(b"From "):
        return ["the spool is not an mbox: %s" % mbox_problem(data)], set()
    messages = split_mbox(data)
    ids = []
    damaged = []
    offset = 0
    for m in messages:
        i = message_id(m)
        if i is None:
            damaged.append("%d bytes at offset %d without a Message-ID (%r...)"
                           % (len(m), offset, m[:60]))
        else:
            ids.append(i.decode("latin-1"))
            if i.decode("latin-1") in expected and expected[i.decode("latin-1")] != digest(m):
                damaged.append("%s corrupted" % i.decode("latin-1"))
            elif strict and i.decode("latin-1") not in expected:
                damaged.append("%s: a message nobody delivered" % i.decode("latin-1"))
        offset += len(m) + 1
    if b"\0" in data:
        damaged.append("NUL bytes in the spool (%d, the first at offset %d)"
                       % (data.count(b"\0"), data.index(b"\0")))
    counts = collections.Counter(ids)
    dupes = {i for i, n in counts.items() if n > 1}
    if dupes:
        problems.append("duplicated %s" % short(dupes))
    if damaged:
        problems.append("damaged: %s" % "; ".join(damaged[:4])
                        + (" and %d more" % (len(damaged) - 4) if len(damaged) > 4 else ""))
    deleted = {i.decode("latin-1") if isinstance(i, bytes) else i for i in deleted}
    missing = set(expected) - set(counts) - set(gone) - set(quarantined)
    applied = deleted & missing
    if applied not in (set(), deleted):
        problems.append("deletions half applied: %d of %d (%s gone, %s still there)"
                        % (len(applied), len(deleted), short(applied), short(deleted - applied)))
    if missing - applied:
        problems.append("lost %s" % short(missing - applied))
    return problems, applied


class World:
    """The spool, what was delivered to it (and what it must hold), and a
    delivery agent appending to it all the time."""

    def __init__(self, mailhost, seed: int):
        self.host = mailhost
        self.rng = random.Random(seed)
        initial = list(corpus.messages(400, seed=seed))
        mailhost.deliver(corpus.mbox_bytes(initial))
        self.known = {m.message_id.decode(): digest(m.envelope + m.data) for m in initial}
        self.gone = set()
        self.mda_log = mailhost.base / "mda.log"        # where the test uid may write
        self.mda_log.write_text("")
        os.chown(self.mda_log, TEST_UID, TEST_GID)
        self.mda = None

    def start_mda(self, count: int) -> None:
        command = [sys.executable, MDA, str(self.host.spool()), str(self.mda_log), str(count),
                   "--pause", "0.03", "--prefix", "mda%d" % self.rng.randrange(10**6)]
        if IS_ROOT:
            command += ["--uid", str(TEST_UID), "--gid", str(TEST_GID)]
        self.mda = subprocess.Popen(command)

    def stop_mda(self) -> None:
        if self.mda:
            self.mda.wait(120)
            assert self.mda.returncode == 0
            self.mda = None

    def delivered(self) -> dict:
        """Message-ID -> digest of what the delivery agent has delivered."""
        return dict(line.split(" ") for line in self.mda_log.read_text().splitlines())

    def check(self, deleted: set, trial: str) -> None:
        """The spool holds each message once: all of `deleted` gone or none."""
        with mda.MdaLock(self.host.spool()):
            data = self.host.spool().read_bytes()
            expected = dict(self.known, **self.delivered())
        problems, applied = check_mail(data, expected, deleted, self.gone)
        assert not problems, "%s: %s" % (trial, "; ".join(problems))
        self.gone |= applied
