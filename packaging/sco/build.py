#!/usr/bin/env python3
"""make package: the SVR4 package for legacy hosts (docs/packaging.md).

    python3 packaging/sco/build.py [--python PATH] [--spool-dir DIR] [--out DIR]

writes, under --out (dist/):

  popper/          the package in the directory format (pkginfo, pkgmap,
                   install/, root/): pkgadd -d dist popper
  popper.pkg       the datastream, SVR4 ASCII cpio (070701): pkgadd -d popper.pkg
  popper-odc.pkg   the same datastream with odc (070707) archives, for a cpio
                   that cannot read 070701
  popper.tar       a tar of the directory format, for a host whose cpio reads
                   neither: tar xf popper.tar && pkgadd -d . popper

The package holds the pure-Python server with _settings.py made for the
target (configure.py's own functions, run with TARGET_SWITCHES), the native
sources and the on-target build step, /etc/popper (packaging/launcher.py),
the manual pages and the install scripts.  The output depends only on the
checkout and the options (and, for the tar, the Python version): every
mtime is SOURCE_DATE_EPOCH, or the last commit's time.
"""

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import svr4  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

PKG = "popper"
LIBDIR = "/usr/lib/popper"          # the popper package, the native sources, build-native
# The launchers (packaging/launcher.py) and the module each runs: popper where
# SCO's was, popauth beside it (Qpopper's popauth is an administrator's tool).
PROGRAMS = [("/etc/popper", "popper.cli"), ("/etc/popauth", "popper.popauth")]
MANPAGES = {"docs/popper.8": "/usr/share/man/man8/popper.8",
            "docs/popauth.8": "/usr/share/man/man8/popauth.8"}
SCRIPTS = ("postinstall", "preremove")
OWNER, GROUP = "root", "sys"

# configure.py's switches for the target, so that nothing of the build
# host is probed: SCO's spool and sendmail (the manual page's Files), its
# LOCAL1 facility, and no C extension (build-native makes it on the host).
TARGET_SWITCHES = ["--with-sendmail=/usr/lib/sendmail", "--enable-log-facility=LOG_LOCAL1",
                   "--disable-native"]


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.check_output(["git", "-C", ROOT, "log", "-1", "--format=%ct"],
                                      stderr=subprocess.DEVNULL, universal_newlines=True)
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(time.time())


def read(relpath: str) -> bytes:
    with open(os.path.join(ROOT, relpath), "rb") as f:
        return f.read()


def target_settings(python: str, spool_dir: str) -> tuple:
    """popper/_settings.py for the target, by configure.py's own functions,
    and the settings it holds: the target's interpreter and the package's
    own directories, so that nothing in it names the build host."""
    configure = runpy.run_path(os.path.join(ROOT, "configure.py"))
    argv = TARGET_SWITCHES + ["--enable-spool-dir=" + spool_dir, "PYTHON=" + python,
                              "--prefix=/usr", "--sbindir=/etc", "--sysconfdir=/etc",
                              "--localstatedir=/var", "--with-systemdsystemunitdir=no"]
    log = configure["Log"]()
    settings = configure["settings_for"](argv, log)
    if log.lines:                   # a setting was probed on this machine, not chosen
        raise SystemExit("build.py: configure.py probed the build host; add a switch to "
                         "TARGET_SWITCHES: %s" % "; ".join(log.lines))
    return configure["render_settings"](argv, settings).encode(), settings


