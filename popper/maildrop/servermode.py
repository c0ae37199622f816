"""Server mode (-S, set server-mode, --enable-servermode): the spool is
served in place.

At login the spool is scanned where it is, or its message table taken from
the cache (cache.py) when the spool is as it was cached, and the locks are
let go at once; the temporary drop stays empty as the session lock.  A
session that changes nothing leaves the spool as it was (and caches its
table).  One that changes something has its spool compacted in place at
QUIT, from the first changed message on (compact.py), and scans the new
spool in the background (while the compaction's cut frees the deleted
mail's blocks and the reply goes out) for the cache, which close() writes.
open_maildrop() chooses normal mode instead when an earlier session left
work behind (a journal, or mail in the temp drop).
"""

import os

from popper.maildrop import MaildropError, cache, compact, files
from popper.maildrop.drop import Drop, Unscannable
from popper.maildrop.rewrite import Unfinished
from popper.maildrop.journal import Append
from popper.maildrop.locking import SpoolLock
from popper.maildrop.scan import HAS_UIDL, SEEN, UW_DATA
from popper.protocol import replies


class ServerDrop(Drop):

    def __init__(self, *args):
        super().__init__(*args)
        self.spool_fd = None
        self.spool_print = None         # (dev, ino, size, fingerprint) of what is served
        self.spool_key = None           # the cache key of a spool scanned at login
        self.scanner = None             # the QUIT's scan of the rewritten spool (Background),
        self.rescanned = None           # its (table, separator),
        self.cache_st = None            # and the spool's fstat once the update is done

    @property
    def source_fd(self) -> int:
        return self.spool_fd

    def _open(self, record) -> bool:
        """Serve the spool in place; False if it is not mail popper can read
        there (normal mode then sets aside what it cannot read)."""
        spool_fd = files.open_spool(self.spool_path, self.log, create=False)
        if spool_fd is None:                # no mail: normal mode if bulletins may come
            return self.bulletins is None   # (Qpopper: no spool, no server mode)
        self.spool_fd = spool_fd
        try:
            with SpoolLock(spool_fd, self.spool_path, self.lock_wait, self.settings.locking):
                st = os.fstat(spool_fd)
                table = cache.load(self.settings, self.user, st)
                if table is not None:
                    self.log.debug("%s: the spool is as cached: using the cached message "
                                   "table" % self.user)
                    self.messages, self.separator = table
                    self.scanned_end = st.st_size
                else:
                    self._scan([(spool_fd, 0, st.st_size, 0)])
                    self.spool_key = cache.key(st)  # cached if the session changes nothing
                news = self.bulletins.news() if self.bulletins else None
                if news and self._append_bulletins(news):
                    st = os.fstat(spool_fd)
                    self.spool_key = cache.key(st)
                self.spool_print = (st.st_dev, st.st_ino, st.st_size,
                                    files.fingerprint(spool_fd, st.st_size))
            return True
        except Unscannable:
            self.log.notice("%s: %s cannot be served in place; normal mode for this session"
                            % (self.user, self.spool_path))
            self.spool_fd = None
            os.close(spool_fd)
            return False
        except OSError as exc:
            raise files.error(replies.OPEN_FAILED, exc, file=self.spool_path) from None

    def _append_bulletins(self, news) -> bool:
        """With the spool locked: append the bulletins to it, journaled
        (`append`): staged in the temp drop (empty in server mode), the
        spool extended in zeros (a delivery after a crash lands after them),
        the zeros overwritten, each on the disk; then the user's record;
        then the temp drop emptied and the journal removed.  True if they
        were appended.  A failure before the record is made takes them out
        again, logged (they come next time); one after it fails the login
        (MaildropError), and the next login finds them in the spool."""
        spool_fd, temp_fd = self.spool_fd, self.temp_fd
        start = files.size(spool_fd)
        fix, data = self._bulletin_bytes(spool_fd, start, news)
        data = fix + data
        try:
            self.journal.write(Append(start, files.fingerprint(spool_fd, start), len(data),
                                      news.maximum))
            files.write_at(temp_fd, data, 0)
            os.fsync(temp_fd)
            os.ftruncate(spool_fd, start + len(data))
            os.fsync(spool_fd)
            files.write_at(spool_fd, data, start)
            os.fsync(spool_fd)
        except OSError as exc:
            self.log.notice("[SYS/TEMP] Unable to copy bulletins to pop dropbox %s: %s (%d)"
                            % (self.spool_path, exc.strerror, exc.errno))
            self._end_append(start)
            return False
        if not self.bulletins.seen(news.maximum):
            self._end_append(start)
            return False
        self._end_append(None)
        self._scan_bulletins(spool_fd, start + len(fix), start + len(data))
        return True

    def _end_append(self, start) -> None:
        """The temp drop emptied and the journal removed, after the spool is
        cut back to `start` (None: the append stands).  MaildropError if
        that fails: the journal, still true, tells the next login."""
        try:
            if start is not None and files.size(self.spool_fd) > start:
                os.ftruncate(self.spool_fd, start)
                os.fsync(self.spool_fd)
            if files.size(self.temp_fd):
                os.ftruncate(self.temp_fd, 0)
                os.fsync(self.temp_fd)
            self.journal.remove()
        except OSError as exc:
            self.log.error("%s: could not finish the bulletins' append to %s: %s; the journal "
                           "says what to do" % (self.user, self.spool_path, exc))
            raise files.error(replies.OPEN_FAILED, exc, file=self.spool_path) from None

    def _spool_unchanged(self) -> bool:
        """Is the spool still what was scanned (delivery may have added to it)?"""
        st = os.fstat(self.spool_fd)
        dev, ino, size, print_ = self.spool_print
        return (st.st_dev, st.st_ino) == (dev, ino) and files.starts_with(
            self.spool_fd, size, print_)

    def _quit(self, kept, seen, headers: bool) -> None:
        messages = self.messages
        flags = messages.flags
        # pop_updt.c: only a deletion makes the spool dirty, unless
        # update-status-headers (then also a first RETR, or a UID not yet written).
        dirty = len(kept) != len(messages) or (
            headers and self.settings.update_status_headers and any(
                (seen[i] and not flags[i] & SEEN) or not flags[i] & HAS_UIDL
                for i in range(len(messages)) if not flags[i] & UW_DATA))
        if not dirty:
            st = os.fstat(self.spool_fd) if self.spool_key else None    # no spool: no key
            if st is not None and cache.key(st) == self.spool_key:
                # scanned at login, and no mail came since: the next login needs no scan
                cache.save(self.settings, self.user, st, messages, self.separator)
            self.finish()
            return
        with SpoolLock(self.spool_fd, self.spool_path, self.update_wait,
                       self.settings.locking) as lock:
            if not self._spool_unchanged():
                raise MaildropError(replies.SPOOL_CHANGED)
            self._compact(lock, kept, seen, headers)

    def _compact(self, lock, kept, seen, headers: bool) -> None:
        """With the spool locked: rewrite it in place from the first changed
        message (compact.py).  Raises Unfinished if the spool is left as it
        was; once the compaction has begun the update is made, by this QUIT
        or, if it cannot finish it, by the next login (logged)."""
        spool_fd = self.spool_fd
        end = files.size(spool_fd)
        extras = [(self.scanned_end, end)] if end > self.scanned_end else []
        first = os.pread(spool_fd, compact.HEAD, 0)
        try:
            planned = compact.plan_spool(self, spool_fd, kept, seen, headers, extras, first)
            work = compact.start(spool_fd, self.temp_fd, self.journal, planned, first,
                                 lock.refresh)
        except OSError as exc:              # the spool is untouched, and no journal
            try:                            # names what the temp drop may hold
                os.ftruncate(self.temp_fd, 0)
            except OSError:
                pass
            raise Unfinished(exc) from None
        try:
            work.begin()
        except OSError as exc:
            try:
                compact.undo(work, first)
            except OSError as again:
                self.log.error("%s: could not undo the start of the update of %s: %s; the "
                               "next login makes the update" % (self.user, self.spool_path,
                                                                again))
            raise Unfinished(exc) from None
        rescan = lambda: self._start_rescan(work.record.total)  # noqa: E731
        try:
            try:
                work.run(beside=rescan)
            except OSError as exc:          # once more, from what is on the disk
                self.log.error("%s: the update of %s failed (%s); trying again"
                               % (self.user, self.spool_path, exc))
                work.run(compact.read_progress(self.temp_fd, work.record), beside=rescan)
            self.cache_st = os.fstat(spool_fd)     # the key of the spool the scan reads
            self.journal.remove()           # first: a plan no journal names is no mail
            self.finish()
        except OSError as exc:
            self.log.error("%s: the update of %s is made, but writing it into the spool "
                           "failed: %s; the next login finishes it"
                           % (self.user, self.spool_path, exc))

    def restore(self) -> None:
        self.finish()                       # the spool was never changed

    def close(self) -> None:
        scanner, self.scanner = self.scanner, None
        st, self.cache_st = self.cache_st, None
        # After the reply: the table for the next login, cached under the key
        # the spool had when the update was done (a delivery since gives the
        # spool another key: the next login then scans).
        if scanner is not None and not scanner.wait() and st is not None:
            table, separator = self.rescanned
            cache.save(self.settings, self.user, st, table, separator)
        self.rescanned = None
        fd, self.spool_fd = self.spool_fd, None
        if fd is not None:
            os.close(fd)
        super().close()

    def _start_rescan(self, total: int) -> None:
        """Once the QUIT's compaction has written the new spool (its bytes up
        to total final): scan it in the background, for the cache, while
        the spool is cut (and the reply goes out)."""
        if self.scanner is not None:        # a second try: the first one's scan is as good
            return
        self.scanner = files.Background(self._rescan, total)

    def _rescan(self, total: int) -> None:
        try:
            self.rescanned = self._table_of([(self.spool_fd, 0, total, 0)])
        except (OSError, Unscannable) as exc:
            self.log.debug("%s: no cache for the next login: %s" % (self.user, exc))
            raise OSError(0, str(exc)) from None
