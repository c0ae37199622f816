"""Server mode (-S, set server-mode, --enable-servermode): the spool is
served in place.

At login the spool is scanned where it is, or its message table taken from
the cache (cache.py) when the spool is as it was cached, and the locks are
let go at once; the temporary drop stays empty as the session lock.  A
session that changes nothing leaves the spool as it was (and caches its
table).  One that changes something moves the spool into the temporary
drop at QUIT and rewrites it as normal mode does (drop.Drop._write_back),
then, after the client has its reply, scans and caches the new spool.
open_maildrop() chooses normal mode instead when an earlier session left
work behind (a journal, or mail in the temp drop).
"""

import os

from popper.maildrop import MaildropError, cache, files
from popper.maildrop.drop import Drop, Unscannable
from popper.maildrop.locking import SpoolLock
from popper.maildrop.scan import HAS_UIDL, SEEN, UW_DATA
from popper.protocol import replies


class ServerDrop(Drop):

    def __init__(self, *args):
        super().__init__(*args)
        self.spool_fd = None
        self.spool_print = None         # (dev, ino, size, fingerprint) of what is served
        self.spool_key = None           # the cache key of a spool scanned at login
        self.cache_after_close = False  # the spool was rewritten: cache it

    @property
    def source_fd(self) -> int:
        return self.spool_fd

    def _open(self, record) -> bool:
        """Serve the spool in place; False if it is not mail popper can read
        there (normal mode then sets aside what it cannot read)."""
        spool_fd = files.open_spool(self.spool_path, self.log, create=False)
        if spool_fd is None:
            return True                     # no mail
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
            if self.spool_key and cache.key(os.fstat(self.spool_fd)) == self.spool_key:
                # scanned at login, and no mail came since: the next login needs no scan
                cache.save(self.settings, self.user, self.spool_fd, messages, self.separator)
            self.finish()
            return
        with SpoolLock(self.spool_fd, self.spool_path, self.update_wait,
                       self.settings.locking) as lock:
            if not self._spool_unchanged():
                raise MaildropError(replies.SPOOL_CHANGED)
            self._write_back(self.spool_fd, lock, kept, seen, headers, None)
        self.cache_after_close = True

    def restore(self) -> None:
        self.finish()                       # the spool was never changed

    def close(self) -> None:
        if self.cache_after_close:
            self.cache_after_close = False
            self._cache_rewritten_spool()
        fd, self.spool_fd = self.spool_fd, None
        if fd is not None:
            os.close(fd)
        super().close()

    def _cache_rewritten_spool(self) -> None:
        """After a QUIT that rewrote the spool (and the client has its reply):
        scan it again, locked, and cache the table for the next login."""
        try:
            with SpoolLock(self.spool_fd, self.spool_path, self.lock_wait,
                           self.settings.locking):
                self._scan([(self.spool_fd, 0, files.size(self.spool_fd), 0)])
                cache.save(self.settings, self.user, self.spool_fd, self.messages,
                           self.separator)
        except (OSError, MaildropError, Unscannable) as exc:
            self.log.debug("%s: no cache for the next login: %s" % (self.user, exc))
