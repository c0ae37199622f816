"""Unix passwords: the passwd and shadow databases (through NSS, so NIS,
LDAP or nss_wrapper work too), checked with crypt(3): yescrypt, SHA-512,
SHA-256, MD5, bcrypt, DES and bigcrypt (the long DES hashes of an SCO
protected password database, migrated as they are).

An unknown user, a locked or empty hash ("!", "*", "x" without a shadow
entry, "") and a wrong password all get the same answer after the same
work: getpwnam, getspnam and one crypt in the method and cost of the hash
they stand for.  A locked "!<hash>" (usermod -L) is checked against its
<hash>, which costs what it would unlocked; anything else is checked
against the host's dummy: a hash of the method and cost parameters most of
the host's users have (cryptpw.most_common), not the method crypt_gensalt
would choose for a new password, which may be another (libxcrypt prefers
yescrypt where the users are $6$: 17 ms against 1 ms).  What the dummy
computes never logs anyone in.

Finding the host's method means reading the shadow database (setspent,
getspent: root only; the first SCAN_LIMIT entries, passwd's where shadow
gives no hash, crypt_gensalt where neither does).  It is done once per
process, before the name is looked at, and kept for REFRESH seconds, so
whoever logs in pays it alike: in inetd mode that is each connection's
first PASS (2 ms under nss_wrapper for 2,000 entries or more; an NSS that
enumerates slowly, LDAP, pays more, which is why the scan is bounded); in
standalone mode a listener may call preload() before it forks, and its
children use that.  Left to NSS: its own lookup cost (nss_files and
nss_wrapper scan passwd and shadow line by line, so a name near the top is
found sooner than an unknown one is missed: 0.2 ms for 10,000 lines under
nss_wrapper, against 1 ms for one $6$ check; nscd, sssd and nss_db hash).
Unknown names are looked up in shadow too, so the calls are the same.

Account and password expiry (Qpopper's texts) are told only to a client
that gave the right password.

Run as another user than root, popper cannot read the shadow file: the
hash of every user whose passwd entry says "x" is out of its reach.  It
says so at start-up (settings.shadow_problem) and in the log line of each such
failed login; the client gets the same answer after the same work.
"""

import time

from popper.auth import Account, AuthError, cryptpw, passwd_account, same_hash, unixdb
from popper.protocol import replies
from popper.settings import shadow_problem

DAY = 86400
SCAN_LIMIT = 2000          # shadow entries read to find the host's method
REFRESH = 600              # seconds the host's method is kept

# The host's dummy and when it was found (time.monotonic()); one per process,
# shared by every UnixAuth (a listener's preload() serves its children).
_host = {}


def host_dummy() -> bytes:
    """A hash of the most common method and cost among the host's users."""
    try:
        hashes = unixdb.shadow_hashes(SCAN_LIMIT)
    except OSError:
        hashes = []
    dummy = cryptpw.most_common(hashes)
    if dummy is None:
        dummy = cryptpw.most_common(unixdb.passwd_hashes(SCAN_LIMIT))
    return dummy or unixdb.crypt_gensalt()


def forget() -> None:
    """Drop the host's dummy (as a new process starts without it)."""
    _host.clear()


class UnixAuth:
    def __init__(self, settings, log):
        self.log = log
        self.check_password_expired = settings.check_password_expired

    def preload(self) -> None:
        """Find the host's method now (a listener, before it forks), and
        whether the shadow file can be read."""
        _host["dummy"] = (host_dummy(), shadow_problem(), time.monotonic())

    def host(self):
        """(the host's dummy, shadow_problem()), found again when REFRESH
        seconds old."""
        found = _host.get("dummy")
        if found is None or time.monotonic() - found[2] >= REFRESH:
            self.preload()
            found = _host["dummy"]
        return found[:2]

    def lookup(self, user: str):
        """(passwd entry or None, the hash to check or b"", shadow entry or None)."""
        entry = unixdb.getpwnam(user)
        try:
            shadow = unixdb.getspnam(user)          # an unknown name too: the same calls
        except OSError as exc:
            if entry is not None:
                self.log.error("Unable to read the shadow entry of %s: %s (%d); is popper root?"
                               % (user, exc.strerror, exc.errno))
            shadow = None
        if entry is None:
            return None, b"", None
        return entry, (shadow.passwd if shadow else entry.passwd), shadow

    def account(self, user: str):
        """user's account, or None (APOP: the secret is in pop.auth).  An
        empty password field refuses APOP too, as in pop_apop.c."""
        return passwd_account(user, need_password=True)

    def authenticate(self, user: str, password: bytes, client) -> Account:
        dummy, unreadable = self.host()            # before the name: its cost is everyone's
        entry, hashed, shadow = self.lookup(user)
        target, usable = (dummy, False) if entry is None else cryptpw.verifier(hashed, dummy)
        computed = cryptpw.crypt(password, target) or b""
        if not (same_hash(computed, target) and usable):
            reason = ("no such user" if entry is None else
                      "wrong password" if usable else
                      "no usable password: " + unreadable if shadow is None and unreadable else
                      "no usable password (locked or empty)")
            raise AuthError(replies.BAD_PASSWORD, log=reason, user=user)
        if shadow is not None:
            today = int(time.time() // DAY)
            if shadow.expire > 0 and today > shadow.expire:
                raise AuthError(replies.ACCOUNT_EXPIRED, log="account expired", user=user)
            if (self.check_password_expired and shadow.max > 0
                    and today > shadow.lastchg + shadow.max):
                raise AuthError(replies.PASSWORD_EXPIRED, log="password expired", user=user)
        return Account(entry.name, entry.uid, entry.gid, entry.dir, entry.shell)
