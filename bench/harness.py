"""The popper benchmark: one mailbox, a raw POP3 client, plain-C reference figures.

    python3 -m bench.harness                   10,000 messages (about 172 MB), 3 repetitions
    python3 -m bench.harness --messages 60     a small mailbox (about 1 MB)
    python3 -m bench.harness --messages 100000 --reps 1      about 1.7 GB

It generates the spool with bench/corpus.py (cached in bench/out/ by
count and seed), times a plain C read()+memmem scan of it and a plain C
write of the half of it that QUIT keeps (bench/cscan.c, compiled here with
`cc -O2`), then starts popper in standalone mode on 127.0.0.1 and, for each
repetition, restores the spool and measures one session: greeting, login,
STAT, UIDL, LIST, RETR of every message (one at a time, then pipelined),
DELE of every second message, QUIT.  It reads the resident memory of the
per-connection process from /proc.  It prints a table and writes
bench/out/results.json.  It measures; it asserts nothing about the times.

bench/README.md explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import runpy
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):                    # run as python3 bench/harness.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench import corpus  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_OUT = BENCH / "out"

USER, PASSWORD = "bench", "bench-password"
EMPTY_USER = "empty"            # a user without a spool: the cost of a login alone
# make bench's many clients at once: a user each, none with mail (bench/deps.sh
# makes them system users too, for popa3d).
CLIENT_USERS = tuple("pb%03d" % n for n in range(200))
SALT = b"$6$benchsalt$"

IS_ROOT = os.geteuid() == 0
# As root popper drops to the user database's uid/gid, which must not be 0.
BENCH_UID = 4242 if IS_ROOT else os.getuid()
BENCH_GID = 4242 if IS_ROOT else os.getgid()

MB = 1e6


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def save(results: dict, report, json_path) -> int:
    """Print report(results) and write results, the table with them, to json_path."""
    text = report(results)
    results["table"] = text
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    note("\nresults written to %s" % json_path)
    return 0


# --- the corpus -------------------------------------------------------------------

def cached_corpus(out: pathlib.Path, count: int, seed: int):
    """(path, facts) of the generated mbox, made once per (count, seed).

    The facts sit next to it in a .json file: messages, bytes, and the bytes
    of the 1st, 3rd, 5th ... message (what QUIT keeps after the DELEs)."""
    path = out / ("corpus-%d-%d.mbox" % (count, seed))
    facts_path = out / ("corpus-%d-%d.json" % (count, seed))
    if path.exists() and facts_path.exists():
        facts = json.loads(facts_path.read_text())
        if facts.get("messages") == count and facts.get("bytes") == path.stat().st_size:
            return path, facts
    note("generating %d messages (seed %d) into %s ..." % (count, seed, path))
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp%d" % os.getpid())
    total = kept = kept_count = 0
    try:
        # corpus.write_mbox would hold every message in memory; this streams.
        with open(tmp, "wb", buffering=1 << 20) as f:
            for m in corpus.messages(count, seed):
                record = m.envelope + m.data + b"\n"
                f.write(record)
                total += len(record)
                if m.number % 2:
                    kept += len(record)
                    kept_count += 1
        facts = {"messages": count, "seed": seed, "bytes": total, "kept_messages": kept_count,
                 "kept_bytes": kept, "generated_in": round(time.perf_counter() - started, 3)}
        facts_path.write_text(json.dumps(facts, indent=1) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    note("  %d bytes in %.1f s" % (total, facts["generated_in"]))
    return path, facts


# --- the C reference ----------------------------------------------------------------

def build_cscan(out: pathlib.Path) -> pathlib.Path:
    exe = out / "cscan"
    src = BENCH / "cscan.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return exe


def run_cscan(exe: pathlib.Path, *args) -> list:
    """The output lines of cscan, split into words."""
    done = subprocess.run([str(exe), *map(str, args)], check=True, capture_output=True,
                          text=True)
    return [line.split() for line in done.stdout.splitlines()]


def c_scan(exe, path, runs: int) -> dict:
    lines = run_cscan(exe, "scan", path, runs)
    times = [float(words[3]) for words in lines]
    return {"messages": int(lines[-1][1]), "bytes": int(lines[-1][2]), "runs": times,
            "best": min(times)}


def c_copy(exe, src, dst) -> float:
    try:
        return float(run_cscan(exe, "copy", src, dst)[0][2])
    finally:
        _unlink(dst)


def c_keep(exe, src, dst):
    try:
        words = run_cscan(exe, "keep", src, dst)[0]
        return int(words[1]), int(words[2]), float(words[3])
    finally:
        _unlink(dst)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def settle(args) -> None:
    """Let the disk catch up before the next timed write: sync, then wait.
    (On a VM the host's write-back makes an fsync that follows another big
    write much slower than one that does not.)"""
    os.sync()
    if args.settle > 0:
        time.sleep(args.settle)


# --- the mail host --------------------------------------------------------------------

def crypt_hash(password: str, source: pathlib.Path) -> str:
    # popper's own crypt (the pure-Python twin when the extension is not built).
    sys.path.insert(0, str(source))
    from popper.auth import cryptpw
    hashed = cryptpw.crypt(password.encode(), SALT)
    if not hashed:
        raise SystemExit("cannot hash a password with crypt(3)")
    return hashed.decode()


class MailHost:
    """A temporary directory with a spool directory, a user database and a
    config file, reachable by the benchmark uid."""

    def __init__(self, parent: str, source: pathlib.Path = ROOT):
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="popper-bench-", dir=parent))
        os.chmod(self.base, 0o755)
        self.spool_dir = self.base / "spool"
        self.spool_dir.mkdir()
        os.chmod(self.spool_dir, 0o1777)
        self.scratch = self.base / "scratch"        # the C reference's output files
        self.scratch.mkdir()
        hashed = crypt_hash(PASSWORD, source)
        self.userdb = self.base / "users"
        self.userdb.write_text("".join("%s:%s:%d:%d::%s:/bin/sh\n"
                                       % (name, hashed, BENCH_UID, BENCH_GID, self.base)
                                       for name in (USER, EMPTY_USER) + CLIENT_USERS))
        self.config = self.base / "popper.conf"
        self.config.write_text("set userdb = %s\nset spool-dir = %s\n"
                               # Qpopper's sense: "set reverse-lookup" turns the lookups
                               # off, as -R does (popa3d and Dovecot do none)
                               "set auth-fail-delay = 0\nset reverse-lookup\n"
                               # make bench's many clients at once, all from 127.0.0.1
                               "set max-sessions = 0\nset max-sessions-per-address = 0\n"
                               "set max-connections-per-second = 0\n"
                               % (self.userdb, self.spool_dir))
        self.spool = self.spool_dir / USER
        self.temp_drop = self.spool_dir / (".%s.pop" % USER)
        self.bulldir = self.base / "bulls"

    def post_bulletins(self, count: int) -> None:
        """A bulletin directory of `count` bulletins, and a ~/.popbull (the
        users' home is the base) saying every one was seen: bulletins'
        cost to a login with nothing new."""
        self.bulldir.mkdir()
        for n in range(1, count + 1):
            (self.bulldir / ("%d.notice" % n)).write_bytes(
                b"From root@localhost Thu Nov 26 14:34:16 2026\nTo: all\n"
                b"Subject: notice %d\n\nThe POP host is down on Sunday.\n" % n)
        popbull = self.base / ".popbull"
        popbull.write_text("%d\n" % count)
        os.chown(popbull, BENCH_UID, BENCH_GID)
        os.chmod(popbull, 0o600)

    def restore(self, source: pathlib.Path) -> None:
        """The spool as the MTA left it: a copy of the corpus, on disk."""
        for name in os.listdir(self.spool_dir):
            (self.spool_dir / name).unlink()
        shutil.copyfile(source, self.spool)
        os.chown(self.spool, BENCH_UID, BENCH_GID)
        os.chmod(self.spool, 0o600)
        fd = os.open(self.spool, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


# --- popper ---------------------------------------------------------------------------

def popper_command(args, base: pathlib.Path) -> list:
    """How popper is started: --popper's program, else the launcher make
    install writes (packaging/launcher.py: #!python -ES, naming this
    interpreter's site directories) on the source tree, written into base."""
    if args.popper:
        return [args.popper]
    path = base / "popper"
    if not path.exists():
        made = runpy.run_path(str(ROOT / "packaging" / "launcher.py"))
        path.write_text(made["launcher"](sys.executable, str(args.source),
                                         site=made["site_dirs"](sys.executable)))
        path.chmod(0o755)
    return [str(path)]


def popper_env(args) -> dict:
    env = dict(os.environ)
    if not args.popper:
        env["PYTHONPATH"] = str(args.source) + (os.pathsep + env["PYTHONPATH"]
                                                if env.get("PYTHONPATH") else "")
    if args.pure:
        env["POPPER_PUREPYTHON"] = "1"
    else:
        env.pop("POPPER_PUREPYTHON", None)
    return env


def popper_python(args) -> list:
    """The interpreter that runs popper: ours, or the installed script's."""
    if not args.popper:
        return [sys.executable]
    with open(args.popper, "rb") as f:
        first = f.readline().decode("utf-8", "replace").strip()
    return first[2:].split() if first.startswith("#!") else [sys.executable]


def popper_facts(args) -> dict:
    """popper's version and whether it runs the C extension, asked of the
    interpreter that runs it, in its environment."""
    code = ("import popper, popper.native as n, sys; "
            "print(popper.__version__, n.NATIVE, popper.__file__)")
    try:
        done = subprocess.run(popper_python(args) + ["-c", code], env=popper_env(args),
                              capture_output=True, text=True, cwd="/", timeout=60)
        version, native, where = done.stdout.split()
        return {"version": version, "native": native == "True", "module": where}
    except (OSError, ValueError, subprocess.SubprocessError):
        return {"version": None, "native": None, "module": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """popper in standalone mode on 127.0.0.1; stopped by its pid with SIGTERM."""

    def __init__(self, args, host: MailHost, extra=()):
        """extra: more options for popper (bench/tls.py: its TLS)."""
        self.port = free_port()
        command = popper_command(args, host.base)
        command += ["-f", str(host.config), "-T", "600", *extra, "127.0.0.1:%d" % self.port]
        if args.server_mode:
            command.insert(-1, "-S")
        if args.bulletins:
            command[-1:-1] = ["-b", str(host.bulldir)]
        if args.cpu is not None:          # the server, and the session processes it forks
            command = ["taskset", "-c", str(args.cpu)] + command
        self.log_path = host.base / ("popper-%d.stderr" % self.port)
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, env=popper_env(args), stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=str(host.base))
        self.pid = self.process.pid
        self.initial = set()
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        time.sleep(0.1)                 # the probe connections' sessions end
        self.initial = self.live_children()      # a wrapper's own children, if any

    def _wait_listening(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("popper exited (%s): %s" % (self.process.returncode,
                                                             self.stderr()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("popper did not listen on port %d: %s" % (self.port, self.stderr()))

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace").strip()

    def live_children(self) -> set:
        """The server's live descendants (a wrapper such as strace may sit
        between the pid we started and popper)."""
        return {pid for pid in descendants(self.pid) if start_time(pid) is not None}

    def session_pid(self, before: set, seconds: float = 10) -> int:
        """The pid of the process that serves our connection: the one
        descendant of the server that was not there before we connected
        and whose parent was (as root, its child the login process is new
        too, until the login)."""
        deadline = time.monotonic() + seconds
        while True:
            fresh = self.live_children() - before
            top = {pid for pid in fresh if int((proc_stat(pid) or [0, 0])[1]) not in fresh}
            if len(top) == 1:
                return top.pop()
            if time.monotonic() > deadline:
                raise RuntimeError("cannot tell the session process under popper pid %d: %s"
                                   % (self.pid, sorted(fresh)))
            time.sleep(0.01)

    def stop(self) -> int:
        """SIGTERM to the server (and, when --popper is a wrapper that
        forks, to the popper it started); SIGKILL after a minute."""
        terminate(sorted(self.initial))
        code = end_process(self.process, 60)
        self.log.close()
        return code


# --- /proc --------------------------------------------------------------------------

def children(pid: int) -> list:
    found = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                found += [int(word) for word in f.read().split()]
        return found
    except OSError:
        pass
    for name in os.listdir("/proc"):          # no children file: look for the ppid
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def descendants(pid: int) -> list:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def terminate(pids) -> None:
    """SIGTERM to each of these processes that still runs."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def end_process(process: subprocess.Popen, wait: float = 30):
    """SIGTERM to a server the harness started (unless it has ended), then
    its exit status; SIGKILL if it is not gone within `wait` seconds."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(wait)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        return process.wait()


def proc_stat(pid: int):
    """The fields of /proc/<pid>/stat after the command name (the state is
    fields[0]), None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_time(pid: int):
    """When the process started (clock ticks after boot), None if it is gone
    or a zombie."""
    fields = proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def memory(pid: int) -> dict:
    """VmHWM and VmRSS of a process in kB ({} when it is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    out[line[:5]] = int(line.split()[1])
    except OSError:
        return {}
    return out


class HwmPoller(threading.Thread):
    """Reads a process's VmHWM every few ms until it exits: the last value
    read is the peak up to then (VmHWM never goes down)."""

    def __init__(self, pid: int, interval: float = 0.005):
        super().__init__(daemon=True)
        self.pid, self.interval, self.hwm, self.cpu = pid, interval, None, None
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            mem = memory(self.pid)
            if not mem:
                return
            self.hwm = mem.get("VmHWM", self.hwm)
            cpu = cpu_seconds(self.pid)
            if cpu is not None:
                self.cpu = cpu
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.join()


# --- a raw POP3 client ------------------------------------------------------------------

class ProtocolError(Exception):
    pass


class Pop3:
    """POP3 over a plain socket: whole commands out, large recv_into()s in,
    replies found in one reusable buffer without copying the mail."""

    def __init__(self, port: int, timeout: float, tls=None):
        """tls: an ssl.SSLContext for TLS from the first byte (pop3s)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = bytearray(4 << 20)
        self.view = memoryview(self.buf)
        self.start = self.end = 0             # the unread bytes are buf[start:end]

    def stls(self, tls) -> None:
        """STLS, then the TLS handshake (the greeting has been read)."""
        self.ok(b"STLS\r\n")
        if self.end != self.start:
            raise ProtocolError("bytes after the STLS reply, before the handshake")
        self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.view.release()
        self.sock.close()           # may be called twice

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_background(self, data: bytes) -> threading.Thread:
        """sendall from a thread, so that a long pipeline cannot deadlock
        with popper's replies filling the socket buffers."""
        thread = threading.Thread(target=self.sock.sendall, args=(data,), daemon=True)
        thread.start()
        return thread

    def _fill(self) -> None:
        """Read more; may move the unread bytes to the front of the buffer."""
        if len(self.buf) - self.end < (256 << 10):
            unread = self.end - self.start
            if self.start:
                self.view[:unread] = self.view[self.start:self.end]
                self.start, self.end = 0, unread
            if len(self.buf) - self.end < (256 << 10):          # one reply fills it: grow
                self.view.release()
                self.buf.extend(bytes(len(self.buf)))
                self.view = memoryview(self.buf)
        n = self.sock.recv_into(self.view[self.end:])
        if not n:
            raise EOFError("popper closed the connection")
        self.end += n

    def _find(self, pattern: bytes, rel: int) -> int:
        """Offset (from self.start) of pattern at or after start+rel, reading
        as needed; offsets stay valid when the buffer moves."""
        while True:
            i = self.buf.find(pattern, self.start + rel, self.end)
            if i >= 0:
                return i - self.start
            rel = max(rel, self.end - self.start - len(pattern) + 1)
            self._fill()

    def line(self) -> bytes:
        i = self._find(b"\r\n", 0)
        line = bytes(self.buf[self.start:self.start + i])
        self.start += i + 2
        return line

    def ok(self, command: bytes) -> bytes:
        self.send(command)
        reply = self.line()
        if not reply.startswith(b"+OK"):
            raise ProtocolError("%r: %r" % (command, reply))
        return reply

    def multiline(self, count_lines: bool = False):
        """(status line, octets after dot-unstuffing, lines or None) of one
        multi-line reply; the body itself is skipped, not copied."""
        crlf = self._find(b"\r\n", 0)
        status = bytes(self.buf[self.start:self.start + crlf])
        if not status.startswith(b"+OK"):
            self.start += crlf + 2
            raise ProtocolError("multi-line reply expected: %r" % status)
        end = self._find(b"\r\n.\r\n", crlf)          # the CRLF before the "." line
        a, b = self.start + crlf, self.start + end + 2      # CRLF + body (ends with CRLF)
        stuffed = self.buf.count(b"\r\n..", a, b)
        lines = self.buf.count(b"\r\n", a + 2, b) if count_lines else None
        self.start += end + 5
        return status, (end - crlf) - stuffed, lines


def octets_of(status: bytes) -> int:
    return int(status.split()[1])


# --- one session ------------------------------------------------------------------------

def cpu_seconds(pid: int):
    """utime + stime of a process in seconds (clock-tick resolution), None if gone."""
    fields = proc_stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


CLK_TCK = os.sysconf("SC_CLK_TCK")


class Meter:
    """Times the phases of a session: elapsed seconds, and the CPU seconds
    of popper's session process and of this client (all its threads)."""

    def __init__(self):
        self.pid = None
        self.results = {}

    @contextlib.contextmanager
    def phase(self, key: str):
        popper0 = cpu_seconds(self.pid) if self.pid else None
        client0 = time.process_time()
        t0 = time.perf_counter()
        yield
        self.results[key] = time.perf_counter() - t0
        popper1 = cpu_seconds(self.pid) if self.pid else None
        self.results["cpu_" + key] = {
            "popper": None if popper0 is None or popper1 is None else popper1 - popper0,
            "client": time.process_time() - client0}


def session(server: Server, facts: dict, args) -> dict:
    """One measured session; the connection is closed whatever happens, so
    that popper's session process ends."""
    meter = Meter()
    before = server.live_children()
    with meter.phase("greeting"):
        pop = Pop3(server.port, args.timeout)
        try:
            greeting = pop.line()
        except BaseException:
            pop.close()
            raise
    try:
        return _session(server, pop, greeting, before, meter, facts, args)
    finally:
        pop.close()


def _session(server, pop, greeting, before, meter, facts, args) -> dict:
    count = facts["messages"]
    r = meter.results
    if not greeting.startswith(b"+OK"):
        raise ProtocolError("greeting: %r" % greeting)
    pid = meter.pid = server.session_pid(before)
    r["mem_after_greeting"] = memory(pid)

    with meter.phase("login"):
        pop.ok(b"USER %s\r\n" % USER.encode())
        logged_in = pop.ok(b"PASS %s\r\n" % PASSWORD.encode())
    r["login_reply"] = logged_in.decode("latin-1")
    r["mem_after_login"] = memory(pid)
    words = logged_in.split()
    if int(words[3]) != count:
        raise ProtocolError("expected %d messages: %r" % (count, logged_in))
    total_octets = int(words[-2])

    with meter.phase("stat"):
        stat = pop.ok(b"STAT\r\n")
    if stat.split()[1:3] != [b"%d" % count, b"%d" % total_octets]:
        raise ProtocolError("STAT: %r" % stat)

    with meter.phase("noop"):
        for _ in range(NOOPS):
            pop.ok(b"NOOP\r\n")

    for name in ("UIDL", "LIST"):
        with meter.phase(name.lower()):
            pop.send(name.encode() + b"\r\n")
            _, octets, lines = pop.multiline(count_lines=True)
        r[name.lower() + "_bytes"] = octets
        if lines != count:
            raise ProtocolError("%s gave %d lines for %d messages" % (name, lines, count))

    mismatches = 0
    with meter.phase("retr"):
        for n in range(1, count + 1):
            pop.send(b"RETR %d\r\n" % n)
            status, octets, _ = pop.multiline()
            mismatches += octets != octets_of(status)

    if not args.no_pipelined:
        commands = b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1))
        with meter.phase("retr_pipelined"):
            sender = pop.send_in_background(commands)
            for n in range(1, count + 1):
                status, octets, _ = pop.multiline()
                mismatches += octets != octets_of(status)
            sender.join()
    r["retr_octets"] = total_octets
    r["retr_octet_mismatches"] = mismatches

    deleted = list(range(2, count + 1, 2))
    commands = b"".join(b"DELE %d\r\n" % n for n in deleted)
    with meter.phase("dele"):
        sender = pop.send_in_background(commands)
        for n in deleted:
            reply = pop.line()
            if not reply.startswith(b"+OK"):
                raise ProtocolError("DELE %d: %r" % (n, reply))
        sender.join()
    r["dele_count"] = len(deleted)

    r["mem_before_quit"] = memory(pid)
    poller = HwmPoller(pid)
    poller.start()
    cpu0, client0 = cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    signoff = pop.ok(b"QUIT\r\n")
    r["quit"] = time.perf_counter() - t0
    client1 = time.process_time()
    r["quit_reply"] = signoff.decode("latin-1")
    try:
        while pop.sock.recv(4096):
            pass
    except OSError:
        pass
    pop.close()
    deadline = time.monotonic() + 30
    while start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    poller.stop()
    # The process is gone after QUIT: its last CPU reading is the poller's.
    r["cpu_quit"] = {"popper": None if poller.cpu is None else poller.cpu - cpu0,
                     "client": client1 - client0}
    r["hwm_through_quit"] = poller.hwm
    r["pid"] = pid
    return r


def timed_login(server: Server, args, user: str = USER) -> float:
    """USER+PASS alone: for EMPTY_USER, authentication and the empty drop;
    in server mode after a session, the cached table."""
    pop = Pop3(server.port, args.timeout)
    try:
        pop.line()
        t0 = time.perf_counter()
        pop.ok(b"USER %s\r\n" % user.encode())
        pop.ok(b"PASS %s\r\n" % PASSWORD.encode())
        elapsed = time.perf_counter() - t0
        pop.ok(b"QUIT\r\n")
        return elapsed
    finally:
        pop.close()


# --- the report ---------------------------------------------------------------------

NOOPS = 1000                    # round trips timed with NOOP

TIMES = ("greeting", "login_empty", "login", "stat", "noop", "uidl", "list", "retr", "retr_pipelined",
         "dele", "quit", "login_cached")


def summarize(runs: list, key: str):
    values = [run[key] for run in runs if run.get(key) is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


def machine() -> dict:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), None)
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "memory_mb": mem_kb and mem_kb // 1024,
            "kernel": platform.release(), "python": platform.python_version(),
            "hostname": socket.gethostname()}


def git_commit(tree: pathlib.Path):
    """The commit of a source tree ("+dirty" when popper/ or _native/ differ
    from it), or None when it is not a git checkout."""
    try:
        done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "popper",
                                "_native"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def fmt_s(value) -> str:
    return "-" if value is None else "%.4f s" % value


def plural(n: int, word: str) -> str:
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def fmt_cpu(value) -> str:
    return "-" if value is None else "%.2f" % value


def report(results: dict) -> str:
    f, ref, s = results["corpus"], results["reference"], results["summary"]
    size_mb = f["bytes"] / MB
    p, m = results["popper"], results["machine"]
    out = []
    out.append("popper benchmark: %d messages, %.1f MB (seed %d), %s, %s%s%s"
               % (f["messages"], size_mb, f["seed"], plural(results["repetitions"], "repetition"),
                  "native C extension" if p["native"] else
                  "pure Python" if p["native"] is False else "native: unknown",
                  (", server mode (-S)" if results.get("server_mode") else "")
                  + (", -b with %d bulletins, none new" % results["bulletins"]
                     if results.get("bulletins") else ""),
                  "" if results.get("cpu") is None else
                  ", client and popper on CPU %d" % results["cpu"]))
    out.append("popper %s (%s), Python %s, %s x %s, %s MB RAM, Linux %s"
               % (p["version"], p["commit"] or p["command"], m["python"], m["cpus"], m["cpu"],
                  m["memory_mb"], m["kernel"]))
    out.append("load average (1, 5, 15 min) at the start %s, at the end %s%s"
               % ("/".join("%.2f" % x for x in m["loadavg_start"]),
                  "/".join("%.2f" % x for x in m["loadavg_end"]),
                  "  -- other work was running: figures are noisy"
                  if m["loadavg_start"][0] > 0.5 else ""))
    if p.get("label"):
        out.append("label: %s" % p["label"])
    out.append("")
    head = "%-40s %9s %9s %7s  %s"
    out.append(head % ("reference (plain C, bench/cscan.c)", "best", "median", "MB/s", ""))
    scan = ref["scan"]
    out.append(head % ('  read()+memmem("\\nFrom ") scan', fmt_s(scan["best"]),
                       fmt_s(statistics.median(scan["runs"])),
                       "%.0f" % (f["bytes"] / MB / scan["best"]),
                       "%s, file in page cache" % plural(len(scan["runs"]), "run")))
    for key, label, nbytes in (("copy", "  copy spool + fsync", f["bytes"]),
                               ("keep", "  write kept half + fsync", f["kept_bytes"])):
        v = ref[key]
        out.append(head % (label, fmt_s(v["min"]), fmt_s(v["median"]),
                           "%.0f" % (nbytes / MB / v["min"]),
                           "%s, one per repetition" % plural(len(v["all"]), "run")))
    out.append("")
    head = "%-40s %9s %9s %7s %6s %6s  %s"
    out.append(head % ("popper session", "median", "min", "MB/s", "popper", "client",
                       "ratio: popper median / C best"))
    out.append(head % ("", "", "", "", "CPU s", "CPU s", ""))
    count, octets = f["messages"], s["retr_octets"]
    scan_best = scan["best"]

    def row(key, label, mbps_bytes=None, ratio=""):
        v = s.get(key)
        if v is None:
            return
        cpu = s.get("cpu_" + key) or {}
        mbps = "%.0f" % (mbps_bytes / MB / v["median"]) if mbps_bytes and v["median"] else ""
        out.append(head % (label, fmt_s(v["median"]), fmt_s(v["min"]), mbps,
                           fmt_cpu(cpu.get("popper")), fmt_cpu(cpu.get("client")), ratio))

    row("greeting", "  connect -> greeting")
    row("login_empty", "  USER+PASS, no spool")
    login = s["login"]["median"]
    if results.get("server_mode"):
        row("login", "  USER+PASS (scan in place, -S)", f["bytes"],
            "%.2fx C scan" % (login / scan_best))
    else:
        row("login", "  USER+PASS (copy, fsync, scan)", f["bytes"],
            "%.1fx C scan; %.2fx C copy+fsync+scan"
            % (login / scan_best, login / (ref["copy"]["min"] + scan_best)))
    row("stat", "  STAT")
    row("noop", "  NOOP x %d, one at a time" % NOOPS, None,
        "%.0f us a round trip" % (s["noop"]["median"] / NOOPS * 1e6))
    row("uidl", "  UIDL, %d lines" % count)
    row("list", "  LIST, %d lines" % count)
    row("retr", "  RETR x %d, one at a time" % count, octets,
        "%.0f us a message" % (s["retr"]["median"] / count * 1e6))
    if s.get("retr_pipelined"):             # not with --no-pipelined
        row("retr_pipelined", "  RETR x %d, pipelined" % count, octets,
            "%.0f us a message" % (s["retr_pipelined"]["median"] / count * 1e6))
    row("dele", "  DELE x %d, pipelined" % s["dele_count"])
    row("quit", "  QUIT (write back %d kept)" % f["kept_messages"], f["kept_bytes"],
        "%.2fx C kept-half write" % (s["quit"]["median"] / ref["keep"]["min"]))
    row("login_cached", "  USER+PASS again, the cached table (-S)")
    out.append("  MB/s: login over the mailbox bytes, RETR over the octets announced by"
               " +OK, QUIT over the kept half.")
    out.append("  CPU s: medians, clock-tick resolution (10 ms); QUIT's popper CPU is the"
               " last reading before the process exits.")
    out.append("")
    mem = results["memory"]
    out.append("memory of the session process (max over repetitions)   VmRSS kB   VmHWM kB")
    for key, label in (("mem_after_greeting", "after the greeting"),
                       ("mem_after_login", "after login"),
                       ("mem_before_quit", "before QUIT (after every RETR)")):
        out.append("  %-52s %9s %9s" % (label, mem[key]["VmRSS"], mem[key]["VmHWM"]))
    out.append("  %-52s %9s %9s" % ("through QUIT (polled every 5 ms)", "",
                                    mem["hwm_through_quit"] or "-"))
    out.append("  mailbox %.1f MB; peak resident before QUIT %.1f MiB"
               % (size_mb, mem["mem_before_quit"]["VmHWM"] / 1024))
    checks = results["checks"]
    out.append("")
    out.append("checks: RETR octet mismatches %d; after QUIT the spool holds %d messages, "
               "%d bytes (the kept half was %d bytes before the X-UIDL:/Status: rewrite); "
               "temp drop left: %s"
               % (checks["retr_octet_mismatches"], checks["spool_messages_after_quit"],
                  checks["spool_bytes_after_quit"], f["kept_bytes"],
                  "yes" if checks["temp_drop_left"] else "no"))
    return "\n".join(out)


# --- the comparison (make bench) -----------------------------------------------------
#
# popper in its three modes beside popa3d and Dovecot, one corpus, one run,
# interleaved round by round; bench/README.md explains it.

CONCURRENT = 200                # clients at once
# bench/deps.sh unpacks Debian's popa3d here (its package conflicts with dovecot-pop3d)
POPA3D = BENCH / "out" / "popa3d" / "usr" / "sbin" / "popa3d"
POPA3D_SPOOL = pathlib.Path("/var/mail")
COMPARE_COLUMNS = ("popper standalone", "popper under inetd", "popper -S", "popa3d",
                   "Dovecot")


class Peer:
    """One server of the comparison: its port, the pid whose new descendants
    serve a connection, how to restore the spool it serves, how to stop it."""

    def __init__(self, name: str, port: int, pid: int, restore, stop, version: str = ""):
        self.name, self.port, self.pid = name, port, pid
        self.restore, self.stop, self.version = restore, stop, version
        self.how = "plain"                    # what bench/tls.py's session() reads


class Inetd:
    """A program run once per connection on 127.0.0.1:port, as inetd would
    (fd 0 and 1 the connection): systemd-socket-activate -a --inetd, else
    socat; stopped by its pid.  None of them: LookupError."""

    def __init__(self, argv: list, env: dict, log_path: pathlib.Path, cwd):
        self.port = free_port()
        if shutil.which("systemd-socket-activate"):
            command = (["systemd-socket-activate", "-a", "--inetd",
                        "-l", "127.0.0.1:%d" % self.port]
                       + ["-E%s=%s" % item for item in sorted(env.items())] + argv)
            self.tool = "systemd-socket-activate -a --inetd"
        elif shutil.which("socat"):
            command = ["env"] + ["%s=%s" % item for item in sorted(env.items())] + [
                "socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=512" % self.port,
                "EXEC:%s,nofork" % " ".join(argv)]
            self.tool = "socat"
        else:
            raise LookupError("neither systemd-socket-activate nor socat is installed")
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, cwd=str(cwd))
        self.pid = self.process.pid
        deadline = time.monotonic() + 30
        while True:             # bound: a probe would start the program, so no connect
            if self.process.poll() is not None:
                raise SystemExit("%s exited: %s" % (command[0], log_path.read_text()))
            if any(("127.0.0.1:%d" % self.port) in line for line in listening()):
                break
            if time.monotonic() > deadline:
                raise SystemExit("%s did not listen on port %d" % (command[0], self.port))
            time.sleep(0.02)

    def stop(self) -> None:
        sessions = descendants(self.pid)
        terminate(sessions)
        deadline = time.monotonic() + 10
        while any(start_time(pid) is not None for pid in sessions) and time.monotonic() < deadline:
            time.sleep(0.01)
        end_process(self.process)
        self.log.close()


def listening() -> list:
    """The local addresses of listening TCP sockets, as ip:port."""
    out = []
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                words = line.split()
                if words[3] == "0A":                    # TCP_LISTEN
                    ip, port = words[1].split(":")
                    out.append("%s:%d" % (socket.inet_ntoa(bytes.fromhex(ip)[::-1]),
                                          int(port, 16)))
    except OSError:
        pass
    return out


def restore_file(source: pathlib.Path, path: pathlib.Path) -> None:
    """path a copy of source, the benchmark user's, 0600, on disk."""
    shutil.copyfile(source, path)
    os.chown(path, BENCH_UID, BENCH_GID)
    os.chmod(path, 0o600)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def system_users_missing() -> list:
    """popa3d authenticates with PAM against the system's passwd and shadow
    and reads /var/mail/<user>: USER and CLIENT_USERS must exist for real,
    with uid BENCH_UID (bench/deps.sh makes them).  Those that do not."""
    import pwd
    missing = []
    for name in (USER,) + CLIENT_USERS:
        try:
            if pwd.getpwnam(name).pw_uid == BENCH_UID:
                continue
        except KeyError:
            pass
        missing.append(name)
    return missing


def wire_replies(source: pathlib.Path, src_tree: pathlib.Path) -> list:
    """Each message of the mbox as a RETR reply, dot-stuffed, CRLF lines (the
    do-nothing server's replies; no X-UIDL:, the octets as the client counts them)."""
    sys.path.insert(0, str(src_tree))
    from popper.maildrop.wire import pure_wire_encode
    data = source.read_bytes()
    starts = [0]
    pos = data.find(b"\nFrom ")
    while pos >= 0:
        starts.append(pos + 1)
        pos = data.find(b"\nFrom ", pos + 1)
    replies = []
    for a, b in zip(starts, starts[1:] + [len(data)]):
        message = data[data.index(b"\n", a) + 1:b]
        wire, state = pure_wire_encode(message, 1)
        if not wire.endswith(b"\r\n"):
            wire += b"\r\n"
        octets = len(wire) - (b"\r\n" + wire).count(b"\r\n..")
        replies.append(b"+OK %d octets\r\n" % octets + wire + b".\r\n")
    return replies


class NullServer:
    """A do-nothing POP3 server in a process of its own: +OK to everything,
    RETR n the n-th reply of wire_replies() from memory in one sendall.
    What the client and loopback allow."""

    def __init__(self, source: pathlib.Path, src_tree: pathlib.Path):
        replies = wire_replies(source, src_tree)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.pid = os.fork()
        if self.pid == 0:                       # the child: serve until SIGTERM
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                while True:
                    conn, _ = listener.accept()
                    self._serve(conn, replies)
            finally:
                os._exit(0)
        listener.close()

    @staticmethod
    def _serve(conn, replies) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"+OK\r\n")
        pending = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
                *lines, pending = pending.split(b"\r\n")
                for line in lines:
                    word = line.split(b" ")
                    if word[0] == b"RETR":
                        conn.sendall(replies[int(word[1]) - 1])
                    elif word[0] == b"STAT":
                        conn.sendall(b"+OK %d 0\r\n" % len(replies))
                    else:
                        conn.sendall(b"+OK\r\n")
                        if word[0] == b"QUIT":
                            return

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        os.waitpid(self.pid, 0)


