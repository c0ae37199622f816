"""What the separate login process costs an inetd session, side by side.

    sudo python3 -m bench.startup [--runs 60]

Starts popper in inetd mode (on a socketpair, as inetd would) again and
again, as root, alternating `set login-user = nobody` (the default: a
login process, privsep.py) with `set login-user = none` (one process, as
Qpopper), and times three points of each session from the spawn: the
greeting, the +OK of a USER/PASS login, and the end after QUIT, and the
CPU time of the session's processes together.  It prints
the medians and their differences.  It measures; it asserts nothing.
"""

import argparse
import os
import pathlib
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench import corpus  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def setup(base: pathlib.Path):
    from popper.auth import cryptpw
    spool = base / "spool"
    spool.mkdir()
    os.chmod(base, 0o755)
    os.chmod(spool, 0o1777)
    (base / "users").write_text("alice:%s:4242:4242::%s:/bin/sh\n"
                                % (cryptpw.crypt(b"secret", b"$6$benchsalt$").decode(), base))
    os.chmod(base / "users", 0o644)
    configs = {}
    for name in ("nobody", "none"):
        path = base / ("%s.conf" % name)
        path.write_text("set userdb = %s\nset spool-dir = %s\nset auth-fail-delay = 0\n"
                        "set reverse-lookup = false\nset login-user = %s\n"
                        % (base / "users", spool, name))
        configs[name] = path
    return spool, configs


def line(sock, buf: bytes):
    while b"\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError(buf)
        buf += data
    return buf.split(b"\r\n", 1)


def one(config: pathlib.Path, spool: pathlib.Path, mail: bytes) -> tuple:
    path = spool / "alice"
    path.write_bytes(mail)
    os.chown(path, 4242, 4242)
    ours, theirs = socket.socketpair()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "popper", "-f", str(config)],
                               stdin=theirs, stdout=theirs, cwd=str(ROOT))
    theirs.close()
    greeting, buf = line(ours, b"")
    greeted = time.perf_counter()
    ours.sendall(b"USER alice\r\nPASS secret\r\n")
    _, buf = line(ours, buf)
    reply, buf = line(ours, buf)
    logged_in = time.perf_counter()
    assert reply.startswith(b"+OK alice has"), reply
    ours.sendall(b"QUIT\r\n")
    line(ours, buf)
    process.wait()
    ended = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return greeted - started, logged_in - started, ended - started, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.startup: run as root (a login process exists only then)", file=sys.stderr)
        return 1
    base = pathlib.Path(tempfile.mkdtemp(prefix="popper-startup-"))
    try:
        spool, configs = setup(base)
        mail = corpus.mbox_bytes(list(corpus.messages(3, seed=5)))
        times = {name: [] for name in configs}
        for name in configs:                                # warm the caches
            one(configs[name], spool, mail)
        for _ in range(args.runs):
            for name in configs:
                times[name].append(one(configs[name], spool, mail))
        print("median of %d runs, ms from spawn   greeting    login      end  CPU time"
              % args.runs)
        medians = {}
        for name, rows in times.items():
            medians[name] = [statistics.median(r[i] for r in rows) * 1000 for i in range(4)]
            print("login-user = %-22s %8.2f %8.2f %8.2f %8.2f" % ((name,) + tuple(medians[name])))
        print("%-35s %8.2f %8.2f %8.2f %8.2f" % (("difference",) + tuple(
            a - b for a, b in zip(medians["nobody"], medians["none"]))))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
