"""The maildrop: a user's mail for one session.

open_maildrop() gives the session a Maildrop: NormalDrop (normal.py,
Qpopper's way: the spool's mail moved into the temporary drop at login and
written back at QUIT) or ServerDrop (servermode.py, -S: the spool served in
place).  What they share is in drop.py; the journal that keeps the spool
and the temporary drop consistent through a crash or an error is
journal.py, and recovery.py reads it; move.py, rewrite.py and compact.py
(server mode's QUIT, in place) are the operations that change the files; scan.py, render.py and wire.py read
mail; locking.py and tempdrop.py guard it.  docs/maildrop.md says what an
administrator sees.
"""


class MaildropError(Exception):
    """A maildrop failure; args[0] is the -ERR text for the client.  The
    lock and journal failures are kinds of it."""


class Maildrop:
    """What a session may ask of its maildrop (the model: Twisted's
    IMailboxPOP3).  A maildrop is open when the session gets it.

    messages      the MessageTable: message i (0-based; the session numbers
                  from 1) has its offsets, octets (what RETR sends, before
                  dot-stuffing), flags (scan.SEEN, scan.UW_DATA, ...) and
                  uid.  Deleted messages stay in it: deletion is the
                  session's business until update().
    message_chunks(msg, top_lines=None, stage=None, prefix=b"")
                  the wire bytes RETR (or TOP with top_lines body lines)
                  sends for msg, after prefix (the +OK line: a small
                  message goes out as one piece with it), as an iterator;
                  stage: a filter of the mail bytes before the wire
                  encoder (X-MANGLE's, render.message_chunks).
    message_octets(msg, stage)
                  the octets the stage's RETR would send (LIST X-MANGLE).
    header_lines(msg)
                  msg's header as it is in the file (no X-UIDL: added, no
                  separator line, no blank line), line by line, each with
                  its line end (XTND XLST, EUIDL read it as Qpopper does).
    update(deleted, seen)
                  QUIT: write back the messages whose deleted[i] is false,
                  seen[i] marking those retrieved in this session, and keep
                  the mail that came during the session.  All of the
                  deletions are applied or none; raises MaildropError with
                  the client's text if none are.
    restore()     an abnormal end with update-on-abort off: every message
                  kept as it was.
    close()       let go of everything; the session is over.
    """

    messages = None

    def message_chunks(self, msg, top_lines: int = None, stage=None, prefix: bytes = b""):
        raise NotImplementedError

    def message_octets(self, msg, stage) -> int:
        raise NotImplementedError

    def header_lines(self, msg):
        raise NotImplementedError

    def update(self, deleted, seen) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def open_maildrop(settings, user: str, log, bulletins=None) -> Maildrop:
    """The user's maildrop, open: the session lock taken, whatever an
    earlier session left finished, the mail scanned, the new bulletins
    (a bulletins.Bulletins, with -b) appended.  Raises MaildropError with
    the client's text."""
    temp_path = temp_drop_path(settings, user)
    temp_fd = open_temp_drop(temp_path, user, log)
    try:
        record = Journal(temp_path).read()
        # Server mode serves the spool in place, unless a session left work
        # (a journal, mail in the temp drop) to finish first.
        in_place = settings.server_mode and record is None and not size(temp_fd)
    except BaseException:
        os.close(temp_fd)
        raise
    if in_place:
        drop = ServerDrop(settings, user, log, temp_fd, bulletins)
        if drop.open(record):
            return drop
    drop = NormalDrop(settings, user, log, temp_fd, bulletins)
    drop.open(record)
    return drop


# The parts, imported once the names above (which they use) exist; before
# the session drops privileges, so nothing is loaded as the user.
import os  # noqa: E402
from popper.maildrop.files import size  # noqa: E402
from popper.maildrop.journal import Journal  # noqa: E402
from popper.maildrop.normal import NormalDrop  # noqa: E402
from popper.maildrop.servermode import ServerDrop  # noqa: E402
from popper.maildrop.tempdrop import open_temp_drop  # noqa: E402
from popper.settings import temp_drop_path  # noqa: E402
