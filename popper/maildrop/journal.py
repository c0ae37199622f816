"""The maildrop's journal: what a session was doing to the spool when it died.

The temporary drop <temp-dir>/.<user>.pop holds the mail while popper works
on the spool; this one-line file beside it, .<user>.pop.journal, says what
popper was doing, so that the next login can finish or undo it with every
message exactly once.  A record is replaced atomically (written to a new
file, fsync'ed, renamed over the old one, the directory fsync'ed), so the
file always holds the last record written, whole, or nothing.

Records (offsets are byte offsets; ranges are "a-b,c-d", spool bytes):

  move     t=T ranges=R          copying spool ranges R into the temp drop,
                                 which was T bytes long
  moved    t=T at=P ranges=R fp=F
                                 R is in the temp drop from P on, fsync'ed;
                                 the spool is being emptied (F identifies R)
  stash    m=M                   QUIT: copying the new mail at the end of
                                 the spool into the temp drop, M bytes long
  rewrite  tlen=L n=N bound=B    QUIT: the temp drop's first L bytes hold
                                 all the mail; the spool (N bytes of new
                                 mail) is being rewritten, B bytes long
  done     total=S head=H        QUIT: the spool's first S bytes are its new
                                 content, but its first 16 bytes may still
                                 be the marker; H (hex) are the real ones

docs/maildrop.md tells what recovery does with each.
"""

from __future__ import annotations

import os

from popper.maildrop import MaildropError
from popper.protocol import replies

NAME = "%s.journal"         # beside the temp drop: .<user>.pop.journal
MAGIC = "popper-journal 1"


class JournalError(MaildropError):
    """A journal popper cannot trust; args[0] is the -ERR text."""


def ranges_text(ranges) -> str:
    return ",".join("%d-%d" % r for r in ranges) or "-"


def parse_ranges(text: str) -> list:
    if text == "-":
        return []
    out = []
    for item in text.split(","):
        a, _, b = item.partition("-")
        out.append((int(a), int(b)))
    return out


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


def replace_file(path: str, data: bytes, durable: bool) -> None:
    """Put data at path whole or not at all: written into path.new (made
    afresh, never through a link), then renamed over path.  durable: on the
    disk, file and directory, before this returns."""
    new = path + ".new"
    try:
        os.unlink(new)
    except FileNotFoundError:
        pass
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(new, path)
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


class Journal:
    def __init__(self, temp_path: str):
        self.path = NAME % temp_path
        self.directory = os.path.dirname(self.path) or "."

    def read(self):
        """The last record as a dict (its "op" and fields), or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(replies.text(replies.JOURNAL_BAD, file=self.path,
                                            why=exc.strerror)) from None
        try:
            st = os.fstat(fd)
            if not is_private(st):
                raise JournalError(replies.text(replies.JOURNAL_BAD, file=self.path,
                                                why="not owned by the user, or open to others"))
            text = os.read(fd, 65536).decode("ascii", "replace")
        finally:
            os.close(fd)
        words = text.split()
        if " ".join(words[:2]) != MAGIC or len(words) < 3:
            raise JournalError(replies.text(replies.JOURNAL_BAD, file=self.path,
                                            why="not a popper journal"))
        record = {"op": words[2]}
        for word in words[3:]:
            key, _, value = word.partition("=")
            record[key] = value
        return record

    def write(self, op: str, **fields) -> None:
        line = " ".join([MAGIC, op] + ["%s=%s" % item for item in fields.items()]) + "\n"
        replace_file(self.path, line.encode("ascii"), durable=True)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        fsync_dir(self.directory)
