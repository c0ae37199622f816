"""The SVR4 package formats, written and read back: pkginfo, pkgmap, the
cpio archives (SVR4 ASCII "070701" and odc "070707") and the datastream
that pkgtrans writes and pkgadd -d reads.

Each writer follows the illumos function that defines its format (named in
its docstring; ../../../shared/spec/svr4-package.md has the sources).  The
readers are separate code, so that verify.py checks what build.py wrote
rather than what it meant to write.

Runs on the build host (Python 3.6 or newer); nothing here runs on the target.
"""

import os
import re
import stat

BLOCK = 512                         # the datastream's logical block (BLK_SIZE)
HDR_PREFIX = "# PaCkAgE DaTaStReAm"
HDR_SUFFIX = "# end of header"
TRAILER = "TRAILER!!!"
NEWC, ODC = "070701", "070707"      # cpio -c on SVR4 (ASC); cpio -H odc (CHR)

# The file system splpkgmap() sizes the package for: UFS, 8 KiB blocks
# and 1 KiB fragments (the common case; ds_getpkg() wants maxsiz + 50 free).
BSIZE, FRSIZE = 8192, 1024
DIRSIZE = FRSIZE // 512             # a directory takes one fragment
EFACTOR = 128                       # splpkgmap()'s guess at a pkgmap line's length

# pkginfo(4): the parameters pkgadd insists on, and the names PKG may not take.
MANDATORY = ("PKG", "NAME", "ARCH", "VERSION", "CATEGORY")
RESERVED = ("install", "new", "all")


def checksum(data: bytes) -> int:
    """compute_checksum() in libpkg's verify.c: the System V sum of the
    bytes (GNU `sum -s` prints the same number)."""
    total = sum(data) & 0xffffffff
    half = (total & 0xffff) + (total >> 16)
    return (half & 0xffff) + (half >> 16)


