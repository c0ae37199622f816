"""The user database file (`set userdb = FILE`): Dovecot's passwd-file layout.

    # comment
    name:crypt-hash[:uid:gid:gecos:home:shell[:extra fields]]

The hash is anything crypt(3) knows ($y$ yescrypt, $6$ SHA-512, $5$, $1$
MD5, $2b$ bcrypt, DES); a Dovecot scheme prefix such as {SHA512-CRYPT} is
allowed for the crypt schemes.  uid and gid may be empty: such a user is
served as the user popper runs as.  The extra fields are Dovecot's
space-separated name=value words; popper reads login_delay=N (the user's
own LOGIN-DELAY, logindelay.py) and leaves the others to Dovecot.  The
first usable line of a name counts.

A failed login costs what a wrong password does, whoever tries: the file is
read whole into a table (each name's line, by a dict: no scan that stops
at the name), one line is parsed (the name's, or for an unknown name the
dummy's), and one crypt is done -- against the entry's hash, against
<hash> for a locked "!<hash>", and otherwise (unknown, "!", "*", empty,
not a hash) against the dummy: a hash of the most common method and cost
parameters among the entries (cryptpw.most_common, from an even sample of
SAMPLE lines), not a fixed method.

The table is kept, per process, while the file's (dev, ino, size, mtime,
ctime) are unchanged, so an edit takes effect for the next login.  In
inetd mode each connection is a new process and reads the file again, at
the same cost for every name (6.5 ms for 10,000 lines, against the 14 ms
an unknown name cost the old scan); in standalone mode a listener may call
preload() before it forks, and its children read the file again only if it
changed.  An index on disk would save those milliseconds per connection,
less than one yescrypt, for a second file to keep in step and to trust: not
worth it.
"""

import os
import time

from popper.auth import Account, AuthError, cryptpw, same_hash, unixdb
from popper.protocol import replies
from popper.protocol.lines import is_number

CRYPT_SCHEMES = ("CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT",
                 "BLF-CRYPT", "BCRYPT", "YESCRYPT")

# A table read less than this many seconds after the file's last change is
# used once, not kept: an edit in the same second would not change the
# (dev, ino, size, mtime) that says the table is still the file's (git's
# "racily clean" entries).  Coarse clocks (seconds) make it two.
RACY = 2

# The dummy's method is the most common among at most this many of the
# entries, evenly spread (counting 10,000 costs 7 ms, each connection in
# inetd mode; a sample of 1,000 finds the same majority).
SAMPLE = 1000

# path -> the _Table last read from it, while its identity holds.
_tables = {}


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
                                                    extra[4] or None,
                                                    _login_delay(":".join(fields[7:])))


def _login_delay(extra_fields: str):
    """The login_delay=N of Dovecot's extra fields, or None."""
    for word in extra_fields.split():
        name, _, value = word.partition("=")
        if name == "login_delay":
            if not (is_number(value) and len(value) <= 9):
                raise UserDBError("login_delay needs a number of seconds")
            return int(value)
    return None


class _Table:
    """A user database read whole: its lines, the line of each name (the
    first; later ones in case it cannot be used), and the dummy hash with
    the line it is on."""

    __slots__ = ("identity", "lines", "first", "more", "dummy", "dummy_line")

    def __init__(self, identity, lines, first, more, dummy, dummy_line):
        self.identity, self.lines, self.first, self.more = identity, lines, first, more
        self.dummy, self.dummy_line = dummy, dummy_line


def forget() -> None:
    """Drop the cached tables (as a new process starts without them)."""
    _tables.clear()


def _identity(st: os.stat_result):
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _hash_field(rest: bytes) -> bytes:
    hashed = rest.partition(b":")[0]
    if hashed[:1] == b"{":
        hashed = hashed.partition(b"}")[2]
    return hashed


class UserDB:
    def __init__(self, path: str, log):
        self.path, self.log = path, log

    def preload(self) -> None:
        """Read the table now (a listener, before it forks: its children
        find it and read the file again only if it has changed)."""
        self.table()

    def table(self) -> _Table:
        """The table of the file as it is now: the cached one while the
        file's (dev, ino, size, mtime, ctime) are those it was read with."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                identity = _identity(st)
                cached = _tables.get(self.path)
                if cached is not None and cached.identity == identity:
                    return cached
                data = f.read()
        except OSError as exc:
            self.log.error("Unable to read the user database %s: %s (%d)"
                           % (self.path, exc.strerror, exc.errno))
            _tables.pop(self.path, None)
            return _Table(None, [], {}, {}, unixdb.crypt_gensalt(), None)
        table = self._index(data, identity)
        if st.st_mtime < time.time() - RACY:
            _tables[self.path] = table
        else:
            _tables.pop(self.path, None)
        return table

    def _index(self, data: bytes, identity) -> _Table:
        """Each name's line, found by splitting at the first colon: a line
        is parsed whole only when its name logs in.  A line without a name
        is reported now."""
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        first, more, hashes, numbers = {}, {}, [], []
        for number, line in enumerate(lines):
            name, colon, rest = line.partition(b":")
            if not colon or not name:
                self._parse(lines, number)              # a comment, a blank line, or bad
                continue
            if name.lstrip()[:1] == b"#":
                continue
            name = name.decode("latin-1")
            if name in first:
                more.setdefault(name, []).append(number)
            else:
                first[name] = number
            hashes.append(_hash_field(rest))
            numbers.append(number)
        stride = len(hashes) // SAMPLE + 1
        dummy = cryptpw.most_common(hashes[::stride])
        dummy_line = None
        if dummy is None:
            dummy = unixdb.crypt_gensalt()
        else:
            dummy_line = next(numbers[i] for i, hashed in enumerate(hashes)
                              if hashed.lstrip(b"!") == dummy)
        return _Table(identity, lines, first, more, dummy, dummy_line)

    def _parse(self, lines, number: int):
        """parse_line of lines[number]; None, with a warning, if it cannot be used."""
        try:
            return parse_line(lines[number].decode("latin-1"))
        except UserDBError as exc:
            self.log.warning("%s line %d: %s; line ignored" % (self.path, number + 1, exc))
            return None

    def entry(self, table: _Table, user: str):
        """(hash, Account) of user's first usable line, or (None, None).
        Either way one line is parsed: an unknown name parses the dummy's."""
        number = table.first.get(user)
        if number is None:
            if table.dummy_line is not None:
                self._parse(table.lines, table.dummy_line)
            return None, None
        for number in [number] + table.more.get(user, []):
            entry = self._parse(table.lines, number)
            if entry is not None:
                return entry[1], entry[2]
        return None, None

    def lookup(self, user: str):
        """(hash, Account) of user, or (None, None)."""
        return self.entry(self.table(), user)

    def account(self, user: str):
        """user's account, or None (APOP: the secret is in pop.auth)."""
        return self.lookup(user)[1]

    def authenticate(self, user: str, password: bytes, client) -> Account:
        table = self.table()
        hashed, account = self.entry(table, user)
        target, usable = ((table.dummy, False) if hashed is None
                          else cryptpw.verifier(hashed, table.dummy))
        computed = cryptpw.crypt(password, target) or b""
        if same_hash(computed, target) and usable:
            return account
        reason = ("no such user" if hashed is None else "wrong password" if usable else
                  "no usable password (locked or empty)")
        raise AuthError(replies.BAD_PASSWORD, log=reason, user=user)