def bare_python(flags=(), runs: int = 21) -> float:
    """Median seconds of `python3 FLAGS -c pass` (the interpreter popper runs
    with; -ES: with the launcher's flags)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# What a bare interpreter does as inetd's program: its one-line greeting.
BARE_GREETER = "import sys; sys.stdout.buffer.write(b'+OK\\r\\n'); sys.stdout.flush()"


GREETING_RUNS = 21


def inetd_greetings(base: pathlib.Path, popper: list, env: dict,
                    runs: int = GREETING_RUNS):
    """Median seconds of connect -> first line, (bare, popper), under the
    same super-server (Inetd), connection by connection in turn, so that
    both see the same machine: `python3 -ES -c` writing one line (the bare
    interpreter's start-up, spawn included, that item 1's greeting target
    is measured against) and popper (its session then QUIT, outside the
    timing).  None for one that cannot run (no super-server)."""
    servers = {}
    try:
        for name, command, command_env in (("bare", [sys.executable, "-ES", "-c", BARE_GREETER],
                                            {}), ("popper", popper, env)):
            try:
                servers[name] = Inetd(command, command_env, base / ("inetd-%s-greeting.log" % name),
                                      base)
            except (LookupError, SystemExit) as exc:
                note("no %s greeting under inetd: %s" % (name, exc))
        times = {name: [] for name in servers}
        for _ in range(runs):
            for name, inetd in servers.items():
                t0 = time.perf_counter()
                with socket.create_connection(("127.0.0.1", inetd.port), 30) as sock:
                    line = b""
                    while not line.endswith(b"\r\n"):
                        got = sock.recv(64)
                        if not got:
                            raise ProtocolError("%s under inetd wrote %r" % (name, line))
                        line += got
                    times[name].append(time.perf_counter() - t0)
                    if name == "popper":
                        sock.sendall(b"QUIT\r\n")
                        while sock.recv(4096):
                            pass
    finally:
        for inetd in servers.values():
            inetd.stop()
    return tuple(statistics.median(times[name]) if name in times else None
                 for name in ("bare", "popper"))


def popper_inetd_command(args, host: MailHost) -> list:
    return popper_command(args, host.base) + ["-f", str(host.config), "-T", "600"]


def popper_inetd_env(args) -> dict:
    """What of popper's environment the super-server passes on."""
    return {key: value for key, value in popper_env(args).items()
            if key in ("PYTHONPATH", "POPPER_PUREPYTHON")}


