"""Recovery: from the journal's last record and what the files hold now,
where the mail is.

observe() reads the few facts a record's claims can be checked against;
plan() is a pure function from the record and those facts to a Plan: the
temp drop's first temp_len bytes hold mail, and so do these ranges of the
spool; `head` goes back at the spool's start first (a finished rewrite
whose marker is still there); `aside` are spool ranges nobody can read as
mail, to be kept in a file for the administrator; `bulletins` is the
highest bulletin number the mail holds by the record's word (0: none),
which the user's record must say before anything else is done.  The login moves the
ranges into the temp drop; the QUIT moves them before it rewrites.

A record that does not fit the files (another program or a person changed
them after popper stopped) never loses mail: the plan keeps everything
that may be mail, even if a message then appears twice, and says why in
`warning`, which the caller logs at LOG_CRIT.
"""

import collections
import os

from popper.maildrop import compact, files
from popper.maildrop.compact import Compacted
from popper.maildrop.journal import Append, Compact, Done, Move, Rewrite, Settled, Unreadable


class Plan(collections.namedtuple("Plan", "temp_len ranges head aside warning bulletins")):
    __slots__ = ()

    def __new__(cls, temp_len, ranges, head=None, aside=(), warning=None, bulletins=0):
        ranges = tuple((a, b) for a, b in ranges if b > a)
        aside = tuple((a, b) for a, b in aside if b > a)
        return super().__new__(cls, temp_len, ranges, head, aside, warning, bulletins)


class Facts(collections.namedtuple(
        "Facts", "spool_size temp_size marker printed head_ok mail_from appended plan_left")):
    """spool_size, temp_size: the files' sizes.  marker: the spool starts
    with files.MARKER.  printed: the spool still starts with the bytes the
    record fingerprinted (True where it fingerprinted none).  head_ok: the
    spool starts with a done record's head.  mail_from: {offset: the first
    offset at or after it that is not a NUL} for 0 and the record's offsets.
    appended: for an append record, how far the append went (appended()).
    plan_left: the temp drop holds a compaction's plan (compact.MAGIC), not mail."""
    __slots__ = ()


Facts.__new__.__defaults__ = (None, False)


def observe(record, spool_fd: int, temp_fd: int) -> Facts:
    spool_size = files.size(spool_fd)
    first = os.pread(spool_fd, len(files.MARKER), 0)
    printed = {Move: "s", Settled: "s", Rewrite: "n", Append: "s"}.get(type(record))
    printed = (record.fp is None or files.starts_with(spool_fd, getattr(record, printed),
                                                      record.fp)) if printed else True
    if isinstance(record, Compacted):   # not cut yet: the bytes after total are as they were
        printed = record.tail == compact.tail(spool_fd, record.total, record.bound)
    offsets = {0}
    if isinstance(record, Rewrite):
        offsets |= {record.n, record.bound}
    elif isinstance(record, Done):
        offsets.add(record.total)
    elif isinstance(record, Compacted):
        offsets |= {record.total, record.bound}
    elif isinstance(record, Compact):
        offsets.add(record.end)
    elif isinstance(record, Append):
        offsets.add(record.s + record.n)
    return Facts(spool_size, files.size(temp_fd), first == files.MARKER, printed,
                 isinstance(record, (Done, Compacted)) and first == record.head[:len(first)],
                 {pos: files.first_mail_byte(spool_fd, pos, spool_size) for pos in offsets},
                 appended(spool_fd, temp_fd, record) if isinstance(record, Append) else None,
                 os.pread(temp_fd, len(compact.MAGIC), 0) == compact.MAGIC)


def appended(spool_fd: int, temp_fd: int, record) -> str:
    """How far an append went: "whole" (the spool's n bytes at s are the
    temp drop's first n), "zeros" (they are a part of them, then the
    zeros the spool was extended with: cut short), or "none" (the spool
    was not extended: what follows s is mail delivered since)."""
    s, n = record.s, record.n
    if files.size(spool_fd) < s + n:
        return "none"
    pos = 0
    while pos < n:
        want = min(n - pos, files.COPY_CHUNK)
        mine, theirs = os.pread(temp_fd, want, pos), os.pread(spool_fd, want, s + pos)
        if mine != theirs:
            same = next(i for i in range(len(theirs)) if i >= len(mine) or mine[i] != theirs[i])
            pos += same
            break
        pos += want
    if pos == n:
        return "whole"
    return "zeros" if files.first_mail_byte(spool_fd, s + pos, s + n) == s + n else "none"


