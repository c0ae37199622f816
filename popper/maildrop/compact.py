"""Server mode's QUIT: the spool rewritten in place, from the first changed
message on, by compaction toward the front (docs/maildrop.md, "Server
mode's QUIT").

The new spool is a list of segments, each written at its destination (one
after the other, from `start`, the end of the unchanged prefix): spool
bytes [a, b) (a kept message, or the part of it that is unchanged; mail
delivered during the session), or bytes of the plan (a rewritten header,
a separator line).  A kept message only moves toward the front (its
destination is at or below its source), unless messages grow (X-UIDL:,
Status: added).  The plan -- the segments, the bytes they need, the
spool's first bytes -- is written into the (empty) temporary drop first,
and the journal says `compact` with its digest: once the marker is on the
disk the update is made, by this QUIT or, after a crash or an error, by
the next login from the plan.

Batches: segments whose destinations lie below every spool byte a
segment not yet on the disk still reads (`need`) are written, fdatasync'ed,
and then a progress slot in the temporary drop (two slots, alternately,
each with its checksum: a torn write leaves the other, one step behind,
which is still true) says how far the compaction has got (k: the next
segment; w: where it goes).  The gap (need - w) is the bytes deleted so
far: with half of the messages deleted it doubles with every batch.  Where
the next segment overlaps the bytes it reads, its spool bytes (and those
of the next ones, STAGE bytes at least, as many as the writes need) are
copied into the temporary drop first (the stage), fdatasync'ed, and the
progress slot says so before the spool is overwritten; the staged batch
reads them from there.  Messages that grow make the writes run ahead of
what they read: the stage then takes everything up to the end, which
costs what the old full rewrite cost.

The spool's first bytes are files.MARKER from before the first write until
the end (a mail reader cannot take a half-compacted spool for a mailbox);
the real ones (`head`) are in the record.  The spool never gets shorter
until the end: deliveries after a crash land beyond `bound` (the old end,
or the new one if the spool grows: it is extended with zeros first).  At
the end a last progress slot says it is all written, the spool is cut to
its new size and its head put back; the journal is removed, then the temp
drop (a plan no journal names is known by MAGIC, and is no mail).

The plan is written before the `compact` record; the update is made once
the marker is on the disk (before it, an error undoes what little was
done).
"""

import collections
import os
from array import array
from itertools import accumulate, chain

from popper import digests, native
from popper.maildrop import files
from popper.maildrop.journal import Compact
from popper.maildrop.rewrite import SMALL_BODY, _format, _Window, output_pieces

SPOOL, PLAN = 0, 1          # where a segment's bytes are read
PIECE = 4 << 20             # most bytes a spool segment covers: batches end between them
STAGE = 16 << 20            # most bytes a stage takes beyond what the writes need
MIN_BATCH = 4 << 20         # a direct batch writes this much at least (or a 16th, if less)
SLOT = 512                  # a progress slot's size; the two follow the plan
MAGIC = b"\0popper compaction plan\n"     # a plan's first bytes: no mail starts so
HEAD = len(files.MARKER)


class Segment(collections.namedtuple("Segment", "src a b dest")):
    """Bytes [a, b) of the spool (src SPOOL) or of the plan (PLAN), put at dest."""
    __slots__ = ()

    @property
    def end(self) -> int:
        return self.dest + self.b - self.a

    @property
    def in_place(self) -> bool:
        return self.src == SPOOL and self.a == self.dest


class Progress(collections.namedtuple("Progress", "seq k w sa sb at")):
    """Segments before k are on the disk (w: where segment k goes); spool
    bytes [sa, sb) are staged in the temp drop at `at` (sb 0: none)."""
    __slots__ = ()


class Compacted(collections.namedtuple("Compacted", "total bound head tail")):
    """Not a record: recovery's view of a compaction all written (the last
    progress slot says so), perhaps not cut to size, perhaps behind the
    marker (recovery.plan)."""
    __slots__ = ()
    op = "compacted"


class Unplannable(Exception):
    """The plan in the temp drop is not the one the record names."""


