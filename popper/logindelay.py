"""LOGIN-DELAY enforced (RFC 2449 6.8, 8.1.1): `set enforce-login-delay`
with `-e login_delay=N` (N > 0) refuses a login that comes sooner than N
seconds after the user's last one, with `-ERR [LOGIN-DELAY] ...`, after
the password and before the maildrop is opened: the mail is not touched.
Qpopper only announces the delay; so does popper unless this is set.

The last login's time is kept in <temp-dir>/.<user>.pop.login (beside the
temp drop; docs/popper.8 says why there and not in the home directory):
the number of seconds since the epoch and a line end, written by the
session as the user once the maildrop is open (the session lock held, so
two sessions of one user never write it at once), replaced whole
(journal.replace_file: a new file, fsync, rename, the directory's fsync).

It is believed only if files.read_checked finds it fit: never through a
symbolic link, a regular file of one link, the user's own, writable by
nobody else.  Whatever is wrong with it (unfit, unreadable, not a number,
a time in the future) is logged and the login goes on as if there were no
record, and this login's time replaces it: a broken or hostile file never
locks a user out.  A record that cannot be written is logged and costs
the user nothing.  The file is the user's own, so a user can always undo
the delay; it is there to stop clients that poll too often.
"""

import os
import time

from popper.maildrop import MaildropError, files
from popper.maildrop.journal import replace_file
from popper.protocol import replies
from popper.protocol.lines import is_number
from popper.settings import temp_drop_path

NAME = "%s.login"           # beside the temp drop: .<user>.pop.login


class TooSoon(MaildropError):
    """The login comes inside the delay; args[0] is the client's text."""


def delay_of(settings, announced="settings") -> int:
    """The delay to enforce in seconds, 0 for none: of the settings'
    announce-login-delay, or of the one given."""
    delay = settings.announce_login_delay if announced == "settings" else announced
    return delay if settings.enforce_login_delay and delay and delay > 0 else 0


class LoginDelay:
    """One login's check and record, run as the user."""

    def __init__(self, settings, user: str, log, clock=time.time):
        self.delay = delay_of(settings)
        self.path = NAME % temp_drop_path(settings, user)
        self.user, self.log, self.clock = user, log, clock

    def last_login(self, now: float):
        """The time of the last login, or None when there is no record to
        believe (the reason logged)."""
        try:
            text = files.read_checked(self.path, os.geteuid(), 0o022)
        except ValueError as exc:
            return self._ignored("refused (%s)" % exc)
        except OSError as exc:
            return self._ignored("unreadable: %s (%d)" % (exc.strerror, exc.errno))
        if text is None:
            return None
        digits = text[:-1] if text.endswith("\n") else text
        if not (is_number(digits) and len(digits) <= 15):
            return self._ignored("not a time")
        last = int(digits)
        if last > now:
            return self._ignored("a time %d seconds in the future" % (last - now))
        return last

    def _ignored(self, why: str) -> None:
        self.log.warning("login delay record %s of %s is %s; not believed"
                         % (self.path, self.user, why))
        return None

    def check(self) -> None:
        """Raise TooSoon if the user logged in less than the delay ago."""
        if not self.delay:
            return
        now = self.clock()
        last = self.last_login(now)
        if last is None or now - last >= self.delay:
            return
        wait = max(1, int(last + self.delay - now + 0.999))
        self.log.notice("%s logged in %d seconds ago; login refused for %d more seconds "
                        "(login delay %d)" % (self.user, now - last, wait, self.delay))
        raise TooSoon(replies.text(replies.LOGIN_DELAYED, wait=wait, delay=self.delay))

    def record(self) -> None:
        """This login's time, on the disk; a failure is logged, nothing more."""
        if not self.delay:
            return
        try:
            replace_file(self.path, b"%d\n" % int(self.clock()), durable=True)
        except OSError as exc:
            self.log.error("Unable to record the login of %s in %s: %s (%d); the next login "
                           "is not delayed by it" % (self.user, self.path, exc.strerror,
                                                     exc.errno))