def start_peers(args, host: MailHost, source: pathlib.Path, cscan) -> list:
    """The servers that can run here, each a Peer; a note for each that cannot."""
    peers = []

    def restore_popper():
        host.restore(source)

    def popper_peer(name, extra):
        try:
            server = Server(args, host, extra=extra)
        except SystemExit as exc:
            note("no %s: %s" % (name, str(exc)[:300]))
            return
        peers.append(Peer(name, server.port, server.pid, restore_popper, server.stop))

    popper_peer("popper standalone", [])
    try:
        inetd = Inetd(popper_inetd_command(args, host), popper_inetd_env(args),
                      host.base / "inetd-popper.log", host.base)
        peers.append(Peer("popper under inetd", inetd.port, inetd.pid, restore_popper,
                          inetd.stop, inetd.tool))
    except (LookupError, SystemExit) as exc:
        note("no popper under inetd: %s" % exc)
    popper_peer("popper -S", ["-S"])

    if args.no_peers:
        return peers
    popa3d = next((str(p) for p in (POPA3D, pathlib.Path("/usr/sbin/popa3d")) if p.exists()),
                  None)
    if popa3d is None:
        note("no popa3d: not installed (bench/deps.sh unpacks Debian's into %s)" % POPA3D)
    elif not IS_ROOT:
        note("no popa3d: it needs root (it authenticates against the system's shadow)")
    else:
        try:
            missing = system_users_missing()
            if missing:
                raise LookupError("no system user %s with uid %d (bench/deps.sh makes them)"
                                  % (missing[0], BENCH_UID))
            spool = POPA3D_SPOOL / USER
            # TCP_NODELAY (cscan.c's nodelay says why), as a site would set it.
            inetd = Inetd([str(cscan), "nodelay", popa3d], {}, host.base / "inetd-popa3d.log",
                          "/")

            def stop_popa3d(inetd=inetd):
                inetd.stop()
                _unlink(spool)

            peers.append(Peer("popa3d", inetd.port, inetd.pid,
                              lambda: restore_file(source, spool), stop_popa3d,
                              "popa3d %s" % package_version("popa3d")))
        except (LookupError, SystemExit) as exc:
            note("no popa3d: %s" % exc)
    if not shutil.which("dovecot") or not os.path.exists("/usr/lib/dovecot/pop3"):
        # (Debian's popa3d package removes dovecot-pop3d: bench/deps.sh says why.)
        note("no Dovecot: dovecot-pop3d is not installed (bench/deps.sh installs it)")
    else:
        from bench import tls                  # bench/tls.py's private Dovecot
        try:
            certs = tls.make_certificates(host.base / "certs")
            dovecot = tls.Dovecot(host, certs)
            peers.append(Peer("Dovecot", dovecot.plain_port, dovecot.pid,
                              lambda: dovecot.restore(source), dovecot.stop,
                              "Dovecot %s" % dovecot.version()))
        except (OSError, SystemExit, subprocess.SubprocessError) as exc:
            note("no Dovecot: %s" % str(exc)[:300])
    return peers


