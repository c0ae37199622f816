"""Unix passwords: the passwd and shadow databases (through NSS, so NIS,
LDAP or nss_wrapper work too), checked with crypt(3): yescrypt, SHA-512,
SHA-256, MD5, bcrypt, DES and bigcrypt (the long DES hashes of an SCO
protected password database, migrated as they are).

An unknown user, a locked or empty hash ("!", "*", "x" without a shadow
entry, "") and a wrong password all cost one crypt and get the same
answer.  Account and password expiry (Qpopper's texts) are told only to a
client that gave the right password.
"""

import time

from popper import native
from popper.auth import Account, AuthError, same_hash
from popper.protocol import replies

DAY = 86400


class UnixAuth:
    def __init__(self, settings, log):
        self.log = log
        self.check_password_expired = settings.check_password_expired
        self.dummy = None

    def _dummy_setting(self) -> bytes:
        """What an unknown user's password is hashed with: the system's
        preferred method, as a new password would be."""
        if self.dummy is None:
            self.dummy = native.crypt_gensalt()
        return self.dummy

    def lookup(self, user: str):
        """(passwd entry or None, the hash to check or b"", shadow entry or None)."""
        entry = native.getpwnam(user)
        if entry is None:
            return None, b"", None
        try:
            shadow = native.getspnam(user)
        except OSError as exc:
            self.log.error("Unable to read the shadow entry of %s: %s (%d); is popper root?"
                           % (user, exc.strerror, exc.errno))
            shadow = None
        return entry, (shadow.passwd if shadow else entry.passwd), shadow

    def authenticate(self, user: str, password: bytes, client) -> Account:
        entry, hashed, shadow = self.lookup(user)
        usable = bool(hashed) and hashed != b"x" and not hashed.startswith((b"!", b"*"))
        computed = native.crypt(password, hashed if usable else self._dummy_setting())
        if not (usable and computed and same_hash(computed, hashed)):
            reason = ("no such user" if entry is None else
                      "wrong password" if usable else "no usable password (locked or empty)")
            raise AuthError(replies.BAD_PASSWORD, log=reason, user=user)
        if shadow is not None:
            today = int(time.time() // DAY)
            if shadow.expire > 0 and today > shadow.expire:
                raise AuthError(replies.ACCOUNT_EXPIRED, log="account expired", user=user)
            if (self.check_password_expired and shadow.max > 0
                    and today > shadow.lastchg + shadow.max):
                raise AuthError(replies.PASSWORD_EXPIRED, log="password expired", user=user)
        return Account(entry.name, entry.uid, entry.gid, entry.dir, entry.shell)
