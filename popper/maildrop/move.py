"""Moving spool ranges into the temporary drop, journaled.

The login moves the spool's mail (and whatever recovery found) this way;
the QUIT moves the mail delivered during the session before it rewrites
the spool.  The spool is not changed by a move: a `move` record is written
first, the ranges are copied to the end of the temp drop's mail (in the
kernel, in the background while the caller scans them in the spool
itself) and fsync'ed.  What follows -- `settled` and emptying the spool,
or `rewrite` -- is the caller's.
"""

import collections
import os

from popper.maildrop import files
from popper.maildrop.journal import Move
from popper.maildrop.tempdrop import end_message

# Where a moved range went: spool [start, end) is at temp drop offset `at`.
Placement = collections.namedtuple("Placement", "start end at")


def move(spool_fd: int, temp_fd: int, journal, temp_len: int, ranges, refresh, scan=None):
    """Put the spool's `ranges` after the temp drop's first temp_len bytes.
    scan(placements), if given, runs while they are copied.  Returns the
    Move record written (None if there was nothing to move: then no record
    is written) and the placements.  Raises whatever failed, the temp drop
    cut back to temp_len (the record says so in any case)."""
    if files.size(temp_fd) > temp_len:
        os.ftruncate(temp_fd, temp_len)
    if not ranges:
        if scan:
            scan([])
        return None, []
    spool_size = files.size(spool_fd)
    record = Move(temp_len, spool_size, files.fingerprint(spool_fd, spool_size), tuple(ranges))
    journal.write(record)
    try:
        placements, pos = [], temp_len
        for a, b in ranges:
            pos = end_message(temp_fd, pos, os.pread(spool_fd, 1, a))
            placements.append(Placement(a, b, pos))
            pos += b - a
        copier = files.Background(_copy, spool_fd, temp_fd, placements, refresh)
        try:
            if scan:
                scan(placements)
        finally:
            failure = copier.wait()
        if failure:
            raise failure
    except BaseException:
        cut_back(temp_fd, temp_len)
        raise
    return record, placements


def _copy(spool_fd: int, temp_fd: int, placements, refresh) -> None:
    """The copier's work: each range into its place, then fsync."""
    for a, b, at in placements:
        files.copy_range(spool_fd, temp_fd, a, b, at, refresh)
    os.fsync(temp_fd)


def cut_back(temp_fd: int, temp_len: int) -> bool:
    """Undo a move: the temp drop back to its first temp_len bytes, if the
    system lets us (a record that says temp_len makes the rest meaningless
    anyway).  True if it is done."""
    try:
        if files.size(temp_fd) > temp_len:
            os.ftruncate(temp_fd, temp_len)
        return True
    except OSError:
        return False
