"""Authenticators: who may log in, and as which Unix account.

A back-end has one method, ``authenticate(user, password, client)``; it
returns an Account or raises AuthError.  The session applies the rules that
are the same for every back-end (the UID floor, the failure delay, the log
lines); a back-end only checks the password.
"""

class Account:
    """A user who may log in.  uid/gid None: serve as the running process.
    login_delay: the user's own LOGIN-DELAY (the user database's), or None."""

    __slots__ = ("name", "uid", "gid", "home", "shell", "login_delay")

    def __init__(self, name: str, uid=None, gid=None, home=None, shell=None, login_delay=None):
        self.name, self.uid, self.gid, self.home, self.shell = name, uid, gid, home, shell
        self.login_delay = login_delay

    def __repr__(self):
        return "Account(%r, uid=%r, gid=%r)" % (self.name, self.uid, self.gid)


class AuthError(Exception):
    """A failed login: the reply template and its fields (protocol/replies.py),
    sent after auth-fail-delay seconds unless delay is false.  log: the
    reason for syslog, which the client does not see.  attempt: the
    password check failed (Qpopper's "Failed attempted login" is logged);
    checked: a password or digest was checked (its reason is logged);
    logged: the lines are logged already (by the root part).
    """

    def __init__(self, template: str, log: str = "", delay: bool = True,
                 logged: bool = False, **fields):
        super().__init__(template)
        self.template, self.log, self.delay, self.fields = template, log, delay, fields
        self.logged, self.attempt, self.checked = logged, False, False


def passwd_account(user: str, need_password: bool = False):
    """user's account in the passwd database, or None (need_password: also
    None when its password field is empty, as pop_apop.c refuses it)."""
    from popper.auth import unixdb
    entry = unixdb.getpwnam(user)
    if entry is None or (need_password and not entry.passwd):
        return None
    return Account(entry.name, entry.uid, entry.gid, entry.dir, entry.shell)


def same_hash(a: bytes, b: bytes) -> bool:
    """Compare two password hashes in constant time."""
    from popper import digests      # here: a session's greeting needs none of it
    return digests.compare_digest(a, b)
