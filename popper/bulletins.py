"""Bulletins (Qpopper's pop_bull.c): announcements an administrator drops
into the bulletin directory, appended to each user's mail at login.

A bulletin is a file of the bulletin directory whose name begins with its
number ("23.pophost_down_sunday"), holding one message in mbox format.
Each user's record is the highest number that user has seen: ~/.popbull
("23\\n"), or the bulletin database (bulldb.py).  At login every bulletin
numbered above the record is converted (render: its From line kept, an
X-UIDL: added, To: replaced by To: <user>@<host>, Status: dropped) and
appended to the user's mail by the maildrop, journaled like any other
mail (drop.py, normal.py, servermode.py); once that is on the disk the
record becomes the highest number present.  A user without a record gets
the newest max-bulletins (the numbers above the highest less N).

Everything here runs as the user: a bulletin must be world-readable, and
.popbull is read and written with the checks for a file another user may
have had a hand in (files.read_checked; replaced, never written through).
A bulletin popper cannot use (not world-readable, not a regular file, a
symbolic link to another owner's file, too big, not starting with a From
line) is skipped and logged; it does not hold up the others.
"""

import collections
import grp
import os
import stat
import time

from popper.maildrop import MaildropError, files
from popper.maildrop.journal import replace_file
from popper.maildrop.scan import is_from_line
from popper.protocol import replies
from popper.protocol.lines import leading_number

POPBULL = ".popbull"
MAX_BULLETIN = 1 << 22      # bytes: a bulletin is an announcement, not a mailbox

Bulletin = collections.namedtuple("Bulletin", "number name")
News = collections.namedtuple("News", "maximum chunks")   # chunks: the converted bulletins


class Skipped(Exception):
    """A bulletin that is not delivered; args[0] says why."""


class RecordUnavailable(Exception):
    """The user's record cannot be read or written; args[0] says why."""


def listing(bulldir: str) -> list:
    """The bulletins, by number (equal numbers in directory order): the
    names that begin with a digit, numbered by their leading digits (atol).
    One directory listing; OSError if it cannot be read."""
    found = []
    for name in os.listdir(os.fsencode(bulldir)):
        text = name.decode("latin-1")
        number = leading_number(text)
        if number is not None:
            found.append(Bulletin(number, text))
    found.sort(key=lambda b: b.number)
    return found


def for_user(name: str, user: str, gid: int, log) -> bool:
    """group-bulletins (IsBulletinForMe): the second dot-separated field of
    the name is a group; the bulletin is the user's if that is ALL, the
    user's primary group, or a group listing the user."""
    if "." not in name:
        log.notice("Can't find '.' in bulletin name; delivering to all users: %.128s" % name)
        return True
    group = name.split(".")[1]
    if gid is None:
        return False
    if group == "ALL":
        return True
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        log.notice('Non-existent group "%.128s" in bulletin; bulletin omitted: %.128s'
                   % (group, name))
        return False
    return entry.gr_gid == gid or user in entry.gr_mem


