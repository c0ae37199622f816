"""The one cffi builder (API mode) of every module in _native/modules.py.

    python _native/build.py [popper._cNAME...]

builds in place, for a checkout, the modules named, or those that
popper/_settings.py (configure.py) says to build.  setup.py names
"_native/build.py:_cNAME" in cffi_modules: each module's builder is a
function of that name below.  As pyca/cryptography's
build_ffi_for_binding, a module's cdef is its fragments' TYPES, then their
FUNCTIONS; its C source their INCLUDES, then their CUSTOMIZATIONS.
"""

import os
import runpy
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
MODULES = runpy.run_path(os.path.join(HERE, "modules.py"))["MODULES"]
COMPILE_ARGS = ["-O3", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def fragment(name: str) -> dict:
    return runpy.run_path(os.path.join(HERE, "fragments", name + ".py"))


def ffi_for(module, include_dirs=()) -> FFI:
    """The FFI of module (a modules.Module); include_dirs are searched
    before _native/ (a test puts an older libc's header first)."""
    parts = [fragment(name) for name in module.fragments]
    ffi = FFI()
    ffi.cdef("\n".join([part["TYPES"] for part in parts] + [part["FUNCTIONS"] for part in parts]))
    # setuptools wants the paths relative (to the directory it runs in).
    ffi.set_source(
        module.name,
        "\n".join([part["INCLUDES"] for part in parts] + [part["CUSTOMIZATIONS"] for part in parts]),
        sources=[os.path.relpath(os.path.join(HERE, name)) for name in module.sources],
        include_dirs=list(include_dirs) + [os.path.relpath(HERE)],
        libraries=list(module.libraries),
        extra_compile_args=COMPILE_ARGS,
    )
    return ffi


def _builder(module):
    return lambda: ffi_for(module)


for _module in MODULES:             # setup.py's cffi_modules: _native/build.py:_cpopper
    globals()[_module.variable] = _builder(_module)


def configured() -> list:
    """The modules popper/_settings.py says to build."""
    settings = runpy.run_path(os.path.join(TOP, "popper", "_settings.py"))
    return [module for module in MODULES if settings.get(module.setting)]


def main(argv: list) -> int:
    os.chdir(TOP)
    unknown = set(argv) - {module.name for module in MODULES}
    if unknown:
        print("build.py: no such module: %s" % " ".join(sorted(unknown)), file=sys.stderr)
        return 2
    for module in [m for m in MODULES if m.name in argv] if argv else configured():
        ffi_for(module).compile(verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