def plan(record, f: Facts) -> Plan:
    """Where the mail is, after `record` (None: no journal)."""
    whole_spool = [(f.mail_from[0], f.spool_size)]
    if record is None and f.plan_left:      # a compaction's plan no journal names: no mail
        f = f._replace(temp_size=0)
    if record is None:
        if f.marker:
            return Plan(f.temp_size, [], aside=[(0, f.spool_size)],
                        warning="the spool begins with popper's rewrite marker, but no "
                                "journal says how far the rewrite went")
        return Plan(f.temp_size, whole_spool)
    if isinstance(record, Unreadable):
        return _keep_all(f, "the journal cannot be read (%r)" % record.text[:200])
    if isinstance(record, Append):          # the temp drop holds bulletins, not mail
        if not f.printed:
            return Plan(0, whole_spool, warning="the spool was changed by another program "
                                                "after a session stopped appending bulletins "
                                                "to it; every message is kept")
        if f.appended == "whole":
            return Plan(0, whole_spool, bulletins=record.bull)
        if f.appended == "zeros":           # cut short: the bulletins come again
            return Plan(0, [(f.mail_from[0], record.s),
                            (f.mail_from[record.s + record.n], f.spool_size)])
        return Plan(0, whole_spool)
    if isinstance(record, Done):            # the spool is right; the temp drop is stale
        if f.spool_size < record.total or not (f.marker or f.head_ok):
            return Plan(0, whole_spool,
                        warning="the spool is not the one the finished update wrote; "
                                "it was changed since")
        return Plan(0, [(0, record.total), (f.mail_from[record.total], f.spool_size)],
                    head=record.head if f.marker else None)
    if isinstance(record, Compacted):       # the spool is right but may not be cut yet
        if f.spool_size < record.total or not (f.marker or f.head_ok):
            return Plan(0, whole_spool,
                        warning="the spool is not the one the finished update wrote; "
                                "it was changed since")
        new = f.mail_from[record.bound] if f.printed else f.mail_from[record.total]
        return Plan(0, [(0, record.total), (new, f.spool_size)],
                    head=record.head if f.marker else None)
    if isinstance(record, Compact):         # a compaction the login could not finish
        # (the temp drop holds its plan, not mail)
        if f.marker:                        # begun, but its plan is gone
            return Plan(0, [], aside=[(0, f.spool_size)],
                        warning="the plan of an interrupted compaction of the spool "
                                "cannot be read")
        if f.spool_size < record.end:
            return Plan(0, whole_spool, warning="the spool is shorter than an interrupted "
                                                "compaction found it; it was changed since")
        return Plan(0, [(f.mail_from[0], record.end),     # not begun: as it was
                        (f.mail_from[record.end], f.spool_size)])
    temp_len = record.tlen if isinstance(record, Rewrite) else record.t
    if temp_len > f.temp_size:
        return _keep_all(f, "the temporary drop is shorter than the journal says (%d bytes, "
                            "not %d)" % (f.temp_size, temp_len),
                         getattr(record, "bound", None))
    if isinstance(record, Move):            # the spool is as it was: undo the copy, copy again
        if not f.printed or any(b > record.s for _, b in record.ranges):
            return Plan(record.t, whole_spool,
                        warning="the spool was changed by another program after a session "
                                "stopped moving it")
        return Plan(record.t, list(record.ranges) + [(record.s, f.spool_size)])
    if isinstance(record, Settled):         # the spool's first s bytes are in the temp drop
        if f.printed:                       # not emptied yet
            return Plan(record.t, [(record.s, f.spool_size)], bulletins=record.bull)
        return Plan(record.t, whole_spool,  # emptied; deliveries since begin at 0
                    bulletins=record.bull)
    # Rewrite: the temp drop holds everything the spool held
    if f.marker:                            # the new mail came after the bound
        return Plan(record.tlen, [(f.mail_from[record.bound], f.spool_size)])
    if f.printed:                           # not started, or only preallocated (zeros)
        return Plan(record.tlen, [(f.mail_from[record.n], f.spool_size)])
    return Plan(record.tlen, whole_spool)   # given up and emptied


def _keep_all(f: Facts, why: str, bound: int = None) -> Plan:
    """The temp drop and the spool as they are, but for popper's own
    half-written rewrite, which is set aside."""
    why += "; every message is kept, and some may appear twice"
    if f.marker:
        end = f.spool_size if bound is None else min(bound, f.spool_size)
        return Plan(f.temp_size, [(f.mail_from.get(end, end), f.spool_size)],
                    aside=[(0, end)], warning=why)
    return Plan(f.temp_size, [(f.mail_from[0], f.spool_size)], warning=why)