def read_bulletin(bulldir: str, name: str) -> bytes:
    """The bulletin's bytes, if popper may deliver them: a regular file
    readable by everybody (bulletins are the same for every user), at most
    MAX_BULLETIN bytes, reached through a symbolic link only if the link's
    owner (or root) owns the file too.  Skipped says why not (one that
    cannot be opened is skipped too); OSError, a failure to read it."""
    path = os.path.join(bulldir, name)
    try:
        link = os.lstat(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise Skipped("Unable to open bulletin file: %s (%d)" % (exc.strerror, exc.errno)) from None
    try:
        st = os.fstat(fd)
        if os.lstat(path).st_ino != link.st_ino:
            raise Skipped("it was replaced while it was opened")
        if not stat.S_ISREG(st.st_mode):
            raise Skipped("not a regular file")
        if stat.S_ISLNK(link.st_mode) and link.st_uid not in (st.st_uid, 0):
            raise Skipped("a symbolic link (owned by uid %d) to a file of uid %d"
                          % (link.st_uid, st.st_uid))
        if not st.st_mode & stat.S_IROTH:
            raise Skipped("not readable by everybody (mode %04o)" % stat.S_IMODE(st.st_mode))
        if st.st_size > MAX_BULLETIN:
            raise Skipped("%d bytes, more than %d" % (st.st_size, MAX_BULLETIN))
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_BULLETIN + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BULLETIN:
        raise Skipped("more than %d bytes" % MAX_BULLETIN)
    return data


def render(data: bytes, uid: bytes, to: bytes) -> bytes:
    """A bulletin as CopyOneBull appends it: its From line, then X-UIDL: uid;
    in the header, X-UIDL: and Status: lines dropped and every To: line
    replaced by `to` (its continuation lines kept, as Qpopper does); the
    body as it is, ending in a blank line.  Skipped if it does not start
    with a From line."""
    lines = data.splitlines(keepends=True)
    if not lines or not is_from_line(lines[0]):
        raise Skipped('it does not start with a valid "From " separator')
    out = [lines[0] if lines[0].endswith(b"\n") else lines[0] + b"\n", b"X-UIDL: %s\n" % uid]
    body = len(lines)
    for i in range(1, len(lines)):
        line = lines[i]
        if line in (b"\n", b"\r\n"):
            body = i
            break
        head = line[:7].lower()
        if head.startswith(b"x-uidl:") or head == b"status:":
            continue
        out.append(b"To: %s\n" % to if head[:3] == b"to:" else line)
    out.extend(lines[body:])
    text = b"".join(out)
    return text + files.separation(text[-2:], b"F")


class PopBull:
    """~/.popbull: the number, then a line end.  Read only if it is the
    user's own regular file of one link, writable by nobody else, never
    through a symbolic link; replaced whole (journal.replace_file), never
    written through."""

    def __init__(self, home: str):
        self.path = os.path.join(home or "/", POPBULL)

    def read(self):
        """("missing" | "empty" | "invalid", None) or ("number", n);
        RecordUnavailable if the file is not to be believed."""
        try:
            text = files.read_checked(self.path, os.geteuid(), 0o022)
        except ValueError as exc:
            raise RecordUnavailable("refused %s: %s" % (self.path, exc)) from None
        except OSError as exc:
            raise RecordUnavailable("cannot read %s: %s" % (self.path, exc.strerror)) from None
        if text is None:
            return "missing", None
        first = text.split("\n", 1)[0]
        if not first:
            return "empty", None
        number = leading_number(first)
        return ("invalid", None) if number is None else ("number", number)

    def store(self, number: int) -> None:
        """The new record, on the disk; RecordUnavailable if it cannot be."""
        try:
            replace_file(self.path, b"%d\n" % number, durable=True)
        except OSError as exc:
            raise RecordUnavailable("Unable to write to %s: %s (%d)"
                                    % (self.path, exc.strerror, exc.errno)) from None


class Bulletins:
    """One login's bulletins.  news() says what to append (the maildrop
    appends it and makes it durable), seen() records it."""

    def __init__(self, settings, account, hostname: str, log, keeper=None):
        self.bulldir = settings.bulldir
        self.new_count = settings.max_bulletins
        self.groups = settings.group_bulletins
        self.user, self.gid = account.name, account.gid
        self.to = ("%s@%s" % (account.name, hostname)).encode("latin-1", "replace")
        self.log = log
        self.popbull = PopBull(account.home)
        self.keeper = keeper            # the bulletin database's, if there is one
        self.stamp, self.sequence = int(time.time()), 0

    # --- the record -------------------------------------------------------------------

    def _last(self, maximum: int):
        """(the last bulletin the user saw, whether to record maximum even if
        nothing is new), by Qpopper's rules."""
        seed = max(maximum - self.new_count, 0)
        if self.keeper is not None:
            number = self.keeper.fetch()
            if number is not None:
                return number, False
            number = self._continuity(seed)     # a .popbull from before the database
            self.keeper.store(number)
            return number, False
        kind, number = self.popbull.read()
        if kind == "number":
            return number, False
        if kind == "empty":                     # "assuming all bulletins sent"
            return maximum, True
        return seed, kind == "invalid"

    def _continuity(self, seed: int) -> int:
        try:
            kind, number = self.popbull.read()
        except RecordUnavailable as exc:
            self.log.notice("%s: the old bulletin record is not used: %s" % (self.user, exc))
            return seed
        return max(number, 0) if kind == "number" else seed

    def _store(self, number: int) -> None:
        if self.keeper is not None:
            self.keeper.store(number)
        else:
            self.popbull.store(number)

    def record(self, number: int) -> None:
        """The mail holds the bulletins up to number (a journal said so):
        make the record say so before anything else changes.
        MaildropError if it cannot: the journal stays, and says it again."""
        try:
            if self._last(number)[0] < number:
                self._store(number)
                self.log.notice("%s: recorded bulletin %d, delivered by an earlier session"
                                % (self.user, number))
        except RecordUnavailable as exc:
            self.log.error("%s: bulletins not recorded: %s" % (self.user, exc))
            raise MaildropError(replies.text(replies.BULLETIN_RECORD)) from None

    def seen(self, maximum: int) -> bool:
        """Record that the user has the bulletins up to maximum; False (and
        logged) if it could not be done."""
        try:
            self._store(maximum)
            return True
        except RecordUnavailable as exc:
            self.log.error("%s: %s; the new bulletins are taken out again" % (self.user, exc))
            return False

    # --- what is new ------------------------------------------------------------------

    def news(self):
        """The new bulletins, converted (News), or None if there are none.
        Nothing here fails the login: a problem is logged and the bulletins
        wait for the next one."""
        try:
            found = listing(self.bulldir)
        except OSError as exc:
            self.log.notice("Unable to open bulletin directory '%.128s': %s (%d)"
                            % (self.bulldir, exc.strerror, exc.errno))
            return None
        if self.groups:
            found = [b for b in found if for_user(b.name, self.user, self.gid, self.log)]
        if not found:
            return None
        maximum = found[-1].number
        try:
            last, write_anyway = self._last(maximum)
        except RecordUnavailable as exc:
            self.log.notice("%s: no bulletins: %s" % (self.user, exc))
            return None
        new = [b for b in found if b.number > last]
        if not new:
            if write_anyway:
                self.seen(maximum)
            return None
        chunks = []
        for bulletin in new:
            try:
                data = read_bulletin(self.bulldir, bulletin.name)
                chunks.append(render(data, self._uid(), self.to))
            except Skipped as exc:
                self.log.notice("Bulletin %.128s skipped for %s: %s"
                                % (bulletin.name, self.user, exc.args[0]))
            except OSError as exc:          # tried again at the next login
                self.log.notice("Unable to read bulletin file %.128s: %s (%d)"
                                % (bulletin.name, exc.strerror, exc.errno))
                return None
        if not chunks:                          # all skipped: not tried again
            self.seen(maximum)
            return None
        return News(maximum, chunks)

    def _uid(self) -> bytes:
        """Qpopper's bulletin UID: the session's start, then a sequence number."""
        uid = b"%d.%03d" % (self.stamp, self.sequence)
        self.sequence += 1
        return uid