def sources(top: str, suffixes: tuple) -> list:
    """The checkout's files under top with these suffixes, sorted; no
    generated ones (_settings.py, the compiled modules, __pycache__)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(suffixes) and name != "_settings.py":
                found.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return found


def contents(python: str, spool_dir: str) -> list:
    """(path on the target, mode, bytes) of every file the package installs."""
    text, settings = target_settings(python, spool_dir)
    launcher = runpy.run_path(os.path.join(ROOT, "packaging", "launcher.py"))["launcher"]
    files = [(LIBDIR + "/" + rel, 0o644, read(rel))
             for rel in sources("popper", (".py",)) + sources("_native", (".py", ".c", ".h"))]
    files.append((LIBDIR + "/popper/_settings.py", 0o644, text))
    files.append((LIBDIR + "/build-native", 0o755,
                  read("packaging/sco/build-native").replace(b"@PYTHON@", python.encode())))
    files += [(path, 0o755, launcher(python, LIBDIR, settings["LOG_FACILITY"], module).encode())
              for path, module in PROGRAMS]
    files += [(path, 0o644, read(rel)) for rel, path in sorted(MANPAGES.items())]
    return files


def script(name: str, python: str, spool_dir: str) -> bytes:
    """An install script: the values it needs, common.sh, then its own part."""
    modules = runpy.run_path(os.path.join(ROOT, "_native", "modules.py"))["MODULES"]
    head = ("#!/bin/sh\n"
            "# popper's %s, written by packaging/sco/build.py from common.sh and %s.sh.\n"
            "PYTHON=%s\nSPOOL_DIR=%s\nLIBDIR=%s\nNATIVE_MODULES=\"%s\"\n"
            % (name, name, python, spool_dir, LIBDIR,
               " ".join(module.name.replace(".", "/") for module in modules)))
    return head.encode() + read("packaging/sco/common.sh") + read("packaging/sco/%s.sh" % name)


def parents(path: str) -> list:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def pkginfo(version: str, epoch: int) -> list:
    return [
        ("PKG", PKG),
        ("NAME", "popper, the POP3 server Qpopper 4.0 was as SCO OpenServer's /etc/popper"),
        ("ARCH", "all"),                 # pure Python; the C core is built on the host
        ("VERSION", version),
        ("CATEGORY", "application"),
        ("BASEDIR", "/"),
        ("CLASSES", "none"),
        ("VENDOR", "the popper project"),
        ("DESC", "POP3 server for Unix mbox spools, run by inetd: Qpopper's command line, "
                 "replies, log lines and files; Python 3.6 or newer"),
        ("PSTAMP", PKG + time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch))),
    ]


def write_file(path: str, data: bytes, mode: int, epoch: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, (epoch, epoch))


def directory_format(out: str, python: str, spool_dir: str, epoch: int) -> str:
    """The package as pkgmk would leave it in its spool directory:
    out/popper/{pkginfo,pkgmap,install/,root/}; returns that directory."""
    pkgdir = os.path.join(out, PKG)
    if os.path.lexists(pkgdir):
        shutil.rmtree(pkgdir)
    version = runpy.run_path(os.path.join(ROOT, "popper", "__init__.py"))["__version__"]
    entries, dirs = [], set()
    for path, mode, data in contents(python, spool_dir):
        write_file(os.path.join(pkgdir, "root" + path), data, mode, epoch)
        entries.append(svr4.Entry("f", path, mode, OWNER, GROUP, len(data),
                                  svr4.checksum(data), epoch))
        dirs.update(parents(path))
    for path in sorted(dirs):           # ours under LIBDIR; the system's keep their attributes
        ours = path == LIBDIR or path.startswith(LIBDIR + "/")
        entries.append(svr4.Entry("d", path, 0o755, OWNER, GROUP) if ours
                       else svr4.Entry("d", path))
    for name in SCRIPTS:
        data = script(name, python, spool_dir)
        write_file(os.path.join(pkgdir, "install", name), data, 0o644, epoch)
        entries.append(svr4.Entry("i", name, size=len(data), cksum=svr4.checksum(data),
                                  mtime=epoch))
    info = svr4.pkginfo_text(pkginfo(version, epoch)).encode()
    write_file(os.path.join(pkgdir, "pkginfo"), info, 0o644, epoch)
    entries.append(svr4.Entry("i", "pkginfo", size=len(info), cksum=svr4.checksum(info),
                              mtime=epoch))
    pkgmap = svr4.pkgmap_text(entries, svr4.part_blocks(entries)).encode()
    write_file(os.path.join(pkgdir, "pkgmap"), pkgmap, 0o644, epoch)
    for dirpath, _, _ in os.walk(pkgdir):
        os.chmod(dirpath, 0o755)
    for dirpath, _, _ in sorted(os.walk(pkgdir), reverse=True):
        os.utime(dirpath, (epoch, epoch))
    return pkgdir


def tar_of(pkgdir: str, path: str) -> None:
    """A ustar archive of the directory format, owned by root, every name
    short enough for a pre-POSIX tar (under 100 characters)."""
    parent, pkg = os.path.split(os.path.normpath(pkgdir))
    names = [pkg] + [pkg + "/" + name for name in svr4.find_order(pkgdir)]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in names:
            if len(name) >= 100:
                raise SystemExit("build.py: %s is too long a name for an old tar" % name)
            info = tar.gettarinfo(os.path.join(parent, name), name)
            info.uid = info.gid = 0
            info.uname, info.gname = "root", ""
            if info.isreg():
                with open(os.path.join(parent, name), "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default="/usr/local/bin/python3",
                        help="the target's Python 3.6 or newer, named by /etc/popper's #! line "
                             "[/usr/local/bin/python3]")
    parser.add_argument("--spool-dir", default="/usr/spool/mail",
                        help="the compiled-in spool directory [/usr/spool/mail, SCO's]")
    parser.add_argument("--out", default="dist",
                        help="where the package goes [dist]")
    args = parser.parse_args(argv)
    for value, what in ((args.python, "--python"), (args.spool_dir, "--spool-dir")):
        if not value.startswith("/") or any(c.isspace() or c in "'\"\\$`" for c in value):
            parser.error("%s needs an absolute path without blanks or quotes, not %r"
                         % (what, value))
    epoch = source_date_epoch()
    os.makedirs(args.out, exist_ok=True)
    pkgdir = directory_format(args.out, args.python, args.spool_dir, epoch)
    for name, fmt in (("popper.pkg", svr4.NEWC), ("popper-odc.pkg", svr4.ODC)):
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(svr4.datastream(pkgdir, fmt))
    tar_of(pkgdir, os.path.join(args.out, "popper.tar"))
    for name in ("popper.pkg", "popper-odc.pkg", "popper.tar"):
        path = os.path.join(args.out, name)
        print("build.py: wrote %s (%d bytes)" % (path, os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
