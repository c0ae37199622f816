"""Recovery, row by row: every journal record popper writes, and the file
states a crash, an error or another program can leave with it.

The first table drives recovery.plan() alone (facts in, plan out, no
files).  The second builds each state on disk -- a temp drop, a spool, a
journal line -- then logs in through open_maildrop() as a session would,
quits, and checks what the spool then holds: every message exactly once,
byte for byte but for X-UIDL:/Status:, and a spool any mail reader parses.
"""

import os
import tempfile

import pytest

from conftest import RecordingLog, corpus
from helpers import mbox_problem, message_id, quarantine_files, split_mbox
from mda import digest
from popper.maildrop import files, open_maildrop, recovery
from popper.maildrop.compact import Compacted
from popper.maildrop.journal import (Append, Compact, Done, Journal, Move, Rewrite, Settled,
                                     Unreadable, parse)
from popper.settings import Settings

MARKER = files.MARKER


# --- the pure function ------------------------------------------------------------

def facts(spool=1000, temp=500, marker=False, printed=True, head_ok=False, mail_from=None,
          appended=None, plan_left=False):
    offsets = {0: 0}
    offsets.update(mail_from or {})
    return recovery.Facts(spool, temp, marker, printed, head_ok, offsets, appended, plan_left)


COMPACT = Compact(100, 600, 900, 900, b"From x", 400, 300, "f", "t")


PLANS = {
    # name: (record, facts, temp_len, ranges, head, aside, warned)
    "none": (None, facts(), 500, [(0, 1000)], None, [], False),
    "none, leading zeros": (None, facts(mail_from={0: 64}), 500, [(64, 1000)], None, [], False),
    "none, marker": (None, facts(marker=True), 500, [], None, [(0, 1000)], True),
    "unreadable": (Unreadable("x"), facts(), 500, [(0, 1000)], None, [], True),
    "move": (Move(400, 600, "f", ((0, 600),)), facts(), 400, [(0, 600), (600, 1000)], None,
             [], False),
    "move, spool changed": (Move(400, 600, "f", ((0, 600),)), facts(printed=False), 400,
                            [(0, 1000)], None, [], True),
    "move, range past the spool": (Move(400, 600, "f", ((0, 700),)), facts(), 400, [(0, 1000)],
                                   None, [], True),
    "move, temp drop short": (Move(600, 600, "f", ((0, 600),)), facts(), 500, [(0, 1000)],
                              None, [], True),
    "move, older popper's stash": (parse("popper-journal 1 stash m=400"), facts(), 400,
                                   [(0, 1000)], None, [], False),
    "settled, not emptied": (Settled(450, 300, "f"), facts(), 450, [(300, 1000)], None, [],
                             False),
    "settled, emptied": (Settled(450, 300, "f"), facts(printed=False), 450, [(0, 1000)], None,
                         [], False),
    "settled, temp drop short": (Settled(600, 300, "f"), facts(), 500, [(0, 1000)], None, [],
                                 True),
    "rewrite, not started": (Rewrite(480, 200, "f", 900), facts(mail_from={200: 200, 900: 900}),
                             480, [(200, 1000)], None, [], False),
    "rewrite, preallocated": (Rewrite(480, 200, "f", 900),
                              facts(printed=False, mail_from={0: 900, 200: 900, 900: 900}),
                              480, [(900, 1000)], None, [], False),
    "rewrite, marker": (Rewrite(480, 200, "f", 900),
                        facts(marker=True, printed=False, mail_from={200: 200, 900: 950}),
                        480, [(950, 1000)], None, [], False),
    "rewrite, given up": (Rewrite(480, 200, "f", 900),
                          facts(printed=False, mail_from={200: 200, 900: 900}),
                          480, [(0, 1000)], None, [], False),
    "rewrite, temp drop gone": (Rewrite(480, 200, "f", 900),
                                facts(temp=0, marker=True, mail_from={200: 200, 900: 920}),
                                0, [(920, 1000)], None, [(0, 900)], True),
    "done, marker": (Done(700, b"From x"), facts(marker=True, mail_from={700: 710}), 0,
                     [(0, 700), (710, 1000)], b"From x", [], False),
    "done, head in place": (Done(700, b"From x"), facts(head_ok=True, mail_from={700: 700}), 0,
                            [(0, 700), (700, 1000)], None, [], False),
    "done, spool changed": (Done(700, b"From x"), facts(mail_from={700: 700}), 0, [(0, 1000)],
                            None, [], True),
    "done, spool short": (Done(1200, b"From x"), facts(marker=True, mail_from={1200: 1200}), 0,
                          [(0, 1000)], None, [], True),
    # server mode's compaction: the temp drop holds its plan, never mail
    "none, a compaction's plan left": (None, facts(plan_left=True), 0, [(0, 1000)], None, [],
                                       False),
    "compact, not begun": (COMPACT, facts(mail_from={900: 950}), 0, [(0, 900), (950, 1000)],
                           None, [], False),
    "compact, begun, plan gone": (COMPACT, facts(marker=True, mail_from={900: 900}), 0, [],
                                  None, [(0, 1000)], True),
    "compact, spool short": (COMPACT, facts(spool=800, mail_from={900: 900}), 0, [(0, 800)],
                             None, [], True),
    "compacted, not cut": (Compacted(600, 900, b"From x", "t"),
                           facts(marker=True, mail_from={600: 600, 900: 930}), 0,
                           [(0, 600), (930, 1000)], b"From x", [], False),
    "compacted, cut, mail since": (Compacted(600, 900, b"From x", "t"),
                                   facts(printed=False, head_ok=True,
                                         mail_from={600: 600, 900: 900}), 0,
                                   [(0, 600), (600, 1000)], None, [], False),
    "compacted, grown": (Compacted(1200, 1200, b"From x", None),
                         facts(spool=1300, head_ok=True, mail_from={1200: 1250}), 0,
                         [(0, 1200), (1250, 1300)], None, [], False),
    "compacted, spool changed": (Compacted(600, 900, b"From x", "t"),
                                 facts(mail_from={600: 600, 900: 900}), 0, [(0, 1000)], None,
                                 [], True),
    # bulletins (server mode): the temp drop holds them, never mail
    "append, whole": (Append(600, "f", 120, 7), facts(appended="whole"), 0, [(0, 1000)], None,
                      [], False),
    "append, cut short": (Append(600, "f", 120, 7), facts(appended="zeros",
                                                          mail_from={720: 720}),
                          0, [(0, 600), (720, 1000)], None, [], False),
    "append, not begun": (Append(600, "f", 120, 7), facts(appended="none"), 0, [(0, 1000)],
                          None, [], False),
    "append, spool changed": (Append(600, "f", 120, 7), facts(printed=False, appended="whole"),
                              0, [(0, 1000)], None, [], True),
}