def package_version(name: str) -> str:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


def sessions_of(peer: Peer, before: set) -> list:
    return [pid for pid in descendants(peer.pid)
            if pid not in before and start_time(pid) is not None]


def wait_sessions_end(peer: Peer, before: set, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while sessions_of(peer, before) and time.monotonic() < deadline:
        time.sleep(0.01)


def timed_greeting(peer: Peer, args):
    t0 = time.perf_counter()
    pop = Pop3(peer.port, args.timeout)
    try:
        if not pop.line().startswith(b"+OK"):
            raise ProtocolError("%s: no greeting" % peer.name)
    except BaseException:
        pop.close()
        raise
    return time.perf_counter() - t0, pop


def timed_pass_stat(pop: Pop3, user: str = USER):
    """Seconds from PASS to STAT's reply, and the message count STAT gives."""
    pop.ok(b"USER %s\r\n" % user.encode())
    t0 = time.perf_counter()
    pop.ok(b"PASS %s\r\n" % PASSWORD.encode())
    stat = pop.ok(b"STAT\r\n")
    return time.perf_counter() - t0, int(stat.split()[1])


def timed_quit(pop: Pop3) -> float:
    """Seconds from QUIT to the server's close of the connection."""
    t0 = time.perf_counter()
    pop.ok(b"QUIT\r\n")
    try:
        while pop.sock.recv(65536):
            pass
    except OSError:
        pass
    elapsed = time.perf_counter() - t0
    pop.close()
    return elapsed


def peer_round(peer: Peer, facts: dict, args) -> dict:
    """One round of one server on a freshly restored spool: a session that
    logs in and quits (greeting, first login), then one that logs in again
    (second login), RETRs every message one at a time, DELEs every second
    one and quits."""
    from bench import tls
    count = facts["messages"]
    peer.restore()
    settle(args)
    r = {}
    before = set(descendants(peer.pid))
    r["greeting"], pop = timed_greeting(peer, args)
    try:
        r["login_first"], found = timed_pass_stat(pop)
        if found != count:
            raise ProtocolError("%s: STAT found %d messages, not %d" % (peer.name, found, count))
        r["quit_unchanged"] = timed_quit(pop)
    finally:
        pop.close()
    wait_sessions_end(peer, before)
    settle(args)
    r["greeting_again"], pop = timed_greeting(peer, args)
    try:
        r["login_second"], _ = timed_pass_stat(pop)
        mine = sessions_of(peer, before)
        cpu0 = tls.server_cpu(mine)
        octets = mismatches = 0
        t0 = time.perf_counter()
        for n in range(1, count + 1):
            pop.send(b"RETR %d\r\n" % n)
            status, got, _ = pop.multiline()
            announced = octets_of(status) if len(status.split()) > 1 else got   # popa3d: "+OK"
            octets += announced
            mismatches += got != announced
        r["retr"] = time.perf_counter() - t0
        r["retr_server_cpu"] = sum(tls.server_cpu(mine).values()) - sum(cpu0.values())
        r["retr_octets"], r["retr_mismatches"] = octets, mismatches
        deleted = list(range(2, count + 1, 2))
        sender = pop.send_in_background(b"".join(b"DELE %d\r\n" % n for n in deleted))
        for n in deleted:
            reply = pop.line()
            if not reply.startswith(b"+OK"):
                raise ProtocolError("%s: DELE %d: %r" % (peer.name, n, reply))
        sender.join()
        settle(args)
        r["quit"] = timed_quit(pop)
    finally:
        pop.close()
    wait_sessions_end(peer, before)
    return r


def many_clients(port: int, clients: int, timeout: float):
    """(wall seconds, failures) of `clients` connections opened at once,
    each: greeting, USER/PASS as a user of its own with no mail, STAT,
    QUIT, the close."""
    import asyncio

    async def one(user):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            ok = (await reader.readline()).startswith(b"+OK")
            for command in (b"USER %s\r\n" % user.encode(),
                            b"PASS %s\r\n" % PASSWORD.encode(), b"STAT\r\n", b"QUIT\r\n"):
                writer.write(command)
                ok = (await reader.readline()).startswith(b"+OK") and ok
            await reader.read()
            return ok
        finally:
            writer.close()

    async def all_of_them():
        t0 = time.perf_counter()
        done = await asyncio.wait_for(
            asyncio.gather(*(one(user) for user in CLIENT_USERS[:clients]), return_exceptions=True), timeout)
        return time.perf_counter() - t0, sum(1 for ok in done if ok is not True)

    return asyncio.run(all_of_them())


def null_retr(null: NullServer, count: int, args) -> float:
    pop = Pop3(null.port, args.timeout)
    try:
        pop.line()
        t0 = time.perf_counter()
        for n in range(1, count + 1):
            pop.send(b"RETR %d\r\n" % n)
            pop.multiline()
        elapsed = time.perf_counter() - t0
        pop.ok(b"QUIT\r\n")
        return elapsed
    finally:
        pop.close()


def compare(args) -> int:
    """make bench: the comparison table (see the section's comment)."""
    json_path = args.json or args.out / "compare.json"
    load_start = os.getloadavg()
    source, facts = cached_corpus(args.out, args.messages, args.seed)
    cscan = build_cscan(args.out)
    scan = c_scan(cscan, source, args.scan_runs)
    python_start, python_start_es = bare_python(), bare_python(["-ES"])
    pinfo = popper_facts(args)
    pinfo["commit"] = git_commit(args.source)
    host = MailHost(args.tmpdir, args.source)
    python_inetd_es, popper_inetd_greeting = inetd_greetings(
        host.base, popper_inetd_command(args, host), popper_inetd_env(args))
    null = NullServer(source, args.source)
    peers = []
    runs, copies, keeps, nulls = {}, [], [], []
    try:
        peers = start_peers(args, host, source, cscan)
        for peer in peers:
            runs[peer.name] = []
        for rnd in range(args.reps):
            host.restore(source)
            settle(args)
            copies.append(c_copy(cscan, host.spool, host.scratch / "copy"))
            settle(args)
            keeps.append(c_keep(cscan, host.spool, host.scratch / "kept")[2])
            nulls.append(null_retr(null, facts["messages"], args))
            order = peers[rnd % len(peers):] + peers[:rnd % len(peers)]
            for peer in order:
                run = peer_round(peer, facts, args)
                if args.clients:
                    run["clients"], run["client_failures"] = many_clients(
                        peer.port, args.clients, args.timeout)
                runs[peer.name].append(run)
                note("round %d %-20s greeting %6.1f ms, login %6.0f/%5.0f ms, RETR %5.0f MB/s, "
                     "QUIT %5.0f ms%s" % (
                         rnd + 1, peer.name, run["greeting"] * 1e3, run["login_first"] * 1e3,
                         run["login_second"] * 1e3, run["retr_octets"] / MB / run["retr"],
                         run["quit"] * 1e3, ", %d clients %.2f s (%d failed)"
                         % (args.clients, run["clients"], run["client_failures"])
                         if args.clients else ""))
    finally:
        for peer in peers:
            peer.stop()
        null.stop()
        if args.keep_tmp:
            note("mail host left in %s" % host.base)
        else:
            host.remove()
    med = statistics.median
    summary = {}
    for name, rs in runs.items():
        s = summary[name] = {key: med(run[key] for run in rs) for key in rs[0]
                             if isinstance(rs[0][key], (int, float))}
        s["greeting"] = med([run[k] for run in rs for k in ("greeting", "greeting_again")])
        s["retr_mbps"] = med(run["retr_octets"] / MB / run["retr"] for run in rs)
        s["retr_us"] = s["retr"] / facts["messages"] * 1e6
        s["version"] = next(p.version for p in peers if p.name == name)
    octets = next((rs[0]["retr_octets"] for rs in runs.values() if rs), facts["bytes"])
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": dict(machine(), loadavg_start=load_start, loadavg_end=os.getloadavg()),
        "popper": pinfo,
        "corpus": dict(facts, file=str(source)),
        "rounds": args.reps,
        "clients": args.clients,
        "limits": {"python_start": python_start, "python_start_es": python_start_es,
                   "python_inetd_es": python_inetd_es,
                   "popper_inetd_greeting": popper_inetd_greeting, "scan": scan["best"],
                   "copy": min(copies), "keep": min(keeps),
                   "null_retr_mbps": octets / MB / med(nulls),
                   "null_retr_us": med(nulls) / facts["messages"] * 1e6},
        "summary": summary,
        "runs": runs,
    }
    return save(results, compare_report, json_path)


