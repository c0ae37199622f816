"""make install and make uninstall.

    PYTHON packaging/install.py install [--destdir DIR]
    PYTHON packaging/install.py uninstall [--destdir DIR]

install puts popper at the directories configure.py chose (popper/_settings.py),
under DESTDIR when it is given (the paths written into the files never
contain it):

  LIBDIR/popper/popper/      the package: its .py files, the C extension
                             built for PYTHON, and their byte code
  SBINDIR/popper, popauth    the launchers (packaging/launcher.py), one per PROGRAMS entry
  MANDIR/man8/               docs/*.8
  packaging/linux/ files     at LINUX's places, @NAME@ replaced by the setting NAME
  LIBDIR/popper/INSTALLED    the manifest: what install wrote, and the
                             directories it made

The package is copied, not installed with pip: its directory is popper's
own, named by the launcher, so no install scheme (Debian's adds "local"),
PATH, PYTHONPATH or site directory can move or hide it.  It is run by the
interpreter configure.py chose (PYTHON=), whose extension suffix and byte
code it writes.

Files under SYSCONFDIR are the administrator's: one is written only where
there is none, or where it is still what the last install wrote.
uninstall removes what the manifest lists and is unchanged, then the
directories install made, if they are empty; nothing else.  Python 3.6.
"""

import argparse
import hashlib
import os
import py_compile
import re
import runpy
import stat
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_launcher = runpy.run_path(os.path.join(HERE, "launcher.py"))
launcher, site_dirs = _launcher["launcher"], _launcher["site_dirs"]
MODULES = runpy.run_path(os.path.join(ROOT, "_native", "modules.py"))["MODULES"]   # compiled

# The programs: the name in SBINDIR and the module whose main() it runs.
# popauth comes here when it exists.
PROGRAMS = [("popper", "popper.cli"), ("popauth", "popper.popauth")]

# packaging/linux/: each file, the directory setting it goes under, and its
# name there.  All are templates; paths are templates too.
LINUX = [
    ("popper.socket", "SYSTEMD_UNIT_DIR", "popper.socket"),
    ("popper@.service", "SYSTEMD_UNIT_DIR", "popper@.service"),
    ("popper-standalone.socket", "SYSTEMD_UNIT_DIR", "popper-standalone.socket"),
    ("popper-standalone.service", "SYSTEMD_UNIT_DIR", "popper-standalone.service"),
    ("popper.xinetd", "SYSCONFDIR", "xinetd.d/popper"),
    ("popper.pam", "SYSCONFDIR", "pam.d/@PAM_SERVICE_NAME@"),
    ("popper.conf", "SYSCONFDIR", "popper.conf.sample"),
    ("popper.conf", "SYSCONFDIR", "popper.conf"),    # the live one, if there is none
    ("inetd.conf", "DATADIR", "popper/inetd.conf"),
]

MANIFEST = "INSTALLED"


class InstallError(Exception):
    """Something install or uninstall cannot do; the message says what."""


def read_settings(root: str = ROOT) -> dict:
    path = os.path.join(root, "popper", "_settings.py")
    if not os.path.exists(path):
        raise InstallError("%s is missing: run ./configure.py first" % path)
    settings = runpy.run_path(path)
    if "PYTHON" not in settings or "LIBDIR" not in settings:
        raise InstallError("%s was written by an older configure.py: run ./config.status"
                           % path)
    return settings


def library(settings: dict) -> str:
    """popper's own directory, first on the launcher's sys.path."""
    return os.path.join(settings["LIBDIR"], "popper")


def values(settings: dict) -> dict:
    """What @NAME@ may name: the settings, and what the templates derive."""
    out = dict(settings)
    out["PAM_SERVICE_NAME"] = settings["PAM_SERVICE"] or "popper"
    out["TEMP_DROP_DIR"] = settings["TEMP_DIR"] or settings["SPOOL_DIR"]
    return out


def _text(value) -> str:
    """A setting as popper.conf and the unit files spell it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(value)
    return str(value)


def substitute(text: str, settings: dict) -> str:
    """text with each @NAME@ replaced by the setting NAME (values())."""
    known = values(settings)

    def one(match):
        name = match.group(1)
        if name not in known:
            raise InstallError("@%s@ is no setting of popper/_settings.py" % name)
        return _text(known[name])
    return re.sub(r"@([A-Z][A-Z0-9_]*)@", one, text)


class Item:
    """A file install writes: its path (without DESTDIR), bytes and mode;
    config files are the administrator's once there."""

    def __init__(self, path: str, data: bytes, mode: int, config: bool = False,
                 compile_to: str = None):
        self.path, self.data, self.mode, self.config = path, data, mode, config
        self.compile_to = compile_to             # a .py file's byte code, there


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def extension_suffixes(ext_suffix: str = None) -> tuple:
    """The names a compiled module built for this interpreter may end in:
    its EXT_SUFFIX (make build), or the stable ABI's (setuptools builds
    cffi's modules for it: `setup.py build_ext --inplace`, pip)."""
    return (ext_suffix or sysconfig.get_config_var("EXT_SUFFIX"), ".abi3.so")


