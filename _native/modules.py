"""The one table of popper's compiled modules.

Everything that builds, probes for or installs a compiled module reads it
here: configure.py (the settings it writes, what it probes), setup.py (its
cffi_modules), the Makefile's build (`python _native/build.py`), make
install (packaging/install.py: which files must be there) and the SVR4
package (packaging/sco/build-native builds them on the host, build.py tells
preremove.sh what to delete).  It imports nothing, so each of those can
read it with runpy, without cffi and on Python 3.6.

Each module is built by the one builder, _native/build.py, from fragments
(_native/fragments/NAME.py, one per subsystem, as pyca/cryptography's
src/_cffi_src/): a fragment holds the C text cffi needs in four strings,

    INCLUDES        the #include lines
    TYPES           cdef: types, constants, and the Popper_HAS_* flags
    FUNCTIONS       cdef: the functions
    CUSTOMIZATIONS  C compiled into the module: the flags' values, and a
                    NULL stand-in for an optional symbol the host lacks

A function not every libc has is an optional symbol: TYPES declares
`static const long Popper_HAS_<NAME>;`, CUSTOMIZATIONS sets it to 1 or 0
from the host's headers (and defines the function as a NULL pointer when
0), and popper/native.py never calls it when the flag is 0 (see
fragments/crypt.py: crypt_gensalt_rn).

An optional module (optional=True) is built only where configure.py finds
its probe (header and library); a host without it builds the others, and
popper uses the module's pure twins there.  The modules that are not
optional are the C core: configure.py builds them all or none (NATIVE).

To add a module (popper._cNAME):
  1. its C sources in _native/ (if it has any beyond the library it binds),
     declared in popper.h or a header of its own;
  2. a fragment _native/fragments/NAME.py with the four strings;
  3. a row below: its name, its setting (NATIVE_NAME: configure.py writes
     it to popper/_settings.py, probed, for an optional module), its
     fragments, sources, libraries and probe;
  4. in popper/native.py, the import of popper._cNAME (None when it is not
     there), its BUILT flag and its bindings;
  5. beside the pure twin, the choice: native binding when built and
     POPPER_PUREPYTHON is unset, else the twin; and a parity test (marked
     twin) in tests/ that runs both on the same hostile inputs.
Nothing else needs to change: setup.py, make build, configure.py, make
install and the package follow this table.
"""


class Module:
    """One compiled module, popper._c<something>."""

    def __init__(self, name, setting, fragments, sources=(), libraries=(), probe=None,
                 optional=False):
        self.name = name                # the import name, popper._c...
        self.setting = setting          # the _settings.py flag that says to build it
        self.fragments = fragments      # _native/fragments/<fragment>.py, in order
        self.sources = sources          # C files in _native/ compiled into it
        self.libraries = libraries      # linked with -l
        self.probe = probe              # (header, library) configure.py checks
        self.optional = optional        # left out where the probe fails

    @property
    def variable(self) -> str:
        """Its builder's name in _native/build.py: _cpopper."""
        return self.name.rpartition(".")[2]

    @property
    def cffi_module(self) -> str:
        """setup.py's cffi_modules entry."""
        return "_native/build.py:" + self.variable

    def __repr__(self):
        return "Module(%r)" % self.name


MODULES = (
    # The C core: the scanner, the wire encoder, crypt, the account databases, ndbm files,
    # prctl, the QUIT's message edits, server mode's compaction plan.
    Module("popper._cpopper", "NATIVE", ("scan", "wire", "crypt", "accounts", "ndbm", "process",
                                         "rewrite", "compact"),
           sources=("scanner.c", "wire.c", "md5.c", "ndbm.c", "rewrite.c", "compact.c"),
           libraries=("crypt",),
           probe=("crypt.h", "crypt")),
    # PAM, apart so that the C core needs no libpam (python-pam stands in).
    Module("popper._cpam", "NATIVE_PAM", ("pam",), libraries=("pam",),
           probe=("security/pam_appl.h", "pam"), optional=True),
)
