#!/usr/bin/env python3
"""The verifier of popper's SVR4 datastream (docs/packaging.md).

    python3 packaging/sco/verify.py [-v] dist/popper.pkg [dist/popper-odc.pkg ...]

Reads each datastream back as pkgadd would and checks it:

  - the header (genheader()'s text, NUL-filled 512-byte blocks) and each
    cpio archive (070701 or 070707) starting and ending on a 512-byte
    boundary, and nothing after the last;
  - pkginfo: the mandatory parameters, the PKG naming rules, the same file
    in both archives; the header's package, parts and size agree with it
    and with the pkgmap;
  - pkgmap: ": 1 bmax", entries sorted by path, a directory entry for every
    directory, the classes in CLASSES, bmax at least the part's size in
    blocks; every file's size, System V checksum (ours and GNU `sum -s`),
    mode and mtime against its bytes in the archive, and no file the
    pkgmap does not name;
  - GNU cpio (`cpio -it`) and bsdtar (`bsdtar -tf -`) list each archive
    with the same names;
  - the install scripts: #!/bin/sh, `sh -n`, `checkbashisms`, no
    $(...) (OpenServer 5's Bourne shell lacks it); run on a scratch root
    (pkgadd -R) with the package's files, an inetd.conf, a syslog.conf and
    stand-in inetd and syslogd started here (pid files, SIGHUP counted):
    postinstall adds the pop3 and local1 lines and signals both, a second
    postinstall changes nothing, preremove gives back the original bytes
    (and signals again) and takes away popper's bytecode, a second
    preremove changes nothing.

One line per problem; exit status 1 if there is any, else 0.
Runs on the build host (Debian: cpio, libarchive-tools, devscripts).
"""

import argparse
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svr4  # noqa: E402

SCRIPT_NAMES = ("checkinstall", "request", "preinstall", "postinstall", "preremove",
                "postremove")
INETD_WORDS = ["pop3", "stream", "tcp", "nowait", "root", "/etc/popper", "popper"]
LIBDIR = "/usr/lib/popper"
DEADLINE = 10.0                     # seconds for a stand-in daemon to start or be signalled

# The scratch root's files, as an OpenServer host has them (syslog.conf
# without a final newline: preremove must give back even that).
SAMPLE_INETD = (b"# Internet server configuration database\n"
                b"ftp\tstream\ttcp\tnowait\tNOLUID\t/etc/ftpd\tftpd -a\n"
                b"telnet\tstream\ttcp\tnowait\tNOLUID\t/etc/telnetd\ttelnetd\n")
SAMPLE_SYSLOG = b"*.info;mail.none\t/usr/adm/syslog\nmail.debug\t/usr/adm/maillog"

STAND_IN = """#!%s
# A stand-in daemon for verify.py: counts the SIGHUPs it gets, one line each.
import signal, sys
def hup(signo, frame):
    with open(sys.argv[1], "a") as f:
        f.write("HUP\\n")
signal.signal(signal.SIGHUP, hup)
open(sys.argv[2], "w").close()
while True:
    signal.pause()
"""