def package_files(root: str = ROOT, ext_suffix: str = None) -> list:
    """The package's files, relative to root: every .py under popper/ and
    the compiled modules built for this interpreter (extension_suffixes)."""
    suffixes = extension_suffixes(ext_suffix)
    found = []
    for directory, dirs, files in os.walk(os.path.join(root, "popper")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py") or name.endswith(suffixes):
                found.append(os.path.relpath(os.path.join(directory, name), root))
    return found


def plan(settings: dict, root: str = ROOT, ext_suffix: str = None) -> list:
    """Every file install writes, as Items, from the checkout at root."""
    items = []
    lib = library(settings)
    files = package_files(root, ext_suffix)
    for module in MODULES:
        names = [module.name.replace(".", os.sep) + s for s in extension_suffixes(ext_suffix)]
        if settings.get(module.setting) and not set(names) & set(files):
            raise InstallError("%s is not built for %s: run make first"
                               % (names[0], settings["PYTHON"]))
    for name in files:
        path = os.path.join(lib, name)
        is_source = name.endswith(".py")
        items.append(Item(path, _read(os.path.join(root, name)), 0o644 if is_source else 0o755,
                          compile_to=_byte_code(path) if is_source else None))
    site = _site_dirs(settings["PYTHON"])
    for program, module in PROGRAMS:
        text = launcher(settings["PYTHON"], lib, settings["LOG_FACILITY"], module,
                        installed_in=settings["SBINDIR"], site=site)
        items.append(Item(os.path.join(settings["SBINDIR"], program), text.encode(), 0o755))
    docs = os.path.join(root, "docs")
    for name in sorted(os.listdir(docs)):
        if name.endswith(".8"):
            items.append(Item(os.path.join(settings["MANDIR"], "man8", name),
                              _read(os.path.join(docs, name)), 0o644))
    for source, directory, name in LINUX:
        if settings[directory] is None:          # --without-systemdsystemunitdir
            continue
        text = _read(os.path.join(HERE, "linux", source)).decode("utf-8")
        items.append(Item(os.path.join(settings[directory], substitute(name, settings)),
                          substitute(text, settings).encode("utf-8"), 0o644,
                          config=directory == "SYSCONFDIR"))
    return items


def _site_dirs(python: str):
    """The site directories the launchers name (they run without site.py),
    or None (with site.py) when the interpreter cannot be asked."""
    try:
        return site_dirs(python)
    except (OSError, ValueError, SyntaxError, subprocess.SubprocessError):
        return None


def _byte_code(path: str) -> str:
    head, name = os.path.split(path)
    return os.path.join(head, "__pycache__", "%s.%s.pyc" % (name[:-3],
                                                           sys.implementation.cache_tag))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the manifest ---------------------------------------------------------------

class Manifest:
    """What an install wrote (path -> sha256) and the directories it made."""

    def __init__(self, files=None, dirs=None):
        self.files = dict(files or {})
        self.dirs = list(dirs or [])

    def text(self) -> str:
        lines = ["# Written by popper's make install; make uninstall removes what it lists.",
                 "# file SHA256 PATH: a file install wrote; dir PATH: a directory it made."]
        lines += ["dir %s" % d for d in self.dirs]
        lines += ["file %s %s" % (self.files[p], p) for p in sorted(self.files)]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, where: str) -> "Manifest":
        manifest = cls()
        for number, line in enumerate(text.splitlines(), 1):
            if not line or line.startswith("#"):
                continue
            kind, _, rest = line.partition(" ")
            if kind == "dir" and rest.startswith("/"):
                manifest.dirs.append(rest)
            elif kind == "file" and re.match(r"[0-9a-f]{64} /", rest):
                manifest.files[rest[65:]] = rest[:64]
            else:
                raise InstallError("%s line %d is not a manifest line: %r" % (where, number, line))
        return manifest


def manifest_path(settings: dict) -> str:
    return os.path.join(library(settings), MANIFEST)


def read_manifest(settings: dict, destdir: str):
    path = destdir + manifest_path(settings)
    try:
        with open(path, encoding="utf-8") as f:
            return Manifest.parse(f.read(), path)
    except FileNotFoundError:
        return None


