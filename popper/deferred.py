"""Modules read now and run at their first import: what only some sessions
use (X-MANGLE's email package: ~17 ms of imports on a clean interpreter),
which must still not be read from the interpreter's files after the
session becomes the user (who may not be able to read them).

read(names) finds each module that is not loaded yet and keeps its byte
code (the .pyc's bytes, checked against its source as the import system
checks them; else the loader's compiled code); a finder first on
sys.meta_path hands it to the import system when the module is first
imported, which runs it then.  A compiled (C) module cannot wait: it is
imported at once.  A name that is not there (another Python) is passed
over; a module the list misses is imported from its file as usual
(tests/test_deferred.py holds that the list misses none)."""

import marshal
import os
import stat
import struct
import sys

try:    # importlib's own classes, without importing importlib (and warnings)
    from _frozen_importlib import ModuleSpec
    from _frozen_importlib_external import MAGIC_NUMBER, PathFinder, SourceFileLoader
except ImportError:
    from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
    from importlib.util import MAGIC_NUMBER

__all__ = ["read", "held", "readable_by_all"]


class _Held:
    """The finder and loader of the modules read ahead."""

    def __init__(self):
        self.modules = {}           # name -> (spec found when read, byte code or code)

    def find_spec(self, name, path=None, target=None):
        entry = self.modules.get(name)
        if entry is None:
            return None
        spec = entry[0]
        return ModuleSpec(
            name, self, origin=spec.origin,
            is_package=spec.submodule_search_locations is not None)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        found, code = self.modules.pop(module.__name__)
        spec = module.__spec__
        spec.has_location, spec.cached = True, found.cached
        if found.submodule_search_locations is not None:
            spec.submodule_search_locations = list(found.submodule_search_locations)
            module.__path__ = spec.submodule_search_locations
        module.__file__, module.__cached__ = found.origin, found.cached
        if isinstance(code, bytes):
            code = marshal.loads(code)
        exec(code, module.__dict__)


_HELD = _Held()


def held() -> list:
    """The names read and not yet imported."""
    return sorted(_HELD.modules)


def readable_by_all(names, path=None) -> bool:
    """Whether every user can import the named modules from their files:
    each directory on the import path (path, else sys.path) that exists,
    the named modules' packages there, their byte-code caches, every one
    open to others (read and search) and every directory above them
    searchable.  Then nothing need be read ahead: the session finds them
    as the user as root would (files are taken to be as readable as the
    directory they are in, as an install leaves them)."""
    path = sys.path if path is None else path
    dirs = [d for d in path if d and os.path.isdir(d)]
    for top in sorted({name.split(".")[0] for name in names if "." in name}):
        module = sys.modules.get(top)
        found = list(getattr(module, "__path__", None) or []) if module else [
            os.path.join(d, top) for d in dirs if os.path.isdir(os.path.join(d, top))]
        if not found:
            return False                # a package not there: let read() decide
        dirs += found
    if getattr(sys, "pycache_prefix", None):
        return False                    # the byte code lies elsewhere: read ahead
    dirs += [os.path.join(d, "__pycache__") for d in dirs
             if os.path.isdir(os.path.join(d, "__pycache__"))]
    searched = set()
    for d in dirs:
        d = os.path.abspath(d)
        if not _open_to_others(d, stat.S_IROTH | stat.S_IXOTH):
            return False
        parent = os.path.dirname(d)
        while parent not in searched:
            searched.add(parent)
            if not _open_to_others(parent, stat.S_IXOTH):
                return False
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
    return True


def _open_to_others(path: str, bits: int) -> bool:
    try:
        return os.stat(path).st_mode & bits == bits
    except OSError:
        return False


def read(names) -> None:
    """Read each named module (a package before its modules) not yet
    loaded, for a later import."""
    if _HELD not in sys.meta_path:
        sys.meta_path.insert(0, _HELD)
    for name in names:
        if name in sys.modules or name in _HELD.modules:
            continue
        parent = name.rpartition(".")[0]
        path = None
        if parent:
            if parent in _HELD.modules:
                path = _HELD.modules[parent][0].submodule_search_locations
            elif parent in sys.modules:
                path = getattr(sys.modules[parent], "__path__", None)
            if path is None:
                continue                # not there, or not a package, in this Python
        spec = PathFinder.find_spec(name, path)
        if spec is None:
            continue
        if not isinstance(spec.loader, SourceFileLoader):
            try:
                __import__(name)                    # a C module: now
            except ImportError:
                pass
            continue
        code = _pyc(spec)
        if code is None:
            try:
                code = spec.loader.get_code(name)
            except (ImportError, SyntaxError, OSError):
                continue
        _HELD.modules[name] = (spec, code)


def _pyc(spec):
    """The byte code of spec's .pyc when it is its source's (PEP 552's
    timestamp header: magic, flags 0, mtime, size); else None."""
    if sys.version_info < (3, 7) or not spec.cached:
        return None
    try:
        with open(spec.cached, "rb") as f:
            data = f.read()
        st = os.stat(spec.origin)
    except OSError:
        return None
    header = MAGIC_NUMBER + struct.pack("<III", 0, int(st.st_mtime) & 0xFFFFFFFF,
                                        st.st_size & 0xFFFFFFFF)
    return data[16:] if data[:16] == header else None