class Package:
    """A datastream read back: the header's table, the archives, pkginfo,
    pkgmap; problems collects what is wrong with it."""

    def __init__(self, path: str):
        self.path = path
        self.problems = []
        self.archives = []              # (offset, bytes, members)
        self.params, self.entries, self.files = {}, [], {}
        with open(path, "rb") as f:
            self.buf = f.read()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # -- the stream ------------------------------------------------------------

    def read(self) -> bool:
        """The header and the two archives; False if they cannot be read."""
        try:
            toc, offset = svr4.read_header(self.buf)
        except ValueError as exc:
            self.problem("no datastream header: %s" % exc)
            return False
        if b"\0" not in self.buf[:offset] or self.buf[:offset].rstrip(b"\0").count(b"\0"):
            self.problem("the header is not text followed by NULs to its last block")
        if len(toc) != 1:
            self.problem("the header lists %d packages, not one" % len(toc))
            return False
        self.toc = toc[0]
        for which in ("the pkginfo and pkgmap archive", "the part's archive"):
            if offset % svr4.BLOCK:
                self.problem("%s starts at %d, not on a 512-byte boundary" % (which, offset))
                return False
            try:
                members, end = svr4.read_cpio(self.buf, offset)
            except svr4.CpioError as exc:
                found = [self.buf.find(magic.encode(), offset, offset + svr4.BLOCK)
                         for magic in (svr4.NEWC, svr4.ODC)]
                if max(found) > offset:
                    self.problem("%s starts at %d, not on a 512-byte boundary"
                                 % (which, min(f for f in found if f > offset)))
                else:
                    self.problem("%s: %s" % (which, exc))
                return False
            padded = end + -end % svr4.BLOCK
            if self.buf[end:padded].strip(b"\0"):
                self.problem("%s: not NULs after its trailer" % which)
            if padded > len(self.buf):
                self.problem("%s ends at %d, not on a 512-byte boundary (the file has %d bytes)"
                             % (which, end, len(self.buf)))
            self.archives.append((offset, self.buf[offset:padded], members))
            offset = padded
        if offset != len(self.buf):
            self.problem("%d bytes after the last archive" % (len(self.buf) - offset))
        return True

    # -- what the archives hold -------------------------------------------------

    def check_contents(self) -> None:
        pkg, nparts, maxsize = self.toc
        first = {m.name: m for m in self.archives[0][2]}
        if sorted(first) != [pkg + "/pkginfo", pkg + "/pkgmap"]:
            self.problem("the first archive holds %s, not %s/pkginfo and %s/pkgmap"
                         % (sorted(first), pkg, pkg))
        part = self.archives[1][2]
        self.files = {m.name: m for m in part}
        if len(self.files) != len(part):
            self.problem("the part's archive holds a name twice")
        for name in ("pkginfo", "pkgmap"):
            if name not in self.files:
                self.problem("the part's archive has no %s" % name)
                return
            copy = first.get(pkg + "/" + name)
            if copy is not None and copy.data != self.files[name].data:
                self.problem("%s/%s in the first archive differs from the part's %s"
                             % (pkg, name, name))
        seen = set()
        for m in part:
            parent = m.name.rpartition("/")[0]
            if parent and parent not in seen:
                self.problem("%s comes before its directory %s (not find's order)"
                             % (m.name, parent))
            seen.add(m.name)

        self.params, problems = svr4.parse_pkginfo(self.files["pkginfo"].data.decode("latin-1"))
        self.problems += problems + svr4.pkginfo_problems(self.params)
        if self.params.get("PKG") != pkg:
            self.problem("the header names %s, pkginfo's PKG is %r" % (pkg, self.params.get("PKG")))

        map_parts, bmax, self.entries, problems = svr4.parse_pkgmap(
            self.files["pkgmap"].data.decode("latin-1"))
        self.problems += problems
        if (map_parts, bmax) != (nparts, maxsize) or nparts != 1:
            self.problem("the header says %d part(s) of %d blocks, the pkgmap %d of %d: "
                         "both must say 1 part of the same size" % (nparts, maxsize, map_parts, bmax))
        self.check_pkgmap(bmax)

    def check_pkgmap(self, bmax: int) -> None:
        paths = [e.path for e in self.entries]
        for a, b in zip(paths, paths[1:]):
            if not a < b:
                self.problem("pkgmap: %s comes before %s (sorted by path, each once)" % (a, b))
        classes = set(self.params.get("CLASSES", "").split())
        dirs = {e.path for e in self.entries if e.ftype in "dx"}
        named = {"pkgmap"}
        for e in self.entries:
            if e.part != 1:
                self.problem("pkgmap: %s is in part %d of a one-part package" % (e.path, e.part))
            if e.ftype != "i" and e.klass not in classes:
                self.problem("pkgmap: %s is in class %s, which CLASSES does not list"
                             % (e.path, e.klass))
            if e.ftype not in "fi":
                continue
            parent = e.path.rpartition("/")[0]
            if e.ftype == "f" and parent and parent not in dirs:
                self.problem("pkgmap: no directory entry for %s" % parent)
            name = svr4.archive_name(e)
            named.add(name)
            member = self.files.get(name)
            if member is None or member.is_dir:
                self.problem("%s (%s) is not a file in the archive" % (e.path, name))
                continue
            if (len(member.data), svr4.checksum(member.data)) != (e.size, e.cksum):
                self.problem("%s: pkgmap says %s bytes, checksum %s; the archive has %d, %d"
                             % (e.path, e.size, e.cksum, len(member.data),
                                svr4.checksum(member.data)))
            gnu = gnu_sum(member.data)
            if gnu is not None and gnu != e.cksum:
                self.problem("%s: GNU sum -s says %s, the pkgmap %s" % (e.path, gnu, e.cksum))
            if member.mtime != e.mtime:
                self.problem("%s: mtime %d in the archive, %s in the pkgmap"
                             % (e.path, member.mtime, e.mtime))
            if e.ftype == "f" and stat.S_IMODE(member.mode) != e.mode:
                self.problem("%s: mode %04o in the archive, %04o in the pkgmap"
                             % (e.path, stat.S_IMODE(member.mode), e.mode or 0))
        for name, member in sorted(self.files.items()):
            if not member.is_dir and name not in named:
                self.problem("%s is in the archive but not in the pkgmap" % name)
        need = svr4.part_blocks(self.entries)
        if bmax < need:
            self.problem("pkgmap: bmax %d is less than the part's %d blocks" % (bmax, need))

    # -- other readers ----------------------------------------------------------

    def check_listings(self) -> None:
        for n, (offset, data, members) in enumerate(self.archives, 1):
            want = [m.name for m in members]
            for command, package in ((["cpio", "-it", "--quiet"], "cpio"),
                                     (["bsdtar", "-tf", "-"], "libarchive-tools")):
                if shutil.which(command[0]) is None:
                    self.problem("cannot list the archives with %s: not installed (Debian: %s)"
                                 % (command[0], package))
                    continue
                result = subprocess.run(command, input=data, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, timeout=60)
                names = result.stdout.decode("utf-8", "replace").split("\n")[:-1]
                if result.returncode != 0 or names != want:
                    self.problem("%s lists archive %d (at %d) as %d names, not our %d%s"
                                 % (" ".join(command), n, offset, len(names), len(want),
                                    ": " + result.stderr.decode(errors="replace").strip()
                                    if result.stderr.strip() else ""))

    # -- the install scripts ----------------------------------------------------

    def scripts(self) -> dict:
        return {e.path: self.files["install/" + e.path].data for e in self.entries
                if e.ftype == "i" and e.path in SCRIPT_NAMES
                and "install/" + e.path in self.files}

    def check_scripts(self, verbose: bool) -> None:
        scripts = self.scripts()
        if "postinstall" not in scripts or "preremove" not in scripts:
            self.problem("the package has no postinstall and preremove")
            return
        with tempfile.TemporaryDirectory(prefix="popper-verify.") as tmp:
            for name, data in sorted(scripts.items()):
                path = os.path.join(tmp, name)
                with open(path, "wb") as f:
                    f.write(data)
                if not data.startswith(b"#!/bin/sh\n"):
                    self.problem("%s does not start with #!/bin/sh" % name)
                if b"$(" in data:
                    self.problem("%s uses $(...), which OpenServer 5's /bin/sh lacks" % name)
                for command, package in ((["sh", "-n"], None),
                                         (["checkbashisms"], "devscripts")):
                    if shutil.which(command[0]) is None:
                        self.problem("cannot check %s with %s: not installed (Debian: %s)"
                                     % (name, command[0], package))
                        continue
                    result = subprocess.run(command + [path], stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, timeout=60)
                    if result.returncode != 0:
                        for line in result.stdout.decode(errors="replace").splitlines() or [""]:
                            self.problem("%s %s: %s" % (" ".join(command), name, line))
            scratch = ScratchRoot(os.path.join(tmp, "scratch"), self)
            try:
                self.problems += scratch.exercise(verbose)
            finally:
                scratch.stop()