def _content(path: str):
    """A regular file's bytes; None if there is none (or it is not one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _read(path)


# --- install ----------------------------------------------------------------------

class Installer:
    def __init__(self, settings: dict, destdir: str, say=print):
        self.settings, self.say = settings, say
        self.destdir = destdir.rstrip("/")
        if self.destdir:
            os.makedirs(self.destdir, exist_ok=True)
        self.old = read_manifest(settings, self.destdir) or Manifest()
        self.new = Manifest(dirs=self.old.dirs)

    def make_dirs(self, path: str) -> None:
        """path and its parents; the ones made are recorded (without DESTDIR)."""
        missing = []
        while path != "/" and not os.path.isdir(self.destdir + path):
            missing.append(path)
            path = os.path.dirname(path)
        for path in reversed(missing):
            os.mkdir(self.destdir + path)
            os.chmod(self.destdir + path, 0o755)
            if path not in self.new.dirs:
                self.new.dirs.append(path)

    def write(self, path: str, data: bytes, mode: int) -> None:
        """Replace the file at path whole (a running popper never sees half of one)."""
        target = self.destdir + path
        self.make_dirs(os.path.dirname(path))
        temporary = "%s.install-%d" % (target, os.getpid())
        with open(temporary, "wb") as f:
            f.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
        self.new.files[path] = digest(data)

    def theirs(self, item: Item) -> bool:
        """Is the file at item's path the administrator's: there, and neither
        what this install writes nor what the last one wrote (a link is theirs)?"""
        target = self.destdir + item.path
        if not os.path.lexists(target):
            return False
        there = _content(target)
        return there is None or (there != item.data
                                 and self.old.files.get(item.path) != digest(there))

    def install(self, items: list) -> None:
        kept = []
        for item in items:
            if item.config and self.theirs(item):
                kept.append(item.path)
                continue
            self.write(item.path, item.data, item.mode)
            if item.compile_to:
                self.make_dirs(os.path.dirname(item.compile_to))
                py_compile.compile(self.destdir + item.path, self.destdir + item.compile_to,
                                   dfile=item.path, doraise=True)
                os.chmod(self.destdir + item.compile_to, 0o644)
                self.new.files[item.compile_to] = digest(_read(self.destdir + item.compile_to))
        for path in sorted(set(self.old.files) - set(self.new.files)):
            if path not in kept:                 # a file this version no longer has
                remove_file(self.destdir, path, self.old.files[path], self.say)
        self.write(manifest_path(self.settings), self.new.text().encode("utf-8"), 0o644)
        del self.new.files[manifest_path(self.settings)]
        where = " under %s" % self.destdir if self.destdir else ""
        lib = library(self.settings) + "/"
        self.say("installed%s:" % where)
        self.say("  %s (%d files: the package, its byte code%s)" % (
            lib, sum(p.startswith(lib) for p in self.new.files),
            ", the C extension" if self.settings["NATIVE"] else ""))
        for path in sorted(p for p in self.new.files if not p.startswith(lib)):
            self.say("  " + path)
        for path in kept:
            self.say("kept %s%s: it is not what make install wrote there" % (self.destdir, path))
        self.say("make uninstall%s removes them (list: %s)"
                 % (" DESTDIR=" + self.destdir if self.destdir else "",
                    manifest_path(self.settings)))


def install(settings: dict, destdir: str = "", root: str = ROOT, say=print) -> None:
    Installer(settings, destdir, say).install(plan(settings, root))


# --- uninstall --------------------------------------------------------------------

def remove_file(destdir: str, path: str, sha256: str, say) -> bool:
    """Remove destdir + path if it is still the file install wrote."""
    data = _content(destdir + path)
    if data is None:
        return True
    if digest(data) != sha256:
        say("kept %s%s: changed since make install wrote it" % (destdir, path))
        return False
    os.unlink(destdir + path)
    return True


def uninstall(settings: dict, destdir: str = "", say=print) -> None:
    destdir = destdir.rstrip("/")
    manifest = read_manifest(settings, destdir)
    if manifest is None:
        say("nothing to uninstall: there is no %s%s" % (destdir, manifest_path(settings)))
        return
    for path in sorted(manifest.files):
        remove_file(destdir, path, manifest.files[path], say)
    os.unlink(destdir + manifest_path(settings))
    for path in sorted(manifest.dirs, key=len, reverse=True):     # the deepest first
        try:
            os.rmdir(destdir + path)
        except FileNotFoundError:
            pass
        except OSError:
            say("kept %s%s: not empty" % (destdir, path))
    say("uninstalled %d files%s" % (len(manifest.files),
                                   " under " + destdir if destdir else ""))


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description="make install and make uninstall for popper")
    parser.add_argument("action", choices=("install", "uninstall"))
    parser.add_argument("--destdir", default="", help="stage the files under this directory")
    args = parser.parse_args(argv)
    try:
        settings = read_settings()
        if args.action == "install" and sys.executable != settings["PYTHON"]:
            raise InstallError("install runs with the PYTHON configure.py chose, %s, not %s"
                               % (settings["PYTHON"], sys.executable))
        if args.destdir and not args.destdir.startswith("/"):
            raise InstallError("DESTDIR needs an absolute path, not %r" % args.destdir)
        if args.action == "install":
            install(settings, args.destdir)
        else:
            uninstall(settings, args.destdir)
    except (InstallError, OSError, ValueError) as exc:
        print("%s: %s" % (args.action, exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
