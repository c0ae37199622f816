"""What both modes of a maildrop share: the temporary drop and the
journal, scanning, the QUIT's write-back, and the end of a session.

A session's Drop holds the temp drop open and flock'ed (the session lock)
from open_maildrop() to close().  Its `messages` point into `source_fd`:
the temp drop (normal mode) or the spool (server mode).
"""

import os
import time

from popper.maildrop import Maildrop, files, recovery, render
from popper.maildrop.journal import Journal
from popper.maildrop.move import cut_back, move
from popper.maildrop.rewrite import Unfinished, write_back
from popper.maildrop.scan import UW_DATA, MessageTable, NotAMailbox, scan
from popper.protocol import replies
from popper.settings import spool_path, temp_drop_path

UPDATE_WAIT_FACTOR = 3      # QUIT waits longer for the locks than a login (spool-lock-wait)


class Unscannable(Exception):
    """Piece args[0] of a scan is not mail popper can read."""


class Drop(Maildrop):

    def __init__(self, settings, user: str, log, temp_fd: int, bulletins=None):
        self.settings, self.user, self.log = settings, user, log
        self.bulletins = bulletins      # bulletins.Bulletins, when -b is in force
        self.spool_path = spool_path(settings, user)
        self.temp_path = temp_drop_path(settings, user)
        self.journal = Journal(self.temp_path)
        self.lock_wait = settings.spool_lock_wait
        self.update_wait = UPDATE_WAIT_FACTOR * settings.spool_lock_wait
        self.temp_fd = temp_fd
        self.messages = MessageTable()
        self.separator = b""            # the MMDF separator, when there are MMDF messages
        self.scanned_end = 0            # where the scanned mail ends in source_fd

    @property
    def source_fd(self) -> int:
        """The file the messages are read from."""
        return self.temp_fd

    def open(self, record) -> bool:
        """Finish what `record` (the journal's) says an earlier session left,
        and read the mail; closes the drop if that fails.  False if this
        kind of drop cannot serve the mail (server mode: normal mode can)."""
        try:
            return self._open(record) is not False
        except BaseException:
            self.close()
            raise

    def _scan(self, pieces) -> None:
        """The message table of the pieces (fd, start, end, shift) -- separate
        files, or parts of the spool about to be copied `shift` bytes on into
        the temp drop.  Raises Unscannable(i) if piece i is not mail."""
        table, separator = self._table_of(pieces)
        self.messages = table
        self.separator = self.separator or separator
        self.scanned_end = pieces[-1][2] + pieces[-1][3] if pieces else 0

    def _table_of(self, pieces):
        """(message table, MMDF separator or b"") of the pieces, as _scan says."""
        settings = self.settings
        table, separator = MessageTable(), b""
        base_time = int(time.time())
        for i, (fd, start, end, shift) in enumerate(pieces):
            try:
                result = scan(fd, start=start, limit=end,
                                     base_time=base_time + len(table),
                                     salted=settings.update_status_headers,
                                     old_style=settings.old_style_uid,
                                     uw=settings.uw_kludge and not table)
            except NotAMailbox:
                raise Unscannable(i) from None
            if shift:
                result.messages.shift(shift)
            table.extend(result.messages)
            separator = separator or result.separator
        table.make_uids_unique()
        return table, separator

    # --- bulletins ---------------------------------------------------------------------

    def _record_bulletins(self, number: int) -> None:
        """A journal says the mail holds the bulletins up to number: the
        user's record must say so before the journal is replaced."""
        if number and self.bulletins is not None:
            self.bulletins.record(number)

    def _bulletin_bytes(self, fd: int, end: int, news) -> tuple:
        """(the line ends the mail ending at `end` of fd needs, the new
        bulletins as they follow it: in MMDF separators if the mail is MMDF)."""
        chunks = news.chunks
        if self.separator:
            chunks = [self.separator + c[c.index(b"\n") + 1:] + self.separator for c in chunks]
        data = b"".join(chunks)
        fix = files.separation(os.pread(fd, 2, max(end - 2, 0)), data[:1]) if end else b""
        return fix, data

    def _scan_bulletins(self, fd: int, start: int, end: int) -> None:
        """Add the bulletins at [start, end) of fd to the message table."""
        result = scan(fd, start=start, limit=end,
                      base_time=int(time.time()) + len(self.messages),
                      salted=self.settings.update_status_headers,
                      old_style=self.settings.old_style_uid, uw=False)
        self.messages.extend(result.messages)
        self.messages.make_uids_unique()
        self.scanned_end = end

    def set_aside(self, fd: int, ranges, name: str) -> None:
        """Keep bytes nobody can read as mail in a file for the administrator."""
        path = files.set_aside(fd, ranges, self.temp_path)
        self.log.critical(
            "%s: %d bytes of %s are not mail popper can read; they are set aside in %s. "
            "Look at them, and append what is mail to %s (with the spool locked)."
            % (self.user, sum(b - a for a, b in ranges), name, path, self.spool_path))

    # --- serving ----------------------------------------------------------------------

    def message_chunks(self, msg, top_lines: int = None, stage=None, prefix: bytes = b""):
        return render.message_chunks(self.source_fd, msg, top_lines, stage, prefix)

    def message_octets(self, msg, stage) -> int:
        return render.mail_octets(stage(render.message_bytes(self.source_fd, msg)))

    def header_lines(self, msg):
        for block in render.header_blocks(self.source_fd, msg.header, msg.body):
            start = 0               # lines end at LF only, as fgets() reads them
            while start < len(block):
                end = block.find(b"\n", start) + 1 or len(block)
                yield block[start:end]
                start = end

    # --- QUIT -------------------------------------------------------------------------

    def update(self, deleted, seen, headers: bool = True) -> None:
        """Write the session back: the messages not deleted (UW-IMAP's folder
        data always kept, as it was), then the mail that came meanwhile.
        headers=False keeps every message byte for byte (no X-UIDL:/Status:);
        else X-UIDL: and Status: are written as pop_updt.c writes them, with
        update-status-headers reset too (no Status: added where none was)."""
        messages = self.messages
        kept = [i for i in range(len(messages))
                if not deleted[i] or messages.flags[i] & UW_DATA]
        try:
            self._quit(kept, seen, headers)
        except (OSError, Unfinished) as exc:
            exc = exc.args[0] if isinstance(exc, Unfinished) else exc
            self.log.error("%s: update of %s failed: %s; the mail is in %s"
                           % (self.user, self.spool_path, exc, self.temp_path))
            raise files.error(replies.UPDATE_FAILED, exc) from None

    def restore(self) -> None:
        """Abnormal end without update-on-abort: every message back as it was."""
        count = len(self.messages)
        self.update(bytearray(count), bytearray(count), headers=False)

    def _quit(self, kept, seen, headers: bool) -> None:
        raise NotImplementedError

    def _write_back(self, spool_fd: int, lock, kept, seen, headers: bool, record) -> None:
        """With the spool locked: move the mail the temp drop lacks into it
        (what came during the session; what `record`, the journal's, says
        the login could not take out of the spool), then rewrite the spool
        from the temp drop."""
        temp_fd = self.temp_fd
        plan = recovery.plan(record, recovery.observe(record, spool_fd, temp_fd))
        if plan.warning or plan.aside or plan.head or plan.temp_len != files.size(temp_fd):
            raise Unfinished(OSError(0, "the journal does not fit the files (%s)" % (record,)))
        try:
            _, placements = move(spool_fd, temp_fd, self.journal, plan.temp_len, plan.ranges,
                                 lock.refresh)
        except OSError as exc:
            if record is None and cut_back(temp_fd, plan.temp_len):
                self._forget_journal()
            raise Unfinished(exc) from None
        # The mail after what the session served: the temp drop's copy of it.
        extras = [(max(at, self.scanned_end), at + b - a) for a, b, at in placements
                  if at + b - a > max(at, self.scanned_end)]
        write_back(self, spool_fd, kept, seen, headers, extras, lock, self.log)

    def _forget_journal(self) -> None:
        try:
            self.journal.remove()
        except OSError:
            pass            # what it says is still true

    def finish(self) -> None:
        """The spool is complete: remove the temp drop (or empty it, with
        keep-temp-drop), then the journal.  Unlinking while the file is open
        is quick: its blocks are freed when close() runs, after the reply."""
        if self.settings.keep_temp_drop:
            os.ftruncate(self.temp_fd, 0)
        else:
            try:
                os.unlink(self.temp_path)
            except FileNotFoundError:
                pass
        self.journal.remove()

    def close(self) -> None:
        fd, self.temp_fd = self.temp_fd, None
        if fd is not None:
            os.close(fd)