def compare_report(results: dict) -> str:
    f, m, lim, s = results["corpus"], results["machine"], results["limits"], results["summary"]
    p = results["popper"]
    columns = [c for c in COMPARE_COLUMNS if c in s]
    out = ["popper beside popa3d and Dovecot: %d messages, %.1f MB (seed %d), %d rounds, "
           "interleaved, medians" % (f["messages"], f["bytes"] / MB, f["seed"], results["rounds"]),
           "popper %s (%s, %s); %s; Python %s, %s x %s, Linux %s"
           % (p["version"], p["commit"], "native C extension" if p["native"] else "pure Python",
              "; ".join(s[c]["version"] for c in columns if s[c]["version"]),
              m["python"], m["cpus"], m["cpu"], m["kernel"]),
           "load average (1, 5, 15 min) at the start %s, at the end %s"
           % ("/".join("%.2f" % x for x in m["loadavg_start"]),
              "/".join("%.2f" % x for x in m["loadavg_end"])),
           ""]
    missing = [c for c in COMPARE_COLUMNS if c not in s]
    if missing:
        out.append("not run (see the notes above the table): %s" % ", ".join(missing))
        out.append("")

    def ms(x):
        return "%.1f ms" % (x * 1e3) if x < 0.1 else "%.0f ms" % (x * 1e3)

    rows = [("connect -> greeting", lambda v: ms(v["greeting"]),
             "bare python3 start %s (-ES, the launcher's flags: %s; -ES writing a "
             "greeting under the same inetd: %s, beside popper under it: %s)"
             % (ms(lim["python_start"]), ms(lim.get("python_start_es", float("nan"))),
                ms(lim.get("python_inetd_es") or float("nan")),
                ms(lim.get("popper_inetd_greeting") or float("nan")))),
            ("PASS -> STAT, first login", lambda v: ms(v["login_first"]),
             "C scan %s; C copy + fsync %s" % (ms(lim["scan"]), ms(lim["copy"]))),
            ("PASS -> STAT, second login", lambda v: ms(v["login_second"]), ""),
            ("RETR every message, one at a time", lambda v: "%.0f MB/s" % v["retr_mbps"],
             "do-nothing server %.0f MB/s" % lim["null_retr_mbps"]),
            ("  the same, us a message", lambda v: "%.0f us" % v["retr_us"],
             "%.0f us" % lim["null_retr_us"]),
            ("  server CPU during the RETRs", lambda v: "%.2f s" % v["retr_server_cpu"], ""),
            ("QUIT -> close, nothing changed", lambda v: ms(v["quit_unchanged"]), ""),
            ("QUIT -> close after DELE of half", lambda v: ms(v["quit"]),
             "C write of the kept half + fsync %s" % ms(lim["keep"]))]
    if results.get("clients"):
        rows.append(("%d clients at once, wall" % results["clients"],
                     lambda v: "%.2f s%s" % (v["clients"], " (%d failed)" % v["client_failures"]
                                             if v["client_failures"] else ""), ""))
    out.append("| | " + " | ".join(columns) + " | limit, same run |")
    out.append("|---" * (len(columns) + 2) + "|")
    for label, cell, limit in rows:
        out.append("| %s | %s | %s |" % (label, " | ".join(cell(s[c]) for c in columns), limit))
    out.append("")

    def ratio(label, a, b, target):
        if a is None or b is None:
            return
        out.append("  %-58s %6.2fx  (target %s)" % (label, a / b, target))

    def get(column, key):
        return s[column][key] if column in s else None

    out.append("ratios:")
    if "popper under inetd" in s:
        for key, label in (("python_start", "bare python3 start"),
                           ("python_start_es", "bare python3 -ES start"),
                           ("python_inetd_es", "bare python3 -ES greeting, same inetd")):
            if lim.get(key) is not None:
                out.append("  %-58s %+6.1f ms (target <= +5 ms)" % (
                    "inetd connect -> greeting minus " + label,
                    (s["popper under inetd"]["greeting"] - lim[key]) * 1e3))
    if lim.get("python_inetd_es") is not None and lim.get("popper_inetd_greeting") is not None:
        # The same two, connection by connection in turn: the same machine for both.
        out.append("  %-58s %+6.1f ms (target <= +5 ms)" % (
            "the same, one after the other, %d of each" % GREETING_RUNS,
            (lim["popper_inetd_greeting"] - lim["python_inetd_es"]) * 1e3))
    for c in ("popper standalone", "popper under inetd", "popper -S"):
        a, b = get("popa3d", "retr_mbps"), get(c, "retr_mbps")
        ratio("RETR MB/s, %s / popa3d" % c, b, a, ">= 1")
    ratio("QUIT after DELE of half, popper -S / popa3d", get("popper -S", "quit"),
          get("popa3d", "quit"), "<= 1.2")
    ratio("QUIT after DELE of half, popper -S / standalone", get("popper -S", "quit"),
          get("popper standalone", "quit"), "<= 1")
    ratio("first login, popper standalone / C copy + fsync",
          get("popper standalone", "login_first"), lim["copy"], "<= 1.3")
    ratio("QUIT after DELE of half, standalone / C write of the kept half + fsync",
          get("popper standalone", "quit"), lim["keep"], "<= 1.5")
    if results.get("clients"):
        ratio("%d clients, popper standalone / popa3d" % results["clients"],
              get("popper standalone", "clients"), get("popa3d", "clients"), "<= 1")
        ratio("%d clients, popper under inetd / standalone" % results["clients"],
              get("popper under inetd", "clients"), get("popper standalone", "clients"), "<= 2")
    out.append("")
    out.append("Each round: the spool restored (copied, fsync'ed) before each server; a session "
               "that logs in and quits, then one that logs in again, RETRs every message one "
               "at a time, DELEs every second one and quits; each of the clients at once logs "
               "in as a user of its own with no mail.  RETR octet mismatches: %d."
               % sum(run["retr_mismatches"] for rs in results["runs"].values() for run in rs))
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.harness",
        description="Benchmark popper: login, STAT, UIDL, LIST, RETR, DELE, QUIT on a "
                    "generated mailbox, against plain-C reference figures.",
        epilog="Run from the checkout (/work/main).  Results go to bench/out/results.json; "
               "see bench/README.md.")
    parser.add_argument("--messages", type=int, default=10000,
                        help="messages in the mailbox (default 10000, about 172 MB; "
                             "60 is about 1 MB, 100000 about 1.7 GB)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument("--reps", type=int, default=3,
                        help="popper sessions, each on a freshly restored spool (default 3)")
    parser.add_argument("--scan-runs", type=int, default=5,
                        help="runs of the C scan; the best counts (default 5)")
    parser.add_argument("--popper", metavar="EXE",
                        help="an installed popper executable (default: python3 -m popper "
                             "from this checkout, with PYTHONPATH set to it)")
    parser.add_argument("--source", type=pathlib.Path, default=ROOT, metavar="DIR",
                        help="run `python3 -m popper` from this source tree, its C extension "
                             "built in place (default: this checkout)")
    parser.add_argument("--pure", action="store_true",
                        help="run popper with POPPER_PUREPYTHON=1 (no C extension)")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                        help="sync, then wait this long before each timed write-heavy step "
                             "(the C copy, the C kept-half write, the session); default 1")
    parser.add_argument("--server-mode", action="store_true",
                        help="run popper with -S (no login copy; a second login takes the "
                             "cached message table)")
    parser.add_argument("--bulletins", type=int, default=0, metavar="N",
                        help="run popper with -b on a directory of N bulletins the user has "
                             "all seen (~/.popbull says so): what bulletins add to a login "
                             "with nothing new")
    parser.add_argument("--cpu", type=int, metavar="N",
                        help="pin the client and popper to CPU N (taskset), as in the issue's "
                             "'client and server on one CPU'")
    parser.add_argument("--no-pipelined", action="store_true",
                        help="skip the pipelined RETR pass")
    parser.add_argument("--label", default="",
                        help="a note stored with the results and printed with the table "
                             "(what is measured, e.g. a commit)")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                        help="cache and output directory (default bench/out)")
    parser.add_argument("--json", type=pathlib.Path,
                        help="where to write the results (default OUT/results.json)")
    parser.add_argument("--tmpdir", default=None,
                        help="parent of the temporary mail host (default: $TMPDIR or /tmp)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="client socket timeout in seconds (default 900)")
    parser.add_argument("--keep-tmp", action="store_true",
                        help="leave the temporary mail host behind (for inspection)")
    parser.add_argument("--compare", action="store_true",
                        help="make bench's table: popper standalone, under inetd and -S "
                             "beside popa3d and Dovecot (those installed), --reps rounds, "
                             "interleaved (bench/README.md)")
    parser.add_argument("--clients", type=int, default=CONCURRENT, metavar="N",
                        help="--compare: N clients at once against each server (default %d; "
                             "0: none)" % CONCURRENT)
    parser.add_argument("--no-peers", action="store_true",
                        help="--compare: popper's three modes only")
    args = parser.parse_args(argv)
    if args.messages < 2 or args.reps < 1 or args.scan_runs < 1:
        parser.error("--messages must be at least 2, --reps and --scan-runs at least 1")
    if not 0 <= args.clients <= len(CLIENT_USERS):
        parser.error("--clients: at most %d" % len(CLIENT_USERS))
    args.source = args.source.resolve()
    if not (args.source / "popper" / "__main__.py").exists():
        parser.error("--source %s: no popper/__main__.py there" % args.source)
    if args.popper:
        args.popper = shutil.which(args.popper) or args.popper
        if not os.access(args.popper, os.X_OK):
            parser.error("--popper %s is not an executable" % args.popper)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.compare:
        return compare(args)
    json_path = args.json or args.out / "results.json"

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    load_start = os.getloadavg()
    source, facts = cached_corpus(args.out, args.messages, args.seed)
    cscan = build_cscan(args.out)
    note("C scan of %s, best of %d ..." % (source.name, args.scan_runs))
    scan = c_scan(cscan, source, args.scan_runs)
    if scan["messages"] != facts["messages"] or scan["bytes"] != facts["bytes"]:
        note("warning: the C scan found %d messages in %d bytes, expected %d in %d"
             % (scan["messages"], scan["bytes"], facts["messages"], facts["bytes"]))

    pinfo = popper_facts(args)
    pinfo["command"] = args.popper or "the launcher (#!%s -ES) of %s" % (sys.executable,
                                                                          args.source)
    pinfo["commit"] = None if args.popper else git_commit(args.source)
    pinfo["pure_requested"] = args.pure
    pinfo["label"] = args.label
    if not args.popper and not args.pure and pinfo["native"] is False:
        note("warning: popper runs without its C extension; build it with "
             "`python3 _native/build.py`")

    host = MailHost(args.tmpdir, args.source)
    if args.bulletins:
        host.post_bulletins(args.bulletins)
    server = None
    runs, copies, keeps = [], [], []
    checks = {"retr_octet_mismatches": 0}
    try:
        server = Server(args, host)
        note("popper pid %d on 127.0.0.1:%d; mail host %s" % (server.pid, server.port, host.base))
        for rep in range(1, args.reps + 1):
            host.restore(source)
            settle(args)
            copies.append(c_copy(cscan, host.spool, host.scratch / "copy"))
            settle(args)
            kept_count, kept_bytes, keep_time = c_keep(cscan, host.spool, host.scratch / "kept")
            keeps.append(keep_time)
            settle(args)
            if (kept_count, kept_bytes) != (facts["kept_messages"], facts["kept_bytes"]):
                note("warning: the C keep wrote %d messages, %d bytes; expected %d, %d"
                     % (kept_count, kept_bytes, facts["kept_messages"], facts["kept_bytes"]))
            note("repetition %d/%d ..." % (rep, args.reps))
            login_empty = timed_login(server, args, EMPTY_USER)
            run = session(server, facts, args)
            run["login_empty"] = login_empty
            if args.server_mode:
                run["login_cached"] = timed_login(server, args)
            run["c_copy"], run["c_keep"] = copies[-1], keep_time
            runs.append(run)
            checks["retr_octet_mismatches"] += run["retr_octet_mismatches"]
            after = run["spool_after_quit"] = {
                "bytes": host.spool.stat().st_size if host.spool.exists() else 0,
                "messages": c_scan(cscan, host.spool, 1)["messages"]
                if host.spool.exists() else 0,
                "temp_drop_left": host.temp_drop.exists()}
            checks["spool_bytes_after_quit"] = after["bytes"]
            checks["spool_messages_after_quit"] = after["messages"]
            checks["temp_drop_left"] = after["temp_drop_left"]
            if after["messages"] != facts["kept_messages"]:
                note("warning: the spool holds %d messages after QUIT, expected %d"
                     % (after["messages"], facts["kept_messages"]))
            note("  login %.3f s, RETR %.3f s, pipelined %s, QUIT %.3f s, VmHWM %s kB"
                 % (run["login"], run["retr"], fmt_s(run.get("retr_pipelined")), run["quit"],
                    run["mem_before_quit"].get("VmHWM")))
    finally:
        if server is not None:
            deadline = time.monotonic() + 10
            while server.live_children() - server.initial and time.monotonic() < deadline:
                time.sleep(0.05)
            leftover = sorted(server.live_children() - server.initial)
            if leftover:
                note("warning: session processes still running at the end: %s; "
                     "sending them SIGTERM" % leftover)
                terminate(leftover)
            code = server.stop()
            if code != 0:
                note("popper exited with status %d: %s" % (code, server.stderr()))
        if args.keep_tmp:
            note("mail host left in %s" % host.base)
        else:
            host.remove()

    summary = {key: summarize(runs, key) for key in TIMES}
    for key in TIMES:
        cpus = [run["cpu_" + key] for run in runs if run.get("cpu_" + key)]
        summary["cpu_" + key] = {who: statistics.median([c[who] for c in cpus])
                                 if cpus and all(c[who] is not None for c in cpus) else None
                                 for who in ("popper", "client")}
    summary["retr_octets"] = runs[0]["retr_octets"]
    summary["dele_count"] = runs[0]["dele_count"]
    memory_peak = {}
    for key in ("mem_after_greeting", "mem_after_login", "mem_before_quit"):
        memory_peak[key] = {field: max(run[key].get(field, 0) for run in runs)
                            for field in ("VmRSS", "VmHWM")}
    hwms = [run["hwm_through_quit"] for run in runs if run["hwm_through_quit"]]
    memory_peak["hwm_through_quit"] = max(hwms) if hwms else None
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": dict(machine(), loadavg_start=load_start, loadavg_end=os.getloadavg()),
        "popper": pinfo,
        "corpus": dict(facts, file=str(source)),
        "repetitions": args.reps,
        "server_mode": args.server_mode,
        "bulletins": args.bulletins,
        "cpu": args.cpu,
        "settle": args.settle,
        "reference": {
            "scan": scan,
            "copy": {"median": statistics.median(copies), "min": min(copies), "all": copies},
            "keep": {"median": statistics.median(keeps), "min": min(keeps), "all": keeps},
        },
        "summary": summary,
        "memory": memory_peak,
        "checks": checks,
        "runs": runs,
    }
    return save(results, report, json_path)


if __name__ == "__main__":
    sys.exit(main())
