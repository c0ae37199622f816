"""The user database file (`set userdb = FILE`): Dovecot's passwd-file layout.

    # comment
    name:crypt-hash[:uid:gid:gecos:home:shell]

The hash is anything crypt(3) knows ($y$ yescrypt, $6$ SHA-512, $5$, $1$
MD5, $2b$ bcrypt, DES); a Dovecot scheme prefix such as {SHA512-CRYPT} is
allowed for the crypt schemes.  uid and gid may be empty: such a user is
served as the user popper runs as.  The file is read at each login, so an
edit takes effect for the next connection.
"""

from popper import native
from popper.auth import Account, AuthError, same_hash
from popper.protocol import replies

CRYPT_SCHEMES = ("CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT",
                 "BLF-CRYPT", "BCRYPT", "YESCRYPT")

# Hashed for unknown users, so they cost the same work as known ones.
DUMMY_HASH = (b"$6$popperdummysalt$WkygMl4x2ph/yfu4siX0hZTJP4gLgp1Pwv688MjTPyxbxsmZk6B"
              b"SkwWmOqyctgy5rGkqdPbsQVpFcsmJZrtL./")


class UserDBError(Exception):
    """A line of the user database that cannot be used."""


def parse_line(line: str):
    """(name, hash, Account) of one line, or None for a comment or blank line."""
    line = line.rstrip("\r\n")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = line.split(":")
    if len(fields) < 2 or not fields[0]:
        raise UserDBError("needs name:hash")
    name, hashed = fields[0], fields[1]
    if hashed.startswith("{"):
        scheme, _, rest = hashed[1:].partition("}")
        if scheme.upper() not in CRYPT_SCHEMES:
            raise UserDBError("scheme {%s} is not a crypt(3) scheme" % scheme)
        hashed = rest
    extra = fields[2:] + [""] * (5 - len(fields[2:]))
    try:
        uid = int(extra[0]) if extra[0] else None
        gid = int(extra[1]) if extra[1] else None
    except ValueError:
        raise UserDBError("uid and gid must be numbers") from None
    if (uid is None) != (gid is None):
        raise UserDBError("give both uid and gid, or neither")
    return name, hashed.encode("latin-1"), Account(name, uid, gid, extra[3] or None,
                                                    extra[4] or None)


class UserDB:
    def __init__(self, path: str, log):
        self.path, self.log = path, log

    def lookup(self, user: str):
        """(hash, Account) of user, or (None, None)."""
        try:
            with open(self.path, encoding="latin-1") as f:
                for number, line in enumerate(f, 1):
                    try:
                        entry = parse_line(line)
                    except UserDBError as exc:
                        self.log.warning("%s line %d: %s; line ignored" % (self.path, number, exc))
                        continue
                    if entry and entry[0] == user:
                        return entry[1], entry[2]
        except OSError as exc:
            self.log.error("Unable to read the user database %s: %s (%d)"
                           % (self.path, exc.strerror, exc.errno))
        return None, None

    def authenticate(self, user: str, password: bytes, client) -> Account:
        hashed, account = self.lookup(user)
        computed = native.crypt(password, hashed or DUMMY_HASH)
        if hashed and computed and same_hash(computed, hashed):
            return account
        reason = "no such user" if hashed is None else "wrong password"
        raise AuthError(replies.BAD_PASSWORD, log=reason, user=user)