# Which records say the mail holds bulletins up to a number.
BULLETINS = {"settled, not emptied": 0, "append, whole": 7, "append, cut short": 0,
             "append, not begun": 0, "append, spool changed": 0}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_plan(name):
    record, f, temp_len, ranges, head, aside, warned = PLANS[name]
    plan = recovery.plan(record, f)
    assert (plan.temp_len, list(plan.ranges), plan.head, list(plan.aside)) == (
        temp_len, ranges, head, aside)
    assert bool(plan.warning) == warned, plan.warning
    assert plan.bulletins == BULLETINS.get(name, 0)


def test_a_settled_record_with_bulletins_says_so():
    for f in (facts(), facts(printed=False)):
        assert recovery.plan(Settled(450, 300, "f", bull=12), f).bulletins == 12


def test_records_read_back_as_written(tmp_path):
    journal = Journal(str(tmp_path / ".alice.pop"))
    for record in (Move(1, 2, "ab", ((0, 5), (7, 9))), Move(0, 0, None, ()), Settled(3, 4, "cd"),
                   Rewrite(5, 6, "ef", 7), Done(8, b"\0From \xff"), Settled(3, 4, None, bull=9),
                   Append(10, "gh", 11, 12)):
        journal.write(record)
        assert journal.read() == record
    assert isinstance(parse("popper-journal 1 move t=x"), Unreadable)
    assert isinstance(parse("not a journal"), Unreadable)


# --- on disk ----------------------------------------------------------------------

MSGS = list(corpus.messages(8, seed=11))
A = corpus.mbox_bytes(MSGS[0:3])        # the session's mail, in the temp drop
N = corpus.mbox_bytes(MSGS[3:5])        # delivered during the session
P = corpus.mbox_bytes(MSGS[5:6])        # delivered after the crash
C = corpus.mbox_bytes(MSGS[1:5])        # a finished rewrite: A less its first, then N
ZEROS = 4096
MMDF_N, MMDF_P = (b"".join(b"\1\1\1\1\n" + m.data + b"\1\1\1\1\n" for m in part)
                  for part in (MSGS[3:5], MSGS[5:6]))


def ids(*parts):
    """The messages of these mbox parts, as (Message-ID, digest)."""
    return [(message_id(m), digest(m)) for part in parts for m in split_mbox(part)]


def rewrite_record(n_bytes: bytes, bound: int):
    return Rewrite(len(A + N), len(n_bytes), fp_of(n_bytes), bound)


def fp_of(data: bytes) -> str:
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        return files.fingerprint(f.fileno(), len(data))


def marked(content: bytes, bound: int) -> bytes:
    """A spool mid-rewrite: the marker, the content behind it, zeros to the bound."""
    return (MARKER + content[len(MARKER):]).ljust(bound, b"\0")


