"""The maildrop's journal: what a session was doing to the spool when it stopped.

The temporary drop <temp-dir>/.<user>.pop holds the mail while popper works
on the spool; this one-line file beside it, .<user>.pop.journal, says what
popper was doing, so that the next login can finish or undo it with every
message exactly once.  A record is replaced atomically (written to a new
file, fsync'ed, renamed over the old one, the directory fsync'ed), so the
file always holds the last record written, whole, or nothing.

A record never claims more than the files already hold: each is written
when the files fit both it and the record it replaces, so a kill or an
error at any point leaves a true record (recovery.py reads them).

The records (offsets and sizes in bytes; ranges are spool ranges "a-b,c-d";
fp is a fingerprint of a file's first bytes, files.fingerprint):

  move     t=T s=S fp=F ranges=R
           copying spool ranges R into the temp drop, which held T bytes
           of mail; the spool was S bytes long (F of its S bytes) and is
           not changed by the move.  At login R is the spool's mail, at
           QUIT the mail delivered during the session.
  settled  t=T s=S fp=F
           login: the temp drop's first T bytes hold all the mail, the
           spool's first S bytes (F) included, on the disk; the spool is
           being emptied.
  rewrite  tlen=L n=N fp=F bound=B
           QUIT: the temp drop's first L bytes hold all the mail, on the
           disk, the spool's first N bytes (F) included; the spool is being
           rewritten: emptied, set to B bytes of zeros (later deliveries
           land after them), its first bytes the marker files.MARKER until
           the rest is written.
  done     total=S head=H
           QUIT: the spool's first S bytes are its new content, on the
           disk, except that its first bytes may still be the marker; H
           (hex) are the real ones.  The temp drop is no longer needed.
  append   s=S fp=F n=L bull=B
           server-mode login: bulletins (L bytes) are being put in the
           temp drop's first L bytes, then appended to the spool, whose
           first S bytes (F) are its mail: the spool is set to S+L bytes
           of zeros first (later deliveries land after them), then the
           zeros are overwritten with the temp drop's L bytes.  B is the
           highest bulletin number they bring.

  compact  start=P total=L end=E bound=B head=H plan=N table=T fp=F tail=D
           server-mode QUIT: the spool (E bytes, its mail and what came
           during the session) is being compacted in place into L bytes,
           from offset P on (its first P bytes stay as they are), by the
           plan in the temp drop's first N bytes (F: their md5; T: where
           its table of segments begins), compact.py; the progress is in
           two slots after the plan, the last of which says when it is
           all written.  The spool was extended to B bytes (zeros) first
           if it grows; deliveries after a crash land beyond B.  Its
           first bytes are the marker while it runs; H are the new
           spool's.  D: md5 of the bytes after the new end, which the
           compaction never writes ("-": none), so that mail delivered
           after the spool was cut to L does not pass for them.  Once the
           marker is there the update is made: recovery finishes it.

`settled` may end in bull=B: the temp drop's T bytes include the bulletins
up to number B (normal mode appends them after the spool's mail), which
the user's record (~/.popbull, the bulletin database) may not say yet.

A journal written by an older popper may hold `stash m=M` (QUIT copying
the new mail into the temp drop, which held M bytes): it is read as
`move t=M s=0 ranges=-`, which is what it meant.
"""

import collections
import os

from popper.maildrop import MaildropError
from popper.protocol import replies

NAME = "%s.journal"         # beside the temp drop: .<user>.pop.journal
MAGIC = "popper-journal 1"


class JournalError(MaildropError):
    """A journal popper must not trust (another user's); args[0] is the -ERR text."""


def ranges_text(ranges) -> str:
    return ",".join("%d-%d" % r for r in ranges) or "-"


def parse_ranges(text: str) -> tuple:
    if text == "-":
        return ()
    out = []
    for item in text.split(","):
        a, _, b = item.partition("-")
        out.append((int(a), int(b)))
    return tuple(out)


