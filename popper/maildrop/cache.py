"""Server mode's cache of a spool's message table.

<temp-dir>/.<user>.cache (set cache-dir, cache-name) holds the table scanned from the spool, keyed on
the spool's device, inode, size and modification time: a login that finds
the spool as it was serves it without scanning it.  It is written (to a new
file renamed into place) when a session leaves the spool as it found it,
and after a QUIT that rewrote it.  Any doubt -- another key, a short or
foreign file -- means no cache: the spool is scanned.
"""

import os
import struct
from array import array

from popper.maildrop.journal import is_private, replace_file
from popper.maildrop.scan import MessageTable
from popper.settings import cache_path

MAGIC = b"popper-cache 1\n"
HEADER = struct.Struct("<QQQqII")     # dev, ino, size, mtime_ns, count, separator length


def path_of(settings, user: str) -> str:
    return cache_path(settings, user)


def key(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def load(settings, user: str, st):
    """(MessageTable, separator) cached for a spool whose fstat is st, or None."""
    try:
        fd = os.open(path_of(settings, user), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not is_private(info):
            return None
        data = b""
        while len(data) < info.st_size:
            piece = os.pread(fd, info.st_size - len(data), len(data))
            if not piece:
                break
            data += piece
    finally:
        os.close(fd)
    try:
        return _parse(data, key(st))
    except (ValueError, struct.error, IndexError):
        return None


def _parse(data: bytes, key: tuple):
    if not data.startswith(MAGIC):
        return None
    pos = len(MAGIC)
    dev, ino, size, mtime, count, seplen = HEADER.unpack_from(data, pos)
    if (dev, ino, size, mtime) != key:
        return None
    pos += HEADER.size
    separator = data[pos:pos + seplen]
    pos += seplen
    table = MessageTable()
    for name in table.COLUMNS:
        column = getattr(table, name)
        column.frombytes(data[pos:pos + 8 * count])
        pos += 8 * count
    table.flags.frombytes(data[pos:pos + 4 * count])
    pos += 4 * count
    lengths = data[pos:pos + count]
    pos += count
    uids = []
    for n in lengths:
        uids.append(data[pos:pos + n])
        pos += n
    table.uid = uids
    if pos != len(data) or any(len(getattr(table, name)) != count
                               for name in table.COLUMNS) or len(table.flags) != count:
        return None
    return table, separator


def save(settings, user: str, st, table: MessageTable, separator: bytes) -> None:
    """Cache the table of the spool whose fstat() was st when the table was
    true of it (taken under the spool's locks, or checked against the key
    of a table scanned under them: a delivery since gives the spool another
    key); a failure only means the next login scans."""
    count = len(table)
    parts = [MAGIC, HEADER.pack(*key(st), count, len(separator)), separator]
    for name in table.COLUMNS:
        parts.append(getattr(table, name).tobytes())
    parts.append(table.flags.tobytes())
    parts.append(bytes(array("B", (len(uid) for uid in table.uid))))
    parts.extend(table.uid)
    try:
        replace_file(path_of(settings, user), b"".join(parts), durable=False)
    except OSError:
        pass