def nblk(size: int) -> int:
    """nblk() in libpkg: the 512-byte blocks a file of size bytes takes on
    UFS, indirect blocks included."""
    if size == 0:
        return 1
    direct, per_block = 12, BSIZE // 4          # 12 direct blocks; 4-byte block addresses
    blocks = -(-size // BSIZE)
    if blocks > per_block * (per_block + 1) + direct:
        count = (blocks - per_block * per_block - (direct + 1)) // per_block
        indirect = count + count // per_block + per_block + 3
    elif blocks > per_block + direct:
        indirect = (blocks - (direct + 1)) // per_block + 2
    elif blocks > direct:
        indirect = 1
    else:
        return -(-size // FRSIZE) * FRSIZE // 512        # fragments only
    return (blocks + indirect) * (BSIZE // 512)


def part_blocks(entries: list) -> int:
    """The 512-byte blocks a one-part package takes as splpkgmap() counts
    them for the pkgmap's bmax: the package directory, the pkgmap, the
    install directory and its files, every file, and every directory the
    files need (which pkgmk undercounts; counting each keeps bmax honest)."""
    blocks = 2 + nblk(len(entries) * EFACTOR)
    infos = [e for e in entries if e.ftype == "i"]
    if infos:
        blocks += 2 + sum(nblk(e.size) for e in infos)
    dirs = set()
    for e in entries:
        if e.ftype in "fev":
            blocks += nblk(e.size)
            parts = e.path.strip("/").split("/")[:-1]
            dirs.update("/".join(parts[:n]) for n in range(1, len(parts) + 1))
    return blocks + DIRSIZE * len(dirs)


# --- pkginfo ------------------------------------------------------------------

def pkginfo_text(params: list) -> str:
    """PARAM="value" lines, in the order given (pkginfo(4))."""
    return "".join('%s="%s"\n' % (key, value) for key, value in params)


def parse_pkginfo(text: str) -> tuple:
    """The parameters of a pkginfo file as a dict, and its problems."""
    params, problems = {}, []
    for n, line in enumerate(text.split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not re.match(r"[A-Z][A-Z0-9_]*$", key):
            problems.append("pkginfo line %d is not PARAM=value: %r" % (n, line))
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in params:
            problems.append("pkginfo sets %s twice" % key)
        params[key] = value
    if not text.endswith("\n"):
        problems.append("pkginfo does not end with a newline")
    return params, problems


def pkginfo_problems(params: dict) -> list:
    """What pkgadd would refuse in these parameters (pkginfo(4), pkgnmchk())."""
    problems = ["pkginfo lacks the mandatory %s" % key for key in MANDATORY if key not in params]
    pkg = params.get("PKG")
    if pkg is not None and (not re.match(r"[A-Za-z][A-Za-z0-9]{0,8}$", pkg)
                            or pkg.lower() in RESERVED):
        problems.append("PKG %r: at most 9 letters and digits, the first a letter, "
                        "and not install, new or all" % pkg)
    if len(params.get("NAME", "")) > 256:
        problems.append("NAME is longer than 256 characters")
    version = params.get("VERSION", "")
    if len(version) > 256 or version.startswith("("):
        problems.append("VERSION %r: at most 256 characters, not starting with (" % version)
    if "ARCH" in params and not all(re.match(r"[A-Za-z0-9_.]{1,16}$", token)
                                    for token in params["ARCH"].split(",")):
        problems.append("ARCH %r: a comma-separated list of tokens of up to 16 characters"
                        % params["ARCH"])
    if "CATEGORY" in params:
        categories = params["CATEGORY"].split(",")
        if not all(re.match(r"[A-Za-z0-9]{1,16}$", c) for c in categories):
            problems.append("CATEGORY %r: comma-separated alphanumeric names"
                            % params["CATEGORY"])
        elif not {"application", "system"} & set(c.lower() for c in categories):
            problems.append("CATEGORY %r names neither application nor system"
                            % params["CATEGORY"])
    return problems


# --- pkgmap -------------------------------------------------------------------

class Entry:
    """One pkgmap line.  ftype d (directory), f (file) or i (an install
    file: pkginfo or a script); mode None, owner and group "?" leave an
    existing directory's attributes alone."""

    def __init__(self, ftype, path, mode=None, owner="?", group="?", size=None,
                 cksum=None, mtime=None, klass="none", part=1):
        self.ftype, self.path, self.klass, self.part = ftype, path, klass, part
        self.mode, self.owner, self.group = mode, owner, group
        self.size, self.cksum, self.mtime = size, cksum, mtime

    def line(self) -> str:
        """The entry as ppkgmap() prints it."""
        words = [str(self.part), self.ftype]
        if self.ftype != "i":
            words.append(self.klass)
        words.append(self.path)
        if self.ftype in "dxcbpfve":
            words += ["?" if self.mode is None else "%04o" % self.mode, self.owner, self.group]
        if self.ftype in "ifve":
            words += [str(self.size), str(self.cksum), str(self.mtime)]
        return " ".join(words)

    @classmethod
    def parse(cls, line: str):
        """An entry from a pkgmap line; ValueError says what is wrong."""
        words = line.split()
        if len(words) < 3 or not words[0].isdigit():
            raise ValueError("not a pkgmap entry")
        part, ftype = int(words[0]), words[1]
        if ftype == "i":
            words = words[2:]
            klass = None
        elif ftype in "dxfve":
            klass, words = words[2], words[3:]
        else:
            raise ValueError("file type %r is not one this package uses" % ftype)
        path, rest = words[0], words[1:]
        want = {"i": 3, "d": 3, "x": 3}.get(ftype, 6)
        if len(rest) != want:
            raise ValueError("%d fields after the path, not %d" % (len(rest), want))
        entry = cls(ftype, path, klass=klass, part=part)
        if ftype != "i":
            mode, entry.owner, entry.group = rest[:3]
            if mode != "?":
                if not re.match(r"[0-7]{3,4}$", mode):
                    raise ValueError("mode %r is not octal" % mode)
                entry.mode = int(mode, 8)
            rest = rest[3:]
        if rest:
            if not all(word.isdigit() for word in rest):
                raise ValueError("size, checksum and mtime must be numbers")
            entry.size, entry.cksum, entry.mtime = (int(word) for word in rest)
        return entry


def pkgmap_text(entries: list, bmax: int) -> str:
    """": 1 bmax", then the entries sorted by path (pkgmk's outvol())."""
    lines = [": 1 %d" % bmax] + [e.line() for e in sorted(entries, key=lambda e: e.path)]
    return "\n".join(lines) + "\n"


def parse_pkgmap(text: str) -> tuple:
    """(nparts, bmax, entries, problems) of a pkgmap."""
    lines = text.split("\n")
    problems = []
    head = re.match(r": (\d+) (\d+)$", lines[0])
    if not head:
        return 0, 0, [], ["the pkgmap's first line is not ': nparts bmax': %r" % lines[0]]
    if lines[-1] != "":
        problems.append("the pkgmap does not end with a newline")
    entries = []
    for n, line in enumerate(lines[1:-1], 2):
        try:
            entries.append(Entry.parse(line))
        except ValueError as exc:
            problems.append("pkgmap line %d (%r): %s" % (n, line, exc))
    return int(head.group(1)), int(head.group(2)), entries, problems


def archive_name(entry) -> str:
    """Where a pkgmap entry's file is in the package directory."""
    if entry.ftype == "i":
        return entry.path if entry.path == "pkginfo" else "install/" + entry.path
    if entry.path.startswith("/"):
        return "root" + entry.path
    return "reloc/" + entry.path


# --- cpio ---------------------------------------------------------------------

class Member:
    """One cpio member: a path, its st_mode (type bits included), mtime
    and contents (b"" for a directory)."""

    def __init__(self, name, mode, mtime, data=b""):
        self.name, self.mode, self.mtime, self.data = name, mode, mtime, data

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def _pad(n: int, to: int) -> int:
    return -n % to


def cpio(members: list, fmt: str = NEWC) -> bytes:
    """An archive as `cpio -ocD -C 512` writes it on SVR4 (NEWC: 110-byte
    headers of lower-case hex, name and data padded to 4 bytes) or with
    `-H odc` (ODC: 76-byte octal headers, no padding); then TRAILER!!!,
    and NULs to the end of the 512-byte block.  Owned by root (uid and gid
    0), as a package built by root is."""
    out = bytearray()
    for ino, m in enumerate(members + [Member(TRAILER, 0, 0)], 1):
        trailer = m.name == TRAILER
        name = m.name.encode() + b"\0"
        nlink = 2 if m.is_dir else 1
        if fmt == NEWC:
            fields = (0 if trailer else ino, m.mode, 0, 0, nlink, m.mtime, len(m.data),
                      0, 0, 0, 0, len(name), 0)
            out += (NEWC + "".join("%08x" % f for f in fields)).encode() + name
            out += b"\0" * _pad(110 + len(name), 4) + m.data + b"\0" * _pad(len(m.data), 4)
        else:
            out += ("%s%06o%06o%06o%06o%06o%06o%06o%011o%06o%011o" % (
                ODC, 0, 0 if trailer else ino, m.mode, 0, 0, nlink, 0, m.mtime, len(name),
                len(m.data))).encode() + name + m.data
    return bytes(out + b"\0" * _pad(len(out), BLOCK))


class CpioError(Exception):
    """An archive that cannot be read; the text says where and why."""


def read_cpio(buf: bytes, start: int) -> tuple:
    """The members of the archive at buf[start:] and the offset just after
    its trailer: (members, end).  Either header format; one per archive."""
    members, pos, magic = [], start, None
    while True:
        if pos + 6 > len(buf):
            raise CpioError("offset %d: the archive is cut short (no %s)" % (pos, TRAILER))
        this = buf[pos:pos + 6].decode("ascii", "replace")
        if this not in (NEWC, ODC) or (magic and this != magic):
            raise CpioError("offset %d: no cpio header (%r)" % (pos, buf[pos:pos + 6]))
        magic = this
        if magic == NEWC:
            head, fields = 110, _fields(buf, pos + 6, [8] * 13, 16, pos)
            mode, mtime, size, namesize = fields[1], fields[5], fields[6], fields[11]
            name_at = pos + head
            data_at = name_at + namesize + _pad(head + namesize, 4)
            end = data_at + size + _pad(size, 4)
        else:
            head, fields = 76, _fields(buf, pos + 6, [6] * 7 + [11, 6, 11], 8, pos)
            mode, mtime, namesize, size = fields[2], fields[7], fields[8], fields[9]
            name_at = pos + head
            data_at = name_at + namesize
            end = data_at + size
        raw = buf[name_at:name_at + namesize]
        if namesize < 1 or len(raw) < namesize or raw[-1:] != b"\0":
            raise CpioError("offset %d: the name is not NUL-terminated" % pos)
        if end > len(buf):
            raise CpioError("offset %d: the archive is cut short" % pos)
        name = raw[:-1].decode("utf-8", "replace")
        if name == TRAILER:
            return members, end
        members.append(Member(name, mode, mtime, bytes(buf[data_at:data_at + size])))
        pos = end


def _fields(buf, at, widths, base, pos) -> list:
    values = []
    for width in widths:
        text = buf[at:at + width].decode("ascii", "replace")
        try:
            values.append(int(text, base))
        except ValueError:
            raise CpioError("offset %d: header field %r is not a number" % (pos, text)) from None
        at += width
    return values


# --- the directory format and the datastream ---------------------------------

def find_order(pkgdir: str) -> list:
    """The names `find pkginfo pkgmap install reloc root archive -print`
    prints inside a package directory (pkgxfer()), each directory's
    entries sorted so that the archive is the same every time."""
    names = []

    def walk(name):
        names.append(name)
        path = os.path.join(pkgdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            for child in sorted(os.listdir(path)):
                walk(name + "/" + child)

    for top in ("pkginfo", "pkgmap", "install", "reloc", "root", "archive"):
        if os.path.lexists(os.path.join(pkgdir, top)):
            walk(top)
    return names


def members_of(pkgdir: str, names: list, prefix: str = "") -> list:
    """cpio members for these names in pkgdir, as the disk has them."""
    out = []
    for name in names:
        path = os.path.join(pkgdir, name)
        st = os.lstat(path)
        data = b""
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                data = f.read()
        elif not stat.S_ISDIR(st.st_mode):
            raise ValueError("%s: only files and directories go into the package" % path)
        out.append(Member(prefix + name, st.st_mode, int(st.st_mtime), data))
    return out


def header(pkg: str, nparts: int, maxsize: int) -> bytes:
    """genheader(): the datastream's table of contents, NUL-filled to
    whole 512-byte blocks (with at least one NUL, as cat_and_count() grows
    its buffer before it is full)."""
    text = ("%s\n%s %d %d\n%s\n" % (HDR_PREFIX, pkg, nparts, maxsize, HDR_SUFFIX)).encode()
    return text + b"\0" * (BLOCK - len(text) % BLOCK)


def datastream(pkgdir: str, fmt: str = NEWC) -> bytes:
    """What `pkgtrans -s <spool> out.pkg PKG` writes for the one-part
    package in the directory pkgdir (whose name is PKG): the header, the
    archive of PKG/pkginfo and PKG/pkgmap (wdsheader()), then the part's
    archive, made inside the package directory (pkgxfer())."""
    pkg = os.path.basename(os.path.normpath(pkgdir))
    with open(os.path.join(pkgdir, "pkgmap")) as f:
        first = f.readline().split()
    nparts, bmax = int(first[1]), int(first[2])
    parent = os.path.dirname(os.path.normpath(pkgdir))
    return (header(pkg, nparts, bmax)
            + cpio(members_of(parent, [pkg + "/pkginfo", pkg + "/pkgmap"]), fmt)
            + cpio(members_of(pkgdir, find_order(pkgdir)), fmt))


def read_header(buf: bytes) -> tuple:
    """ds_init(): the table of contents [(pkg, nparts, maxsiz)] and the
    header's length; ValueError if there is none."""
    if buf[:20] != HDR_PREFIX.encode():
        raise ValueError("it does not start with %r" % HDR_PREFIX)
    size = BLOCK
    while HDR_SUFFIX.encode() not in buf[:size].split(b"\0")[0]:
        if size >= len(buf):
            raise ValueError("no %r line" % HDR_SUFFIX)
        size += BLOCK
    toc = []
    for line in buf[:size].split(b"\0")[0].decode("ascii", "replace").split("\n"):
        if line == HDR_SUFFIX:
            break
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) < 3 or not (words[1].isdigit() and words[2].isdigit()):
            raise ValueError("header line %r is not 'PKG nparts maxsize'" % line)
        toc.append((words[0], int(words[1]), int(words[2])))
    return toc, size