BOUND = len(A + N) + ZEROS
ROWS = {
    # name: (journal record or line, temp drop, spool, expected messages, set aside)
    "no journal, no temp drop": (None, b"", A, ids(A), False),
    "no journal, a leftover temp drop": (None, A, N, ids(A, N), False),
    "no journal, zeros before the mail": (None, A, b"\0" * ZEROS + N, ids(A, N), False),
    "no journal, a marker": (None, A + N, marked(A, BOUND) + P, ids(A, N), True),
    "no journal, no temp drop, a marker": (None, b"", marked(A, BOUND) + P, [], True),
    "no journal, no temp drop, zeros": (None, b"", b"\0" * ZEROS + N, ids(N), False),
    "no journal, a spool that is not mail": (None, A, b"garbage\n" + N, ids(A), True),
    "move, copy half done": (Move(len(A), len(N), fp_of(N), ((0, len(N)),)), A + N[:100], N,
                             ids(A, N), False),
    "move, mail since": (Move(len(A), len(N), fp_of(N), ((0, len(N)),)), A, N + P,
                         ids(A, N, P), False),
    "move, spool changed by another program": (Move(len(A), len(N), fp_of(N), ((0, len(N)),)),
                                               A + N[:50], P, ids(A, P), False),
    "move, temp drop gone": (Move(len(A), len(N), fp_of(N), ((0, len(N)),)), b"", N, ids(N),
                             False),
    "older popper's stash": ("popper-journal 1 stash m=%d" % len(A), A + N[:70], N, ids(A, N),
                             False),
    "settled, spool not emptied": (Settled(len(A + N), len(N), fp_of(N)), A + N, N + P,
                                   ids(A, N, P), False),
    "settled, spool emptied": (Settled(len(A + N), len(N), fp_of(N)), A + N, P, ids(A, N, P),
                               False),
    "settled, nothing since": (Settled(len(A + N), len(N), fp_of(N)), A + N, b"", ids(A, N),
                               False),
    "rewrite, not started": (rewrite_record(N, BOUND), A + N, N + P, ids(A, N, P), False),
    "rewrite, preallocated": (rewrite_record(N, BOUND), A + N, b"\0" * BOUND + P,
                              ids(A, N, P), False),
    "rewrite, half written behind the marker": (rewrite_record(N, BOUND), A + N,
                                                marked(C[:len(C) // 2], BOUND) + P,
                                                ids(A, N, P), False),
    "rewrite, given up": (rewrite_record(N, BOUND), A + N, P, ids(A, N, P), False),
    "rewrite, temp drop gone": (rewrite_record(N, BOUND), b"", marked(C[:100], BOUND) + P,
                                ids(P), True),
    "done, marker still there": (Done(len(C), C[:len(MARKER)]), A + N,
                                 marked(C, BOUND) + P, ids(C, P), False),
    "done, head in place": (Done(len(C), C[:len(MARKER)]), A + N, C.ljust(BOUND, b"\0") + P,
                            ids(C, P), False),
    "done, cut to size": (Done(len(C), C[:len(MARKER)]), A + N, C + P, ids(C, P), False),
    "done, temp drop gone": (Done(len(C), C[:len(MARKER)]), b"", C + P, ids(C, P), False),
    "done, head neither marker nor mail": (Done(len(C), C[:len(MARKER)]), A + N,
                                           b"X" * len(MARKER) + C[len(MARKER):] + P, [],
                                           True),
    "a journal that cannot be read": ("popper-journal 1 frobnicate", A, N, ids(A, N), False),
    "a temp drop in another format than the spool": (None, A, MMDF_N, ids(A, N), False),
    "a spool in another format than the temp drop, mail since": (None, A, MMDF_N + MMDF_P,
                                                                ids(A, N, P), False),
}


@pytest.mark.parametrize("mode", ["normal", "server-mode"])
@pytest.mark.parametrize("name", sorted(ROWS))
def test_recovery_on_disk(tmp_path, name, mode):
    record, temp, spool, expected, aside = ROWS[name]
    settings = Settings()
    settings.spool_dir = str(tmp_path)
    settings.server_mode = mode == "server-mode"
    (tmp_path / "alice").write_bytes(spool)
    temp_path = tmp_path / ".alice.pop"
    if temp or record is not None:
        temp_path.write_bytes(temp)
        os.chmod(temp_path, 0o600)
    if record is not None:
        line = record if isinstance(record, str) else "popper-journal 1 " + record.line()
        journal = tmp_path / ".alice.pop.journal"
        journal.write_text(line + "\n")
        os.chmod(journal, 0o600)
    log = RecordingLog()
    drop = open_maildrop(settings, "alice", log)
    try:
        served = [b"".join(drop.message_chunks(m)) for m in drop.messages]
        drop.update(bytearray(len(served)), bytearray(len(served)))
    finally:
        drop.close()
    assert len(served) == len(expected)
    data = (tmp_path / "alice").read_bytes()
    assert mbox_problem(data) is None, mbox_problem(data)
    assert ids(data) == expected
    assert not (tmp_path / ".alice.pop.journal").exists()
    assert not temp_path.exists()
    if aside:
        assert quarantine_files(tmp_path) and log.texts("critical")
    else:
        assert not quarantine_files(tmp_path)
