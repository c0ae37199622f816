"""The rules every login passes, whatever the back-end: the one place a
user name and password become an Account.

In order: the name given must be one popper can build a path from (no
NUL, "/", leading dot; at most 64 characters), which is checked before any
back-end sees it, so that no C call reads a name cut short at a NUL; the
back-end checks the password; the account it names must pass the same
check; then the auth-file/nonauth-file lists and the UID floor (-a).  A
failure is raised as AuthError with the text the client gets, which never
tells the reasons apart; whoever sends that text logs it (log_refusal):
the reason of a failed password check in a line of its own, the -ERR, and
Qpopper's `[AUTH] Failed attempted login ...`.

This runs in the root part of a separated session (privsep.py): the login
process only hands over the name and password.
"""

from popper.auth import AuthError
from popper.log import err_line
from popper.protocol import replies
from popper.settings import bad_name

LOWEST_UID = 10         # Qpopper's floor: accounts at or below it are system accounts


def log_refusal(log, user: str, client, exc: AuthError, reply: bytes) -> None:
    """A refused login's lines, in the order of Qpopper's pop_pass.c (AIX
    branch): popper's reason for a failed password check, in a line of its
    own; pop_msg.c's -ERR line; then, for a failed password check,
    pop_pass.c's line exactly as Qpopper writes it, which log parsers match."""
    if exc.attempt and exc.log:
        log.notice("Authentication failed for user %s: %s" % (user, exc.log))
    log.notice(err_line(user, client, reply))
    if exc.attempt:
        log.notice("[AUTH] Failed attempted login to %s from host (%s) %s"
                   % (user, client.host, client.ip))


class Gatekeeper:
    def __init__(self, settings, backend, log):
        self.settings, self.backend, self.log = settings, backend, log

    def authenticate(self, user: str, password: bytes, client):
        """The Account user may log in as, or AuthError."""
        try:
            account = self._password(user, password, client)
        except AuthError as exc:
            exc.attempt = True
            raise
        if not self.allowed(account.name):
            raise AuthError(replies.ACCESS_DENIED, user=user)
        if (account.uid is not None and account.uid <= LOWEST_UID
                and not self.settings.allow_low_uid):
            raise AuthError(replies.LOW_UID, log="uid %d" % account.uid, delay=False)
        return account

    def _password(self, user: str, password: bytes, client):
        reason = bad_name(user)
        if reason:
            raise AuthError(replies.BAD_PASSWORD, log="user name %s" % reason, user=user)
        account = self.backend.authenticate(user, password, client)
        reason = bad_name(account.name)
        if reason:
            raise AuthError(replies.BAD_PASSWORD, user=user,
                            log="the account's name %r %s" % (account.name, reason))
        return account

    def allowed(self, user: str) -> bool:
        """The nonauth-file (deny) and auth-file (allow) lists: one name a
        line.  A list that cannot be read denies everybody."""
        for path, listed_means in ((self.settings.nonauth_file, False),
                                   (self.settings.auth_file, True)):
            if not path:
                continue
            try:
                with open(path, encoding="latin-1") as f:
                    names = {line.strip() for line in f}
            except OSError as exc:
                self.log.error("Unable to read %s: %s; nobody may log in"
                               % (path, exc.strerror))
                return False
            if (user in names) != listed_means:
                self.log.notice('[AUTH] "%s" is %s %s' % (
                    user, "listed in" if not listed_means else "not listed in", path))
                return False
        return True
