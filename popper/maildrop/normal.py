"""Normal mode (Qpopper's): the session is served from the temporary drop.

At login the spool <spool-dir>/<user> is locked, whatever an earlier
session left is recovered (recovery.py), the spool's mail is moved into
the temporary drop <temp-dir>/.<user>.pop (move.py), `settled` is
journaled, and -- after the client has its +OK -- the spool is emptied and
the journal removed, in the background.  At QUIT the spool is locked again
and rewritten from the temp drop (rewrite.py): the kept messages, then what
was delivered meanwhile.
"""

import errno
import os

from popper.maildrop import compact, files, recovery
from popper.maildrop.drop import Drop, Unscannable
from popper.maildrop.journal import Compact, Settled
from popper.maildrop.locking import SpoolLock
from popper.maildrop.move import cut_back, move
from popper.protocol import replies


class NormalDrop(Drop):

    def __init__(self, *args):
        super().__init__(*args)
        self.emptier = None             # emptying the spool after login, beside the session

    # --- login -----------------------------------------------------------------------

    def _open(self, record) -> None:
        spool_fd = files.open_spool(self.spool_path, self.log, create=record is not None)
        if spool_fd is None:                # no spool and nothing to recover
            if self._login(None, None, None, recovery.Plan(files.size(self.temp_fd), [])):
                self._forget_journal()      # bulletins alone: no spool to empty
            return
        lock = SpoolLock(spool_fd, self.spool_path, self.lock_wait, self.settings.locking)
        try:
            lock.__enter__()
            if record is not None:
                self.log.notice("%s: finishing what an earlier session left in %s (%s)"
                                % (self.user, self.journal.path, record.op))
            elif files.size(self.temp_fd):
                self.log.notice("%s: taking %d bytes left in %s by an earlier session first"
                                % (self.user, files.size(self.temp_fd), self.temp_path))
            if isinstance(record, Compact):
                record = self._finish_compaction(spool_fd, lock, record)
            plan = recovery.plan(record, recovery.observe(record, spool_fd, self.temp_fd))
            if plan.warning:
                self.log.critical("%s: %s: %s" % (self.user, self.spool_path, plan.warning))
            if plan.head:                   # a finished rewrite's real first bytes
                os.pwrite(spool_fd, plan.head, 0)
                os.fsync(spool_fd)
            if self._login(spool_fd, lock, record, plan):
                # Everything is in the temp drop: the spool can be emptied behind
                # the client's back, and the emptier lets go of it and its locks.
                self.emptier = files.Background(self._empty_spool, spool_fd, lock)
                spool_fd = None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self._copy_error(exc) from None
            raise files.error(replies.OPEN_FAILED, exc, file=self.spool_path) from None
        finally:
            if spool_fd is not None:
                lock.release()
                os.close(spool_fd)

    def _finish_compaction(self, spool_fd: int, lock, record):
        """A server-mode QUIT's compaction that stopped (compact.py): finish
        it from its plan and progress, and return compact.Compacted for
        recovery.plan(), which takes the mail delivered since.  One that had
        not begun to change the spool (no marker), or whose plan is gone, is
        left to recovery.plan() as it is."""
        marker = os.pread(spool_fd, compact.HEAD, 0) == files.MARKER
        try:
            work = compact.load(spool_fd, self.temp_fd, self.journal, record, lock.refresh)
        except compact.Unplannable as exc:
            self.log.critical("%s: %s: %s" % (self.user, self.spool_path, exc))
            return record
        progress = compact.read_progress(self.temp_fd, record)
        done = work.finished(progress)
        if done:
            return done
        if not marker or files.size(spool_fd) < record.bound:
            return record               # not begun (or changed by another program)
        work.begin()
        work.run(progress, cut=False)
        return work.finished(compact.read_progress(self.temp_fd, record))

    def _login(self, spool_fd, lock, record, plan) -> bool:
        """With the spool locked (if there is one): move its mail in as the
        plan says, then append the new bulletins.  True if the journal then
        says `settled` (the spool is to be emptied, the journal removed)."""
        self._record_bulletins(plan.bulletins)
        try:
            moved = self._move_in(spool_fd, plan, lock) or record is not None
            news = self.bulletins.news() if self.bulletins else None
            if not moved and not news:
                return False
            size = files.size(spool_fd) if spool_fd is not None else 0
            settled = Settled(files.size(self.temp_fd), size,
                              None if spool_fd is None else files.fingerprint(spool_fd, size))
            self.journal.write(settled)
        except BaseException:
            # The spool is as it was; with nothing to finish before, leave
            # nothing behind (a record would be true, but a mail reader
            # may change the spool before the next login).
            if record is None and cut_back(self.temp_fd, plan.temp_len):
                self._forget_journal()
            raise
        if news:
            self._append_bulletins(news, settled)
        return True

    def _append_bulletins(self, news, settled) -> None:
        """After the mail (the journal says `settled`, so a crash cuts the
        temp drop back to it): the bulletins, on the disk; `settled` with
        them and their number; the user's record.  A failure before the
        record is made takes them out again, logged: they come next time.
        Once the journal names them, the next login records them if this
        one cannot (OSError: the login fails)."""
        end = settled.t
        fix, data = self._bulletin_bytes(self.temp_fd, end, news)
        data = fix + data
        try:
            files.write_at(self.temp_fd, data, end)
            os.fsync(self.temp_fd)
            self.journal.write(settled._replace(t=end + len(data), bull=news.maximum))
        except OSError as exc:
            self.log.notice("[SYS/TEMP] Unable to copy bulletins to pop dropbox %s: %s (%d)"
                            % (self.temp_path, exc.strerror, exc.errno))
            cut_back(self.temp_fd, end)
            return
        if not self.bulletins.seen(news.maximum):
            self.journal.write(settled)
            cut_back(self.temp_fd, end)
            return
        self._scan_bulletins(self.temp_fd, end + len(fix), end + len(data))

    def _move_in(self, spool_fd, plan, lock) -> bool:
        """Carry out the plan: set aside what it says, move its ranges into
        the temp drop while they are scanned.  A piece that is not mail is
        set aside too, and the move begins again without it.  True if
        anything was taken out of the spool (moved or set aside)."""
        temp_len, ranges, aside = plan.temp_len, list(plan.ranges), plan.aside
        taken = False
        while True:
            if aside:
                self.set_aside(spool_fd, aside, self.spool_path)
                aside, taken = (), True
            served = [(self.temp_fd, 0, temp_len, 0)] if temp_len else []
            try:
                record, _ = move(spool_fd, self.temp_fd, self.journal, temp_len, ranges,
                                 lock and lock.refresh, scan=lambda placements: self._scan(
                                     served + [(spool_fd, a, b, at - a)
                                               for a, b, at in placements]))
                return taken or record is not None
            except Unscannable as exc:
                i = exc.args[0]
                if served and i == 0:       # the temp drop's own mail
                    self.set_aside(self.temp_fd, [(0, temp_len)], self.temp_path)
                    temp_len = 0
                else:
                    aside = [ranges.pop(i - len(served))]
            except OSError as exc:
                raise self._copy_error(exc) from None

    def _copy_error(self, exc: OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return files.error(replies.QUOTA, exc)
        return files.error(replies.COPY_FAILED, exc, tempdrop=self.temp_path)

    def _empty_spool(self, spool_fd: int, lock: SpoolLock) -> None:
        """The end of a login: the journal says the spool's mail is in the
        temp drop; empty the spool, then forget the journal."""
        try:
            if files.size(spool_fd):
                os.ftruncate(spool_fd, 0)
                os.fsync(spool_fd)
            self.journal.remove()
        finally:
            lock.release()
            os.close(spool_fd)

    def _wait_for_emptier(self) -> None:
        """The login's work on the spool must be over before the spool is
        touched again.  If it failed, the journal still says `settled`, and
        whoever reads it next takes care of the spool's old mail."""
        emptier, self.emptier = self.emptier, None
        if emptier and emptier.wait():
            self.log.error("%s: could not empty %s after login: %s; the journal says what "
                           "to do" % (self.user, self.spool_path, emptier.failure))

    # --- QUIT ------------------------------------------------------------------------

    def _quit(self, kept, seen, headers: bool) -> None:
        self._wait_for_emptier()
        record = self.journal.read()        # None, or "settled" if emptying failed
        if not kept and record is None:     # the spool holds only mail that came since
            self.finish()
            return
        spool_fd = files.open_spool(self.spool_path, self.log, create=True)
        try:
            with SpoolLock(spool_fd, self.spool_path, self.update_wait,
                           self.settings.locking) as lock:
                self._write_back(spool_fd, lock, kept, seen, headers, record)
        finally:
            os.close(spool_fd)

    def close(self) -> None:
        self._wait_for_emptier()
        super().close()
