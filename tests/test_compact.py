"""Server mode's QUIT: the compaction of the spool in place (compact.py).

The planner and the batches alone (pieces in, segments and batches out);
then the real thing on disk, compared with normal mode's rewrite byte for
byte; then, in the process, a kill (an exception nothing catches) or an
error (ENOSPC, EIO) at the N-th call that changes a file, for every N, and
the next login's recovery: every message once, the deletions all or none
(all if the QUIT said +OK), the spool a mailbox after an error unless the
journal says the update is made.  tests/test_faults.py does the same to
the real program under strace.
"""

import errno
import fcntl
import os
import re
import shutil

import pytest

from conftest import RecordingLog, corpus
from helpers import mbox_problem, message_id, quarantine_files, split_mbox
from mda import digest
from popper.maildrop import MaildropError, compact, open_maildrop
from popper.maildrop.compact import PLAN, SPOOL, Segment
from popper.maildrop.journal import Compact, Journal
from popper.settings import Settings

pytestmark = pytest.mark.twin

H = compact.HEAD


# --- the planner ---------------------------------------------------------------------

def test_the_unchanged_prefix_is_left_out_and_runs_are_merged():
    first = b"F" * H
    pieces = [(0, 100, None), (100, 200, None),          # message 1, unchanged
              (200, 300, None),                          # message 2 deleted: not there
              (300, 350, None), (350, 400, b"X" * 60), (400, 500, None),
              (500, 600, None), (600, 700, None)]
    pieces = [p for p in pieces if p[0] != 200]
    segments, literal, start, total = compact.plan(pieces, first)
    assert start == 200 and total == 200 + 50 + 60 + 300
    assert segments == [Segment(SPOOL, 300, 350, 200), Segment(PLAN, 0, 60, 250),
                        Segment(SPOOL, 400, 700, 310)]
    assert literal == b"X" * 60


def test_a_same_length_header_change_is_written_in_place():
    pieces = [(0, 100, None), (100, 150, b"Y" * 50), (150, 400, None)]
    segments, literal, start, total = compact.plan(pieces, b"F" * H)
    assert (start, total) == (100, 400)
    assert segments == [Segment(PLAN, 0, 50, 100), Segment(SPOOL, 150, 400, 150)]
    assert [b[:3] for b in compact.batches(segments, start, total)] == [("write", 0, 2)]


def test_bytes_under_the_marker_are_taken_from_the_plan():
    """A first message whose separator line changed: its header is read
    from the spool's first bytes, which the marker covers meanwhile."""
    first = b"From a@b Mon 1\n\n"[:H]
    pieces = [(0, 6, b"From MAILER-DAEMON x\n"), (6, 500, None)]
    segments, literal, start, total = compact.plan(pieces, first)
    assert start == 0
    assert segments[0] == Segment(PLAN, 0, len(literal), 0)
    assert literal == b"From MAILER-DAEMON x\n" + first[6:]
    assert segments[1] == Segment(SPOOL, H, 500, len(literal))


def test_long_runs_are_cut_into_pieces():
    segments, _, start, total = compact.plan([(1000, 1000 + 3 * compact.PIECE + 5, None)],
                                             b"F" * H)
    assert start == 0 and len(segments) == 4
    assert all(s.b - s.a <= compact.PIECE for s in segments)
    assert segments[-1].end == total


def alternate(count: int, size: int):
    """Pieces of a spool of count messages of size bytes, every second deleted."""
    return [(i * size, (i + 1) * size, None) for i in range(1, count, 2)]


def run_batches(segments, start, total, spool: bytes, literal: bytes):
    """Carry the batches out on bytes, checking what each write may touch:
    nothing a segment not yet done still reads from the spool (its stage
    excepted).  Returns the spool and the batches' kinds."""
    disk, kinds, stage = bytearray(spool), [], None
    for kind, k, j, sa, sb in compact.batches(segments, start, total):
        kinds.append(kind)
        if kind == "stage":
            stage = (sa, bytes(disk[sa:sb]))
            continue
        reads = [s for s in segments[k:] if s.src == SPOOL and not s.in_place]
        for seg in segments[k:j]:
            if seg.in_place:
                continue
            if seg.src == PLAN:
                data = literal[seg.a:seg.b]
            elif stage and stage[0] <= seg.a and seg.b <= stage[0] + len(stage[1]):
                data = stage[1][seg.a - stage[0]:seg.b - stage[0]]
            else:
                data = bytes(disk[seg.a:seg.b])
            for other in reads:
                staged = stage and stage[0] <= other.a and other.b <= stage[0] + len(stage[1])
                if not staged:
                    assert seg.end <= other.a or seg.dest >= other.b, (seg, other)
            disk[seg.dest:seg.end] = data
        stage = None
    return bytes(disk[:total]), kinds