def plan(pieces, first: bytes):
    """The segments of the new spool, from output_pieces' (a, b, data) of
    the spool, and the bytes of the plan they read: (segments, literal,
    start, total).  first: the spool's first HEAD bytes, which the marker
    covers while the compaction runs (a piece reading them takes them from
    here).  The unchanged prefix (pieces at their own place) is left out:
    start is where the first segment goes, total the new spool's size."""
    # Segments are built as lists [src, a, b, dest], each merged into the
    # last one where it continues it (the same source, the next bytes, the
    # next place): a message's unchanged body and the next one's separator
    # line, runs of new bytes.
    segments, literal, size, dest = [], [], 0, 0
    last = [None, 0, 0, 0]
    for a, b, data in pieces:
        copy = data is None
        if copy:
            if b <= a:
                continue
            if not segments and a == dest:
                dest = b                # the unchanged prefix stays where it is
                continue
            if a < HEAD:                # under the marker: taken from `first`
                data, a = first[a:min(b, HEAD)], min(b, HEAD)
        if data:
            n = len(data)
            if last[0] == PLAN and last[2] == size and last[3] + last[2] - last[1] == dest:
                last[2] += n
            else:
                last = [PLAN, size, size + n, dest]
                segments.append(last)
            literal.append(data)
            size += n
            dest += n
        if copy and a < b:
            if last[0] == SPOOL and last[2] == a and last[3] + last[2] - last[1] == dest:
                last[2] = b
            else:
                last = [SPOOL, a, b, dest]
                segments.append(last)
            dest += b - a
    start = segments[0][3] if segments else dest
    return _split(segments), b"".join(literal), start, dest


def pure_plan_spool(drop, spool_fd: int, kept, seen, headers: bool, extras, first: bytes):
    """The plan of server mode's QUIT (plan's result): the spool's kept
    messages and the mail that came during the session (extras), as
    rewrite.output_pieces gives them."""
    return plan(output_pieces(drop, spool_fd, kept, seen, headers, extras), first)


def native_plan_spool(drop, spool_fd: int, kept, seen, headers: bool, extras, first: bytes):
    """pure_plan_spool's twin: the same plan from _native/compact.c, which
    reads only what the edits look at (each kept message's separator line
    and header, its last byte, its ending; not the bodies) and folds the
    pieces in C.  Mail that came during the session, or a message it does
    not plan (of the other format), leaves it all to the pure planner."""
    messages = drop.messages
    planned = None if extras else native.plan_spool(
        spool_fd, array("q", kept),
        (messages.start, messages.header, messages.body, messages.content_end, messages.end,
         messages.flags),
        b"".join(messages.uid), array("q", accumulate(map(len, messages.uid))), seen, headers,
        drop.settings.update_status_headers, _format(drop, spool_fd, kept, extras), first,
        HEAD, PIECE)
    if planned is None:
        return pure_plan_spool(drop, spool_fd, kept, seen, headers, extras, first)
    flat, literal, start_, total = planned
    it = iter(flat)
    return [Segment._make(seg) for seg in zip(it, it, it, it)], literal, start_, total


plan_spool = native_plan_spool if native.NATIVE else pure_plan_spool


def _split(segments) -> list:
    """Spool segments cut into PIECE bytes at most, so that a batch can end
    within a long run of unchanged mail."""
    out = []
    for src, a, b, dest in segments:
        if src == SPOOL and b - a > PIECE:
            for at in range(a, b, PIECE):
                out.append(Segment(SPOOL, at, min(at + PIECE, b), dest + at - a))
        else:
            out.append(Segment(src, a, b, dest))
    return out


def needs(segments) -> list:
    """need[k]: the first spool byte that segments k and after read (in
    place ones excepted: their bytes are where they go); None: none."""
    need, nxt = [None] * (len(segments) + 1), None
    for k in range(len(segments) - 1, -1, -1):
        seg = segments[k]
        if seg.src == SPOOL and not seg.in_place:
            nxt = seg.a
        need[k] = nxt
    return need