def _record(op: str, fields: str, optional: str = ""):
    """A record type: a named tuple of the fields, which knows its op and how
    each field is written and read (int, but for ranges, head and fp).  The
    optional fields (int, 0 when absent) are written only when not 0, so a
    record without them reads as an older popper wrote it."""
    names, extra = fields.split(), optional.split()
    base = collections.namedtuple(op.capitalize(), names + extra)
    base.__new__.__defaults__ = (0,) * len(extra) or None
    writers = {"ranges": ranges_text, "head": bytes.hex, "fp": lambda fp: fp or "-",
               "tail": lambda fp: fp or "-"}
    readers = {"ranges": parse_ranges, "head": bytes.fromhex,
               "fp": lambda text: None if text == "-" else text,
               "tail": lambda text: None if text == "-" else text}

    def line(self) -> str:
        return " ".join([op] + ["%s=%s" % (name, writers.get(name, str)(value))
                                for name, value in zip(names + extra, self)
                                if name in names or value])

    @classmethod
    def parse(cls, words: dict):
        return cls(*[readers.get(name, int)(words[name]) for name in names]
                   + [int(words.get(name, 0)) for name in extra])

    return type(base.__name__, (base,), {"__slots__": (), "op": op, "line": line,
                                         "parse": parse})


Move = _record("move", "t s fp ranges")
Settled = _record("settled", "t s fp", optional="bull")
Rewrite = _record("rewrite", "tlen n fp bound")
Done = _record("done", "total head")
Append = _record("append", "s fp n bull")
Compact = _record("compact", "start total end bound head plan table fp tail")
RECORDS = {kind.op: kind for kind in (Move, Settled, Rewrite, Done, Append, Compact)}


class Unreadable(collections.namedtuple("Unreadable", "text")):
    """A journal popper wrote but cannot read (not a record of this version)."""
    __slots__ = ()
    op = "unreadable"


def parse(text: str):
    """The record a journal's text holds, or Unreadable."""
    words = text.split()
    if " ".join(words[:2]) != MAGIC or len(words) < 3:
        return Unreadable(text)
    fields = dict(word.partition("=")[::2] for word in words[3:])
    op = words[2]
    try:
        if op == "stash":                       # an older popper's
            return Move(int(fields["m"]), 0, None, ())
        return RECORDS[op].parse(fields)
    except (KeyError, ValueError):
        return Unreadable(text)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_private(st: os.stat_result) -> bool:
    """Owned by this user and closed to everyone else, as popper's own
    files (the journal, the cache) must be before they are believed."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o077


def replace_file(path: str, data: bytes, durable: bool) -> bool:
    """Put data at path whole or not at all: written into path.new (made
    afresh, never through a link), then renamed over path.  durable: on the
    disk, file and directory, before this returns.  An exception means path
    is as it was (and no path.new is left); once the rename is done the
    file is replaced, and False says only that the directory's fsync
    failed."""
    new = path + ".new"
    try:
        os.unlink(new)
    except FileNotFoundError:
        pass
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(new, path)
    except BaseException:
        try:
            os.unlink(new)
        except OSError:
            pass
        raise
    if durable:
        try:
            fsync_dir(os.path.dirname(path) or ".")
        except OSError:
            return False
    return True


class Journal:
    def __init__(self, temp_path: str):
        self.path = NAME % temp_path
        self.directory = os.path.dirname(self.path) or "."

    def read(self):
        """The last record (Move, Settled, Rewrite, Done, Append or Unreadable), or
        None.  Raises JournalError for a file that is not the user's own."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(replies.text(replies.JOURNAL_BAD, file=self.path,
                                            why=exc.strerror)) from None
        try:
            if not is_private(os.fstat(fd)):
                raise JournalError(replies.text(replies.JOURNAL_BAD, file=self.path,
                                                why="not owned by the user, or open to others"))
            text = os.read(fd, 65536).decode("ascii", "replace")
        finally:
            os.close(fd)
        return parse(text)

    def write(self, record) -> None:
        """Replace the record; an exception means the old one is still there."""
        line = "%s %s\n" % (MAGIC, record.line())
        replace_file(self.path, line.encode("ascii"), durable=True)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        fsync_dir(self.directory)
