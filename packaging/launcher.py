"""The launcher: the small program installed as sbin/popper (and as
/etc/popper by the SVR4 package).

It names its interpreter and its library directory, so neither the PATH,
PYTHONPATH, the user's site directory nor the interpreter's install scheme
(Debian's adds a "local") decides which popper runs: -E ignores PYTHON*
variables, -s the user's site-packages, and the library directory comes
first on sys.path.
"""

TEMPLATE = """\
#!{python} -Es
# popper's launcher, written by packaging/launcher.py.  It runs popper from
# {libdir} with this interpreter, whatever PATH or PYTHONPATH say.
import sys
sys.path.insert(0, {libdir!r})
from popper.cli import main
sys.exit(main())
"""


def launcher(python: str, libdir: str) -> str:
    """The launcher's text for the interpreter python (an absolute path) and
    the directory libdir that holds the popper package."""
    if not python.startswith("/") or not libdir.startswith("/"):
        raise ValueError("the launcher needs absolute paths, not %r and %r" % (python, libdir))
    if any(c.isspace() for c in python):
        raise ValueError("an interpreter path with white space cannot be a #! line: %r"
                         % python)
    return TEMPLATE.format(python=python, libdir=libdir)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python3 packaging/launcher.py PYTHON LIBDIR > popper")
    sys.stdout.write(launcher(sys.argv[1], sys.argv[2]))