def gnu_sum(data: bytes):
    """GNU `sum -s` of data, or None where there is no GNU sum."""
    try:
        result = subprocess.run(["sum", "-s"], input=data, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=60)
    except OSError:
        return None
    words = result.stdout.split()
    return int(words[0]) if result.returncode == 0 and words else None


class ScratchRoot:
    """A directory as pkgadd -R sees the target: the package's files, an
    inetd.conf and a syslog.conf, usr/adm, and the pid files of stand-in
    inetd and syslogd processes started here (stopped by pid)."""

    def __init__(self, base: str, package: Package, inetd_conf: bytes = SAMPLE_INETD,
                 syslog_conf: bytes = SAMPLE_SYSLOG, inetd_conf_path: str = "etc/inetd.conf"):
        self.base, self.package = base, package
        self.root = os.path.join(base, "root")
        self.daemons = {}               # name -> (process, file of its HUPs)
        for name, member in package.files.items():
            if name.startswith("root/"):
                path = os.path.join(self.root, name[5:])
                if member.is_dir:
                    os.makedirs(path, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(member.data)
                    os.chmod(path, stat.S_IMODE(member.mode))
        os.makedirs(os.path.join(self.root, "usr", "adm"), exist_ok=True)
        self.conf = {"inetd": os.path.join(self.root, inetd_conf_path),
                     "syslog": os.path.join(self.root, "etc", "syslog.conf")}
        for key, data in (("inetd", inetd_conf), ("syslog", syslog_conf)):
            os.makedirs(os.path.dirname(self.conf[key]), exist_ok=True)
            with open(self.conf[key], "wb") as f:
                f.write(data)
        self.start("inetd", "etc/inetd.pid")
        self.start("syslogd", "etc/syslog.pid")

    def start(self, name: str, pidfile: str) -> None:
        program = os.path.join(self.base, "bin", name)  # named so for ps -p
        os.makedirs(os.path.dirname(program), exist_ok=True)
        with open(program, "w") as f:
            f.write(STAND_IN % sys.executable)
        os.chmod(program, 0o755)
        hups, ready = program + ".hups", program + ".ready"
        open(hups, "w").close()
        process = subprocess.Popen([program, hups, ready], stdin=subprocess.DEVNULL)
        self.daemons[name] = (process, hups)
        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(ready):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the stand-in %s did not start" % name)
            time.sleep(0.01)
        with open(os.path.join(self.root, pidfile), "w") as f:
            f.write("%d\n" % process.pid)

    def stop(self) -> None:
        for process, _ in self.daemons.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def hups(self, name: str) -> int:
        with open(self.daemons[name][1]) as f:
            return f.read().count("HUP")

    def await_hups(self, counts: dict, quiet: float = 0.3) -> list:
        """Wait for each daemon's SIGHUP count to reach counts[name], then
        a moment more to see it go no further."""
        deadline = time.monotonic() + DEADLINE
        while any(self.hups(n) < c for n, c in counts.items()) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(quiet)
        return ["%s got %d SIGHUP(s), not %d" % (n, self.hups(n), c)
                for n, c in sorted(counts.items()) if self.hups(n) != c]

    def run(self, name: str) -> tuple:
        """Runs install script name as pkgadd -R would: its pkginfo's
        parameters and PKG_INSTALL_ROOT in the environment."""
        path = os.path.join(self.base, name)
        with open(path, "wb") as f:
            f.write(self.package.scripts()[name])
        env = dict(self.package.params, PKG_INSTALL_ROOT=self.root,
                   PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        result = subprocess.run(["/bin/sh", path], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=60)
        return result.returncode, result.stdout.decode(errors="replace")

    def read(self, key: str) -> bytes:
        with open(self.conf[key], "rb") as f:
            return f.read()

    def pycache(self) -> list:
        return [d for d, _, _ in os.walk(os.path.join(self.root, LIBDIR.lstrip("/")))
                if os.path.basename(d) == "__pycache__"]

    def exercise(self, verbose: bool = False) -> list:
        """postinstall, postinstall, preremove, preremove; what went wrong."""
        problems = []
        original = {key: self.read(key) for key in self.conf}
        hups = {"inetd": 0, "syslogd": 0}
        after = None
        for step, (name, signalled) in enumerate((("postinstall", True), ("postinstall", False),
                                                  ("preremove", True), ("preremove", False)), 1):
            rc, output = self.run(name)
            if verbose:
                sys.stdout.write("".join("  %s #%d: %s\n" % (name, step, line)
                                         for line in output.splitlines()))
            if rc != 0:
                problems.append("%s (step %d) exits %d: %s" % (name, step, rc,
                                                               output.strip().replace("\n", " | ")))
            if signalled:
                hups = {n: c + 1 for n, c in hups.items()}
            problems += ["%s (step %d): %s" % (name, step, p) for p in self.await_hups(hups)]
            now = {key: self.read(key) for key in self.conf}
            if step == 1:
                problems += ["postinstall: %s" % p for p in self.added(now)]
                os.makedirs(os.path.join(self.root, LIBDIR.lstrip("/"), "popper", "__pycache__"),
                            exist_ok=True)    # as a first run of popper leaves it
                after = now
            elif step == 2 and now != after:
                problems.append("postinstall run twice changes more than once: %s"
                                % ", ".join(k for k in sorted(now) if now[k] != after[k]))
            elif step >= 3:
                for key in sorted(now):
                    if now[key] != original[key]:
                        problems.append("%s (step %d) leaves %s.conf not as it was before "
                                        "postinstall" % (name, step, key))
                if self.pycache():
                    problems.append("preremove leaves popper's bytecode: %s" % self.pycache())
        return problems

    def added(self, now: dict) -> list:
        """What is missing from the files after postinstall."""
        problems = []
        inetd = [line.split() for line in now["inetd"].decode(errors="replace").splitlines()
                 if line.split()[:1] == ["pop3"]]
        if inetd != [INETD_WORDS]:
            problems.append("inetd.conf's pop3 lines are %s, not the one %r"
                            % (inetd, " ".join(INETD_WORDS)))
        local1 = [line for line in now["syslog"].decode(errors="replace").splitlines()
                  if line.startswith("local1.")]
        if len(local1) != 1:
            problems.append("syslog.conf has %d local1 lines, not one" % len(local1))
        return problems


def verify(path: str, verbose: bool = False) -> list:
    """The problems of the datastream at path (an empty list: none)."""
    package = Package(path)
    if package.read():
        package.check_contents()
        package.check_listings()
        if "pkginfo" in package.files:
            package.check_scripts(verbose)
    return package.problems


def main(argv: list) -> int:
    global DEADLINE
    parser = argparse.ArgumentParser(description="Checks popper's SVR4 datastreams.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show what the install scripts print on the scratch root")
    parser.add_argument("--deadline", type=float, default=DEADLINE, metavar="SECONDS",
                        help="how long a stand-in daemon may take to start or to count a "
                             "SIGHUP [%(default)s]")
    parser.add_argument("datastream", nargs="+")
    args = parser.parse_args(argv)
    DEADLINE = args.deadline
    bad = 0
    for path in args.datastream:
        problems = verify(path, args.verbose)
        for problem in problems:
            print("%s: %s" % (path, problem))
        if not problems:
            print("%s: a good datastream" % path)
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