def expected_output(pieces, spool: bytes) -> bytes:
    return b"".join(spool[a:b] if data is None else data for a, b, data in pieces)


def test_deleting_every_second_message_takes_a_batch_per_doubling():
    """The gap doubles with each batch: 10,000 messages take a stage (the
    small first batches, two fdatasyncs each, are staged instead) and a
    handful of batches."""
    size, count = 16384, 10000
    pieces = alternate(count, size)
    segments, literal, start, total = compact.plan(pieces, b"F" * H)
    work = list(compact.batches(segments, start, total))
    # The first MIN_BATCH of the gap staged, then batches that double.
    assert [kind for kind, *_ in work[:2]] == ["stage", "write"]
    assert all(kind == "write" for kind, *_ in work[2:])
    assert len(work) <= 10
    spool = bytes(range(256)) * (size * 64 // 256)
    segments, literal, start, total = compact.plan(alternate(64, size), b"F" * H)
    out, kinds = run_batches(segments, start, total, spool, literal)
    assert out == expected_output(alternate(64, size), spool)


def test_a_message_ending_just_past_the_limit_does_not_make_a_stage():
    """Messages of varied sizes, every second deleted: once the first stage
    is written the gap is big enough, and each batch is written directly
    (a batch judged by what it writes, not by the room it has, was staged
    again and again when a message ended just past the limit)."""
    import random
    rnd = random.Random(5)
    sizes = [rnd.randint(1000, 30000) for _ in range(10000)]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    pieces = [(offsets[i], offsets[i + 1], None) for i in range(1, len(sizes), 2)]
    segments, literal, start, total = compact.plan(pieces, b"F" * H)
    kinds = [kind for kind, *_ in compact.batches(segments, start, total)]
    assert kinds[:2] == ["stage", "write"] and set(kinds[2:]) == {"write"}
    assert len(kinds) <= 10


def test_a_small_gap_is_staged():
    size = 1000
    spool = os.urandom(size * 200)
    pieces = [(i * size, (i + 1) * size, None) for i in range(200) if i != 3]
    pieces[3:3] = [(3 * size, 3 * size + 10, None)]       # a shorter message 4
    segments, literal, start, total = compact.plan(pieces, spool[:H])
    out, kinds = run_batches(segments, start, total, spool, literal)
    assert out == expected_output(pieces, spool)
    assert "stage" in kinds


def test_growing_messages_stage_up_to_the_end():
    size = 1000
    spool = os.urandom(size * 50)
    pieces = []
    for i in range(50):
        pieces += [(i * size, i * size + 100, b"X-UIDL: %d\n" % i + spool[i * size:i * size + 100]),
                   (i * size + 100, (i + 1) * size, None)]
    segments, literal, start, total = compact.plan(pieces, spool[:H])
    assert total > len(spool)
    out, kinds = run_batches(segments, start, total, spool + bytes(total - len(spool)), literal)
    assert out == expected_output(pieces, spool)
    assert kinds == ["stage", "write"]


def random_pieces(rnd, spool_sizes):
    """(spool bytes, pieces) of a random plan: messages deleted, headers
    grown, shrunk or changed in place, the rest kept."""
    offsets = [sum(spool_sizes[:i]) for i in range(len(spool_sizes) + 1)]
    spool = os.urandom(offsets[-1])
    pieces = []
    for i, n in enumerate(spool_sizes):
        if rnd.random() < 0.4:
            continue
        a, b = offsets[i], offsets[i + 1]
        cut = a + min(n, 20)
        change = rnd.random()
        if change < 0.2:
            pieces += [(a, cut, os.urandom(cut - a + rnd.randint(-5, 40))), (cut, b, None)]
        elif change < 0.3:
            pieces += [(a, cut, os.urandom(cut - a)), (cut, b, None)]
        else:
            pieces.append((a, b, None))
    return spool, pieces


@pytest.mark.parametrize("seed", range(30))
def test_random_plans_never_overwrite_what_is_still_read(seed):
    import random
    rnd = random.Random(seed)
    spool, pieces = random_pieces(rnd, [rnd.choice([30, 200, 5000, 70000])
                                         for _ in range(rnd.randint(1, 60))])
    segments, literal, start, total = compact.plan(pieces, spool[:H])
    disk = spool + bytes(max(0, total - len(spool)))
    out, _ = run_batches(segments, start, total, disk, literal)
    assert out == expected_output(pieces, spool)


# --- on disk ---------------------------------------------------------------------------

MSGS = list(corpus.messages(30, seed=23))
MAIL = corpus.mbox_bytes(MSGS)
NEW = corpus.mbox_bytes(list(corpus.messages(2, seed=24)))


def settings_for(path, server: bool) -> Settings:
    s = Settings()
    s.spool_dir = str(path)
    s.server_mode = server
    s.locking = ("flock",)          # a "killed" session here leaves no dot-lock behind
    return s


def session(path, server: bool, deleted=(), seen=(), during=b""):
    """Log in, deliver `during`, delete and read, QUIT; the QUIT's error or None."""
    drop = open_maildrop(settings_for(path, server), "alice", RecordingLog())
    try:
        n = len(drop.messages)
        if during:
            deliver(path, during)
        dele, read = bytearray(n), bytearray(n)
        for i in deleted:
            dele[i] = 1
        for i in seen:
            read[i] = 1
        try:
            drop.update(dele, read)
        except MaildropError as exc:
            return exc
    finally:
        drop.close()
    return None


def deliver(path, data: bytes) -> None:
    """Append as a delivery agent does, with the lock popper takes here (flock)."""
    with open(os.path.join(str(path), "alice"), "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(data)


CASES = {
    "every second": (list(range(0, 30, 2)), [1, 3]),
    "the first": ([0], []),
    "the last": ([29], [5]),
    "nothing, one read": ([], [7]),
    "all": (list(range(30)), []),
    "a run in the middle": ([10, 11, 12, 13], [2]),
}


@pytest.mark.parametrize("uidl_first", [True, False], ids=["seen before", "first session"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_server_mode_writes_what_normal_mode_writes(tmp_path, case, uidl_first):
    deleted, seen = CASES[case]
    start = MAIL
    if uidl_first:                  # the UIDs a first session makes (salted with the time)
        (tmp_path / "alice").write_bytes(MAIL)
        assert session(tmp_path, False) is None
        start = (tmp_path / "alice").read_bytes()
    out = {}
    for server in (False, True):
        d = tmp_path / str(server)
        d.mkdir()
        (d / "alice").write_bytes(start)
        assert session(d, server, deleted, seen, during=NEW) is None
        out[server] = (d / "alice").read_bytes()
        assert sorted(os.listdir(str(d))) in (["alice"], [".alice.cache", "alice"])
    if uidl_first:
        assert out[False] == out[True]
    else:
        assert [re.sub(rb"\nX-UIDL: [^\n]*", b"", data) for data in out.values()] == \
            [re.sub(rb"\nX-UIDL: [^\n]*", b"", out[False])] * 2


@pytest.mark.parametrize("late", [False, True], ids=["nothing came", "mail came at once"])
def test_the_rewritten_spool_is_cached_as_a_scan_finds_it(tmp_path, late):
    """The QUIT scans the new spool while it is cut, and caches the table
    after the reply, under the key the spool had when the update was done:
    mail delivered between the two makes the cache unused (the next login
    scans and finds it), never a table without it."""
    from popper.maildrop import cache
    from popper.maildrop.scan import scan
    (tmp_path / "alice").write_bytes(MAIL)
    settings = settings_for(tmp_path, True)
    assert session(tmp_path, True) is None
    drop = open_maildrop(settings, "alice", RecordingLog())
    n = len(drop.messages)
    dele = bytearray(n)
    for i in range(0, n, 3):
        dele[i] = 1
    drop.update(dele, bytearray([1]) * n)
    if late:
        deliver(tmp_path, NEW)
    drop.close()
    spool = str(tmp_path / "alice")
    table = cache.load(settings, "alice", os.stat(spool))
    if late:                        # no cache, or one with the new mail in it
        assert table is None or len(table[0]) == n - len(range(0, n, 3)) + 2
        again = open_maildrop(settings, "alice", RecordingLog())
        assert len(again.messages) == n - len(range(0, n, 3)) + 2
        again.close()
        return
    fd = os.open(spool, os.O_RDONLY)
    try:
        fresh = scan(fd).messages
    finally:
        os.close(fd)
    cached, _ = table
    assert list(cached) and [m.as_tuple() for m in cached] == [m.as_tuple() for m in fresh]


# --- kills and errors at every call --------------------------------------------------

class Kill(BaseException):
    """kill -9: nothing catches it, nothing after it runs."""


CHANGING = ["pwrite", "pwritev", "write", "ftruncate", "fsync", "fdatasync", "rename", "unlink",
            "copy_file_range"]


class Injector:
    """Makes the n-th call (counting all of CHANGING) fail: fault is Kill
    (then every later call too), or an errno (once, or sticky: every later
    call of that function too, as a full disk fails every write)."""

    def __init__(self, monkeypatch, n, fault, sticky):
        self.count, self.n, self.fault, self.sticky, self.hit = 0, n, fault, sticky, None
        for name in CHANGING:
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self._wrap(getattr(os, name), name))

    def _wrap(self, real, name):
        def call(*args, **kwargs):
            self.count += 1
            if self.count == self.n:
                self.hit = name
            if self.count == self.n or self.count > self.n and (
                    self.fault is Kill or self.sticky and name == self.hit):
                if self.fault is Kill:
                    raise Kill()
                raise OSError(self.fault, os.strerror(self.fault))
            return real(*args, **kwargs)
        return call


def spool_ids(data: bytes):
    return [(message_id(m), digest(m)) for m in split_mbox(data)]


def prepared(path) -> bytes:
    (path / "alice").write_bytes(MAIL)
    assert session(path, True) is None          # X-UIDL written, the cache made
    return (path / "alice").read_bytes()


def trial(path, monkeypatch, deleted, n, fault, sticky):
    """The QUIT with a fault at call n, then a clean session; None if n is
    past the QUIT's calls, else the problems found."""
    before = prepared(path)
    kept_ids = [x for i, x in enumerate(spool_ids(before)) if i not in deleted]
    all_ids = spool_ids(before)
    drop = open_maildrop(settings_for(path, True), "alice", RecordingLog())
    count = len(drop.messages)
    deliver(path, NEW)
    dele = bytearray(count)
    for i in deleted:
        dele[i] = 1
    with monkeypatch.context() as m:
        # The pure writer: the injector counts Python's calls (test_faults.py
        # injects into the C writer's, under strace).
        m.setattr(compact, "write_batch", compact.pure_write_batch)
        inject = Injector(m, n, fault, sticky)
        reply = "+OK"
        try:
            drop.update(dele, bytearray(count))
        except MaildropError:
            reply = "-ERR"
        except Kill:
            reply = "killed"
        try:
            drop.close()
        except (Kill, OSError):
            for fd in (drop.temp_fd, drop.spool_fd):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
    if inject.hit is None:
        return None
    problems = []
    data = (path / "alice").read_bytes()
    journal = Journal(str(path / ".alice.pop")).read()
    committed = isinstance(journal, Compact)
    if reply != "killed" and mbox_problem(data) and not (reply == "+OK" and committed):
        problems.append("after %s: %s" % (reply, mbox_problem(data)))
    late = corpus.mbox_bytes(list(corpus.messages(1, seed=25)))
    deliver(path, late)
    assert session(path, False) is None
    data = (path / "alice").read_bytes()
    got = spool_ids(data)
    extra = spool_ids(NEW + late)
    if got not in (kept_ids + extra, all_ids + extra):
        problems.append("%s: the spool holds %d messages, not %d or %d"
                        % (reply, len(got), len(kept_ids + extra), len(all_ids + extra)))
    elif reply == "+OK" and got != kept_ids + extra:
        problems.append("+OK, but the deletions were not applied")
    if quarantine_files(path):
        problems.append("a quarantine file")
    return ["#%d %s (%s): %s" % (n, inject.hit, fault, p) for p in problems]


FAULTS = [("kill", Kill, False), ("ENOSPC", errno.ENOSPC, True), ("EIO", errno.EIO, False)]
DELETIONS = {"every second": list(range(1, 30, 2)), "the first": [0],
             "the last three": [27, 28, 29]}


@pytest.mark.parametrize("deletions", sorted(DELETIONS))
@pytest.mark.parametrize("fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_at_every_call_of_the_quit_loses_nothing(tmp_path, monkeypatch, fault,
                                                         deletions):
    _, what, sticky = fault
    problems, n = [], 1
    while True:
        d = tmp_path / str(n)
        d.mkdir()
        found = trial(d, monkeypatch, DELETIONS[deletions], n, what, sticky)
        shutil.rmtree(str(d))
        if found is None:
            break
        problems += found
        n += 1
    assert n > 10
    assert not problems, "\n".join(problems)


def test_compaction_records_read_back_as_written(tmp_path):
    journal = Journal(str(tmp_path / ".alice.pop"))
    for record in (Compact(10, 20, 30, 40, b"From x", 50, 60, "ab", "cd"),
                   Compact(10, 20, 30, 40, b"\0From", 50, 60, "ab", None)):
        journal.write(record)
        assert journal.read() == record


# --- the gathered writes ---------------------------------------------------------------

@pytest.mark.parametrize("how", ["short writes", "no pwritev"])
def test_write_pieces_writes_every_piece_in_order(tmp_path, monkeypatch, how):
    """files.write_pieces: a kernel that takes a few bytes at a time, or a
    Python without os.pwritev (3.6), still gets every byte at its place."""
    from popper.maildrop import files
    if how == "no pwritev":
        monkeypatch.delattr(os, "pwritev", raising=False)
    else:
        if not hasattr(os, "pwritev"):
            pytest.skip("no os.pwritev on this Python (3.6): write_pieces joins the pieces")
        real = os.pwritev

        def short(fd, buffers, pos):
            data = b"".join(bytes(b) for b in buffers)[:7]
            return real(fd, [data], pos)
        monkeypatch.setattr(os, "pwritev", short)
    pieces = [b"abc", memoryview(b"--defgh--")[2:7], b"", bytes(range(50))] + \
        [b"%d," % i for i in range(files.IOV_MAX + 5)]
    fd = os.open(str(tmp_path / "f"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        end = files.write_pieces(fd, pieces, 10)
        want = b"".join(bytes(p) for p in pieces)
        assert end == 10 + len(want)
        assert os.pread(fd, end + 1, 0) == bytes(10) + want
    finally:
        os.close(fd)


def test_background_work_runs_at_once_when_no_thread_can_start(monkeypatch):
    """files.Background (the compaction's cut, the cache's scan, normal
    mode's emptier): a thread that cannot be started (RuntimeError, as
    under a process limit) means the work runs in line, never not at all;
    what ended it, an OSError or not, is wait()'s to return."""
    import threading
    from popper.maildrop import files

    def no_thread(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    done = []
    work = files.Background(done.append, 1)
    assert done == [1] and work.wait() is None and not work.running()

    def fails():
        raise Kill()
    assert isinstance(files.Background(fails).wait(), Kill)


# --- the native planner ----------------------------------------------------------------

needs_native = pytest.mark.skipif(not compact.native.BUILT, reason="the C extension is not built")

LONG = (b"From big@example.org Mon Jan  1 00:00:00 2024\nSubject: big\nStatus: O\n"
        + b"X-Long: " + b"h" * 70000 + b"\n\n" + b"b" * (compact.PIECE + 3000) + b"\n\n")
ODD = [b"From a@b Mon Jan  1 00:00:00 2024\nstatus: R\nx-uidl: mine\nX-UIDL: two\n\nbody\n\n",
       b"From c@d Mon Jan  1 00:00:00 2024\r\nSubject: crlf\r\n\r\nline\r\n\r\n",
       b"From e@f Mon Jan  1 00:00:00 2024\n\n",
       b"From g@h Mon Jan  1 00:00:00 2024\nSubject: no blank line at the end\n\nlast"]
SPOOLS = {
    "mbox": MAIL,
    "odd mbox": ODD[0] + MAIL[:20000] + LONG + ODD[1] + ODD[2] + ODD[3],
    "a long first message": LONG + MAIL[:9000],
    "MMDF, a bare first message": b"\x01\x01\x01\x01\n\nbare\n\x01\x01\x01\x01\n" + b"".join(
        b"\x01\x01\x01\x01\n" + m.data + b"\x01\x01\x01\x01\n" for m in MSGS[:3]),
    "MMDF": b"".join(b"\x01\x01\x01\x01\n" + m.data + b"\x01\x01\x01\x01\n" for m in MSGS[:12]),
}


@needs_native
@pytest.mark.parametrize("name", sorted(SPOOLS))
def test_the_native_planner_plans_what_the_pure_one_does(tmp_path, monkeypatch, name):
    """_native/compact.c against plan(output_pieces()): every deletion
    pattern, read or not, headers rewritten or not, Status: added or not,
    the first bytes under the marker changed or not."""
    pure = compact.pure_plan_spool

    def not_here(*args):
        raise AssertionError("the native planner handed the plan to the pure one")
    monkeypatch.setattr(compact, "pure_plan_spool", not_here)
    (tmp_path / "alice").write_bytes(SPOOLS[name])
    settings = settings_for(tmp_path, True)
    drop = open_maildrop(settings, "alice", RecordingLog())
    try:
        fd, n = drop.spool_fd, len(drop.messages)
        first = os.pread(fd, H, 0)
        compared = 0
        for kept in (list(range(n)), list(range(1, n)), list(range(0, n, 2)), [n - 1],
                     list(range(n - 1)), list(range(0, n, 3))):
            for seen in (bytearray(n), bytearray(b"\1" * n), bytearray(i % 2 for i in range(n))):
                for headers in (False, True):
                    for add_status in (False, True):
                        settings.update_status_headers = add_status
                        args = (drop, fd, kept, seen, headers, [], first)
                        native = compact.native_plan_spool(*args)
                        assert native == pure(*args), (kept, seen, headers)
                        compared += bool(native[0])
        assert compared > 50
    finally:
        drop.restore()
        drop.close()


@needs_native
def test_the_native_planner_leaves_what_it_does_not_plan_to_the_pure_one(tmp_path):
    """Mail of the other format (its From line is made with the time), or
    mail that came during the session: no native plan; a spool cut short
    since the scan: the read fails as the pure planner's does."""
    (tmp_path / "alice").write_bytes(MAIL)
    drop = open_maildrop(settings_for(tmp_path, True), "alice", RecordingLog())
    try:
        fd, n = drop.spool_fd, len(drop.messages)
        m = drop.messages
        columns = (m.start, m.header, m.body, m.content_end, m.end, m.flags)
        uids = b"".join(m.uid)
        from array import array
        from itertools import accumulate
        ends = array("q", accumulate(map(len, m.uid)))
        kept, seen = array("q", range(n)), bytearray(n)

        def plan(mmdf):
            return compact.native.plan_spool(fd, kept, columns, uids, ends, seen, True, True,
                                               mmdf, os.pread(fd, H, 0), H, compact.PIECE)
        assert plan(None) is not None
        assert plan(b"\x01\x01\x01\x01\n") is None          # mbox mail into an MMDF spool
        os.ftruncate(fd, m.start[n - 1] + 10)
        for planner in (compact.native_plan_spool, compact.pure_plan_spool):
            with pytest.raises(OSError) as failed:
                planner(drop, fd, list(range(n)), seen, True, [], os.pread(fd, H, 0))
            assert failed.value.errno == errno.EIO
    finally:
        drop.close()


@needs_native
@pytest.mark.parametrize("seed", range(12))
def test_the_twin_writers_compact_a_real_spool_alike(tmp_path, monkeypatch, seed):
    """A random plan carried out on files (its stages, the marker, the cut)
    by the C writer and by the pure one: both give the planned spool."""
    import random
    rnd = random.Random(seed)
    sizes = [rnd.choice([10, 30, 200, 5000, 70000, compact.PIECE + 77])
             for _ in range(rnd.randint(1, 40))]
    spool, pieces = random_pieces(rnd, sizes)
    want = expected_output(pieces, spool)
    for writer in ("native", "pure"):
        monkeypatch.setattr(compact, "write_batch", getattr(compact, writer + "_write_batch"))
        d = tmp_path / writer
        d.mkdir()
        (d / "alice").write_bytes(spool)
        (d / ".alice.pop").write_bytes(b"")
        spool_fd = os.open(str(d / "alice"), os.O_RDWR)
        temp_fd = os.open(str(d / ".alice.pop"), os.O_RDWR)
        try:
            first = os.pread(spool_fd, H, 0)
            work = compact.start(spool_fd, temp_fd, Journal(str(d / ".alice.pop")),
                                 compact.plan(pieces, first), first)
            work.begin()
            work.run()
        finally:
            os.close(spool_fd)
            os.close(temp_fd)
        assert (d / "alice").read_bytes() == want, writer