def batches(segments, start: int, total: int, k: int = 0, stage=None):
    """The work from segment k on, batch by batch, as (kind, k, j, sa, sb):
    kind "write" writes segments [k, j) (reading spool bytes [sa, sb) from
    the stage, if sb), "stage" copies spool [sa, sb) into the stage first.
    A pure function of the segments: the QUIT and the recovery of a crash
    run the same batches.  stage: (sa, sb) staged already for segment k."""
    need, n = needs(segments), len(segments)
    ends = [seg.end for seg in segments]
    # The fewest bytes a direct batch writes: a 16th of the new spool's
    # changed part, at most MIN_BATCH (so a few more than log2 batches).
    least = min(MIN_BATCH, max(HEAD, (total - start) // 16))
    while k < n:
        while k < n and segments[k].in_place:
            k += 1
        if k == n:
            break
        if stage:
            sa, sb = stage
            j = k
            while j < n and not (segments[j].src == SPOOL and not segments[j].in_place
                                 and segments[j].a >= sb):
                j += 1
            yield "write", k, j, sa, sb
            k, stage = j, None
            continue
        limit = need[k]
        j = k
        while j < n and (segments[j].in_place or limit is None or ends[j] <= limit):
            j += 1
        # Direct if segment k fits and the room below `limit` is not small
        # (the stage below stops by the same measure: a message that ends
        # just past the limit must not make the batch a stage again).
        if j > k and (limit is None or
                      limit - segments[k].dest >= min(least, total - segments[k].dest)):
            yield "write", k, j, 0, 0
            k = j
            continue
        # Segment k would overwrite bytes not yet on the disk, or the gap is
        # so small that the batch would be (each costs two fdatasyncs):
        # stage from need[k] until what the staged segments write stays
        # below what the next one reads, and until the next batch can be
        # written directly and is not small (or STAGE bytes are staged: a
        # small gap stays small).
        sa, j = need[k], k
        while True:
            j += 1
            while j < n and not (segments[j].src == SPOOL and not segments[j].in_place):
                j += 1
            if j == n:
                break
            staged_to = segments[j].a
            if staged_to > sa and ends[j - 1] <= staged_to and (staged_to - sa >= STAGE or (
                    ends[j] <= staged_to and staged_to - ends[j - 1] >= least)):
                break
        sb = max(seg.b for seg in segments[k:j] if seg.src == SPOOL)
        yield "stage", k, j, sa, sb
        stage = (sa, sb)


def first_bytes(segments, literal: bytes, spool_fd: int, start: int, first: bytes) -> bytes:
    """The new spool's first HEAD bytes (its own, if the prefix covers them)."""
    out = first[:start]
    for seg in segments:
        if len(out) >= HEAD:
            break
        want = min(seg.b, seg.a + HEAD - len(out))
        out += literal[seg.a:want] if seg.src == PLAN else os.pread(spool_fd, want - seg.a, seg.a)
    return out[:HEAD]


class _Out:
    """Bytes gathered for consecutive destinations of the spool (views into
    what was read, not copied), written a few MB at a time; never into the
    marker's place (the first HEAD bytes)."""

    LIMIT = 4 << 20

    def __init__(self, fd: int):
        self.fd, self.pos, self.pieces, self.size = fd, None, [], 0

    def at(self, dest: int) -> None:
        if self.pos is None:
            self.pos = dest

    def add(self, data) -> None:
        self.pieces.append(data)
        self.size += len(data)
        if self.size >= self.LIMIT:
            self.flush(self.pos + self.size)

    def flush(self, then) -> None:
        """Write what is gathered; `then` is where the next bytes go (None:
        wherever the next segment says)."""
        pieces, pos = self.pieces, self.pos
        if pieces and pos < HEAD:
            data = b"".join(pieces)
            pieces, pos = [memoryview(data)[HEAD - pos:]], HEAD
        if pieces:
            files.write_pieces(self.fd, pieces, pos)
        self.pieces, self.size, self.pos = [], 0, then


def pure_write_batch(spool_fd: int, temp_fd: int, segments, literal: bytes, sa: int, sb: int,
                     stage_at: int) -> None:
    """A batch's segments (their destinations follow one another), the
    small ones gathered into one buffer and written a few MB at a time,
    the large ones copied in the kernel; spool bytes [sa, sb) read from
    the stage (the temp drop at stage_at).  Nothing a batch reads is
    written by it, so its reads may run ahead (_Window)."""
    out = _Out(spool_fd)
    spool, stage = _Window(spool_fd), _Window(temp_fd)
    literal = memoryview(literal)
    spool_view, stage_view = spool.view, stage.view
    for src, a, b, dest in segments:
        if src == PLAN:
            out.at(dest)
            out.add(literal[a:b])
            continue
        if a == dest:               # in place
            out.flush(None)
            continue
        out.at(dest)
        staged = sa <= a and b <= sb
        if staged:
            a, b = stage_at + a - sa, stage_at + b - sa
        if b - a > SMALL_BODY:
            out.flush(dest + b - a)
            if dest < HEAD:         # the marker's place: the head goes there at the end
                a += HEAD - dest
            files.copy_range(temp_fd if staged else spool_fd, spool_fd,
                             a, b, max(dest, HEAD))
        else:
            out.add((stage_view if staged else spool_view)(a, b))
    out.flush(None)


def native_write_batch(spool_fd: int, temp_fd: int, segments, literal: bytes, sa: int, sb: int,
                       stage_at: int) -> None:
    """pure_write_batch's twin: _native/compact.c reads each segment's bytes
    straight into its buffer (none of the deleted mail between them) and
    writes them with pwrite, large ones too."""
    native.write_batch(spool_fd, temp_fd, array("q", chain.from_iterable(segments)), literal,
                       sa, sb, stage_at, HEAD)


write_batch = native_write_batch if native.NATIVE else pure_write_batch


# --- the plan in the temporary drop ---------------------------------------------------

def encode(segments, literal: bytes) -> bytes:
    """The plan as it is kept: MAGIC, the literal bytes, then a line a segment."""
    table = "".join("%d %d %d %d\n" % seg for seg in segments).encode("ascii")
    return MAGIC + literal + table


def decode(data: bytes, table: int):
    """(segments, literal) from encode()'s bytes; table: where the table begins."""
    try:
        segments = [Segment(*map(int, line.split()))
                    for line in data[table:].decode("ascii").splitlines()]
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Unplannable("the plan's table cannot be read") from None
    return segments, data[len(MAGIC):table]


def digest(data: bytes) -> str:
    return digests.md5(data).hexdigest()


def _slot_bytes(p: Progress, fp: str) -> bytes:
    line = "%d %d %d %d %d %d" % p
    check = digests.md5(("%s %s" % (fp, line)).encode("ascii")).hexdigest()
    return ("%s %s\n" % (line, check)).encode("ascii")


def read_progress(temp_fd: int, record):
    """The newest progress slot that is whole and names this plan, or None."""
    best = None
    for i in (0, 1):
        raw = os.pread(temp_fd, SLOT, record.plan + i * SLOT).split(b"\n")[0]
        words = raw.split()
        try:
            p = Progress(*map(int, words[:6]))
        except (ValueError, TypeError):
            continue
        if len(words) == 7 and _slot_bytes(p, record.fp).split() == words and (
                best is None or p.seq > best.seq):
            best = p
    return best


# --- doing it ---------------------------------------------------------------------------

class Compaction:
    """One compaction: the spool, the temp drop (plan, slots, stage), the
    journal's `compact` record."""

    def __init__(self, spool_fd: int, temp_fd: int, journal, record, segments, literal,
                 refresh=None):
        self.spool_fd, self.temp_fd, self.journal = spool_fd, temp_fd, journal
        self.record, self.segments, self.literal = record, segments, literal
        self.refresh = refresh
        self.stage_at = record.plan + 2 * SLOT

    def begin(self) -> None:
        """After the record: the spool extended to its bound (in zeros), its
        first bytes the marker, on the disk."""
        spool_fd, record = self.spool_fd, self.record
        if files.size(spool_fd) < record.bound:
            os.ftruncate(spool_fd, record.bound)
            os.fsync(spool_fd)
        if self.segments:
            os.pwrite(spool_fd, files.MARKER, 0)
            os.fdatasync(spool_fd)

    def run(self, progress=None, cut: bool = True, beside=None) -> None:
        """From progress (None: the start) to the end: every batch, then the
        last progress slot, and (cut) the spool cut to size and its head put
        back (the login that finishes a compaction leaves that to its
        recovery plan: mail may have come after the crash); beside() runs
        while the cut frees the blocks (finish)."""
        record, segments = self.record, self.segments
        seq = progress.seq if progress else 0
        k, stage = (progress.k, (progress.sa, progress.sb) if progress.sb else None) \
            if progress else (0, None)
        said = progress is not None and progress.k >= len(segments)   # all written, in a slot
        for kind, k, j, sa, sb in batches(segments, record.start, record.total, k, stage):
            if self.refresh:
                self.refresh()
            seq += 1
            if kind == "stage":
                files.copy_range(self.spool_fd, self.temp_fd, sa, sb, self.stage_at)
                os.fdatasync(self.temp_fd)
                self._progress(Progress(seq, k, segments[k].dest, sa, sb, self.stage_at))
                said = False
            else:
                self._write(segments[k:j], sa, sb)
                os.fdatasync(self.spool_fd)
                w = segments[j].dest if j < len(segments) else record.total
                self._progress(Progress(seq, j, w, 0, 0, 0))
                said = j >= len(segments)
        self.finish(cut, seq, said, beside)

    def finished(self, progress) -> Compacted:
        """Compacted, if progress says every segment is written, else None."""
        if progress is None or progress.k < len(self.segments):
            return None
        return Compacted(self.record.total, self.record.bound, self.record.head,
                         self.record.tail)

    def _write(self, segments, sa: int, sb: int) -> None:
        write_batch(self.spool_fd, self.temp_fd, segments, self.literal, sa, sb, self.stage_at)

    def _progress(self, p: Progress) -> None:
        files.write_at(self.temp_fd, _slot_bytes(p, self.record.fp),
                       self.record.plan + (p.seq % 2) * SLOT)
        os.fdatasync(self.temp_fd)

    def finish(self, cut: bool = True, seq: int = 0, said: bool = False, beside=None) -> None:
        """Every segment is on the disk: say so (the last progress slot,
        unless the last batch's said it: said), then put the spool's head
        back and cut it to its size, on the disk.  The cut (freeing the
        blocks of what was deleted takes a while) runs in the background
        while beside() runs: the new spool's bytes are all there (a crash
        before the fsync leaves the head and the cut on the disk in either
        order or not at all; the record covers each, recovery.plan)."""
        spool_fd, record = self.spool_fd, self.record
        total = record.total
        if not said:
            self._progress(Progress(seq + 1, len(self.segments), total, 0, 0, 0))
        if not cut:
            return
        files.write_at(spool_fd, record.head, 0)
        cutter = files.Background(self._cut)
        try:
            if beside is not None:
                beside()
        finally:
            failure = cutter.wait()
        if failure:
            raise failure

    def _cut(self) -> None:
        if files.size(self.spool_fd) > self.record.total:
            os.ftruncate(self.spool_fd, self.record.total)
        os.fsync(self.spool_fd)


def tail(spool_fd: int, total: int, bound: int):
    """The digest of the spool's bytes after a compaction's new end (up to
    PRINT of them; those the marker covers left out), which it never
    writes; None if there are none."""
    start = max(total, HEAD)
    if start >= bound:
        return None
    return digest(os.pread(spool_fd, min(files.PRINT, bound - start), start))


def load(spool_fd: int, temp_fd: int, journal, record, refresh=None) -> Compaction:
    """The compaction a `compact` record names, from the plan in the temp
    drop; Unplannable if that is not the plan the record names."""
    if files.size(temp_fd) < record.plan:
        raise Unplannable("the temporary drop is shorter than the plan")
    data = os.pread(temp_fd, record.plan, 0)
    if len(data) != record.plan or digest(data) != record.fp:
        raise Unplannable("the plan in the temporary drop is not the one the journal names")
    segments, literal = decode(data, record.table)
    return Compaction(spool_fd, temp_fd, journal, record, segments, literal, refresh)


def start(spool_fd: int, temp_fd: int, journal, planned, first: bytes,
          refresh=None) -> Compaction:
    """Write the plan of the compaction (planned: plan's result; first: the
    spool's first HEAD bytes, as it was planned with) and the `compact`
    record.  Nothing in the spool is changed yet."""
    end = files.size(spool_fd)
    segments, literal, start_, total = planned
    head = first_bytes(segments, literal, spool_fd, start_, first)
    data = encode(segments, literal)
    bound = max(end, total, HEAD if segments else 0)    # room for the marker, at least
    record = Compact(start_, total, end, bound, head, len(data), len(MAGIC) + len(literal),
                     digest(data), tail(spool_fd, total, bound))
    # The plan first, then the record that names it: a plan no journal
    # names is known by its MAGIC and left out (recovery.plan).
    if files.size(temp_fd):
        os.ftruncate(temp_fd, 0)
    files.write_at(temp_fd, data, 0)
    os.fdatasync(temp_fd)
    journal.write(record)
    return Compaction(spool_fd, temp_fd, journal, record, segments, literal, refresh)


def undo(c: Compaction, first: bytes) -> None:
    """A compaction that failed before its first batch: the spool as it was
    (its size, its first bytes), the journal gone.  Raises if that fails
    (the record, still true, then has the next login finish the
    compaction)."""
    spool_fd = c.spool_fd
    if files.size(spool_fd) > c.record.end:
        os.ftruncate(spool_fd, c.record.end)
    if os.pread(spool_fd, HEAD, 0) != first:
        files.write_at(spool_fd, first, 0)
    os.fsync(spool_fd)
    c.journal.remove()
    os.ftruncate(c.temp_fd, 0)

