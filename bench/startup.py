"""popper's start-up under inetd, side by side with the bare interpreter,
and what the separate login process costs.

    sudo python3 -m bench.startup [--runs 60]            # login-user nobody vs none
    sudo python3 -m bench.startup --greeting [--runs 60] # connect -> greeting
    sudo python3 -m bench.startup --clients 200          # 200 clients at once

The default: popper in inetd mode (on a socketpair, as inetd would) again
and again, as root, alternating `set login-user = nobody` (the default: a
login process, privsep.py) with `set login-user = none` (one process, as
Qpopper), timing three points of each session from the spawn: the
greeting, the +OK of a USER/PASS login, and the end after QUIT, and the
CPU time of the session's processes together.

--greeting: spawn -> greeting, alternating in one run: the bare
interpreter (`python -c` writing one line, plain, -S, -Es and -ES, the
launcher's flags), popper in inetd mode through the installed launcher
(packaging/launcher.py, #!python -ES) with the C extension and with the
pure twins (POPPER_PUREPYTHON=1), both with a user database, and with the
C extension and the default back-end (passwd and shadow, whose start-up
check must not load it), and connect -> greeting of a standalone popper
(which forks a ready process).

--clients N: N clients at once, each USER/PASS/STAT/RETR 1/QUIT as its
own user on a small spool, against a standalone popper and against
popper under a super-server (systemd-socket-activate -a --inetd when
installed, else a small Python one), alternating --rounds times; the
wall time from the first connect to the last sign-off.

Each prints medians; it measures, it asserts nothing.  --python chooses
the interpreter (default: this one), --source the tree to run.
"""

import argparse
import os
import pathlib
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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
        # "set reverse-lookup": no lookups (Qpopper's sense, reversed: as -R)
        path.write_text("set userdb = %s\nset spool-dir = %s\nset auth-fail-delay = 0\n"
                        "set reverse-lookup\nset login-user = %s\n"
                        % (base / "users", spool, name))
        configs[name] = path
    # The default back-end (passwd and shadow): only --greeting runs it.
    configs["unix"] = base / "unix.conf"
    configs["unix"].write_text("set spool-dir = %s\nset reverse-lookup\n" % spool)
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


def medians(times: dict) -> dict:
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def launcher(base: pathlib.Path, python: str, source: pathlib.Path) -> str:
    """The launcher make install writes (#!python -ES, naming python's
    site directories), on the source tree."""
    sys.path.insert(0, str(ROOT / "packaging"))
    import launcher as made
    path = base / "popper"
    path.write_text(made.launcher(python, str(source), site=made.site_dirs(python)))
    os.chmod(path, 0o755)
    return str(path)


def spawn_to_greeting(command: list, env: dict) -> float:
    """Seconds from spawning command on a socketpair to its first line."""
    ours, theirs = socket.socketpair()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=theirs, stdout=theirs, env=env, cwd="/")
    theirs.close()
    line(ours, b"")
    took = time.perf_counter() - started
    ours.close()
    process.wait()
    return took


def connect_to_greeting(port: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        line(sock, b"")
        took = time.perf_counter() - started
        sock.sendall(b"QUIT\r\n")
        sock.recv(100)
    return took


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("bench.startup: the server exited (%s)" % process.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                line(sock, b"")
                sock.sendall(b"QUIT\r\n")
                sock.recv(100)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench.startup: nothing listens on port %d" % port)


def standalone(program: str, python: str, config, port: int, env: dict):
    process = subprocess.Popen([program, "-f", str(config),
                                "127.0.0.1:%d" % port], env=env, cwd="/")
    wait_for_port(port, process)
    return process


def stop(process) -> None:
    os.kill(process.pid, signal.SIGTERM)
    process.wait()


def greeting(args, base: pathlib.Path, configs: dict) -> None:
    python, env = args.python, dict(os.environ)
    env.pop("POPPER_PUREPYTHON", None)
    pure = dict(env, POPPER_PUREPYTHON="1")
    program = launcher(base, python, args.source)
    write = "import os; os.write(1, b'+OK\\r\\n')"
    config = str(configs["nobody"])
    commands = {
        "bare python -c": ([python, "-c", write], env),
        "bare python -S -c": ([python, "-S", "-c", write], env),
        "bare python -Es -c": ([python, "-Es", "-c", write], env),
        "bare python -ES -c": ([python, "-ES", "-c", write], env),
        "popper inetd, native": ([program, "-f", config], env),
        "popper inetd, pure": ([program, "-f", config], pure),
        "popper inetd, Unix back-end": ([program, "-f", str(configs["unix"])], env),
    }
    port = free_port()
    server = standalone(program, python, config, port, env)
    times = {name: [] for name in list(commands) + ["popper standalone"]}
    try:
        for name, (command, environ) in commands.items():     # warm the caches
            spawn_to_greeting(command, environ)
        for _ in range(args.runs):
            for name, (command, environ) in commands.items():
                times[name].append(spawn_to_greeting(command, environ))
            times["popper standalone"].append(connect_to_greeting(port))
    finally:
        stop(server)
    result = medians(times)
    print("%s, median of %d runs, alternating" % (python, args.runs))
    for name, value in result.items():
        print("  %-32s %7.2f ms" % (name, value))
    for bare in ("bare python -c", "bare python -ES -c"):
        print("  %-32s %+7.2f ms (native), %+.2f ms (pure), %+.2f ms (Unix back-end); "
              "target <= +5" % (
                  "popper inetd - " + bare[5:], result["popper inetd, native"] - result[bare],
                  result["popper inetd, pure"] - result[bare],
                  result["popper inetd, Unix back-end"] - result[bare]))


def client(port: int, user: bytes, start: threading.Event, results: list) -> None:
    start.wait()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            buf = line(sock, b"")[1]
            sock.sendall(b"USER %s\r\n" % user)
            _, buf = line(sock, buf)
            sock.sendall(b"PASS secret\r\nSTAT\r\n")
            reply, buf = line(sock, buf)
            ok = reply.startswith(b"+OK")
            _, buf = line(sock, buf)
            sock.sendall(b"RETR 1\r\n")
            while b"\r\n.\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise EOFError(buf)
                buf += data
            buf = buf.split(b"\r\n.\r\n", 1)[1]
            sock.sendall(b"QUIT\r\n")
            reply, buf = line(sock, buf)
            results.append(ok and reply.startswith(b"+OK"))
    except (OSError, EOFError):
        results.append(False)


def many(args, base: pathlib.Path) -> None:
    """--clients N: standalone against a super-server, same run."""
    from popper.auth import cryptpw
    spool = base / "many-spool"
    spool.mkdir()
    os.chmod(spool, 0o1777)
    hashed = cryptpw.crypt(b"secret", b"$6$benchsalt$").decode()
    users = [b"user%d" % i for i in range(args.clients)]
    (base / "many-users").write_text("".join("%s:%s:4242:4242::%s:/bin/sh\n"
                                             % (u.decode(), hashed, base) for u in users))
    os.chmod(base / "many-users", 0o644)
    config = base / "many.conf"
    config.write_text("set userdb = %s\nset spool-dir = %s\nset auth-fail-delay = 0\n"
                      "set reverse-lookup\nset max-sessions = 0\n"
                      "set max-sessions-per-address = 0\nset max-connections-per-second = 0\n"
                      % (base / "many-users", spool))
    mail = corpus.mbox_bytes(list(corpus.messages(args.messages, seed=5)))
    program = launcher(base, args.python, args.source)
    env = dict(os.environ)
    env.pop("POPPER_PUREPYTHON", None)
    activate = shutil.which("systemd-socket-activate")

    def restore():
        for user in users:
            path = spool / user.decode()
            path.write_bytes(mail)
            os.chown(path, 4242, 4242)

    def standalone_server(port):
        return standalone(program, args.python, config, port, env)

    def inetd_server(port):
        if activate:
            command = [activate, "-l", "127.0.0.1:%d" % port, "-a", "--inetd",
                       program, "-f", str(config)]
        else:
            command = [sys.executable, "-m", "bench.startup", "--inetd-for", str(port), "--",
                       program, "-f", str(config)]
        process = subprocess.Popen(command, env=env, cwd=str(ROOT),
                                   stderr=subprocess.DEVNULL)
        wait_for_port(port, process)
        return process

    servers = {"standalone": standalone_server,
               "inetd (%s)" % ("systemd-socket-activate" if activate else "bench"): inetd_server}
    walls = {name: [] for name in servers}
    failures = {name: 0 for name in servers}
    for _ in range(args.rounds):
        for name, start_server in servers.items():
            restore()
            port = free_port()
            server = start_server(port)
            try:
                go, results = threading.Event(), []
                threads = [threading.Thread(target=client, args=(port, u, go, results))
                           for u in users]
                for thread in threads:
                    thread.start()
                started = time.perf_counter()
                go.set()
                for thread in threads:
                    thread.join()
                walls[name].append(time.perf_counter() - started)
                failures[name] += results.count(False)
            finally:
                stop(server)
    print("%d clients at once, USER/PASS/STAT/RETR 1/QUIT on %d messages each, "
          "median wall of %d rounds, alternating" % (args.clients, args.messages, args.rounds))
    result = {name: statistics.median(values) for name, values in walls.items()}
    for name, value in result.items():
        print("  %-40s %7.2f s   (%d failed sessions)" % (name, value, failures[name]))
    first = list(result.values())
    print("  %-40s %7.2f   target <= 2" % ("inetd / standalone", first[1] / first[0]))


def inetd_for(port: int, command: list) -> int:
    """A small super-server (where systemd-socket-activate is missing):
    fork and exec command per connection, the connection as fd 0 and 1."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            os.dup2(conn.fileno(), 0)
            os.dup2(conn.fileno(), 1)
            os.execv(command[0], command)
        conn.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--greeting", action="store_true",
                        help="spawn -> greeting beside the bare interpreter")
    parser.add_argument("--clients", type=int, default=0,
                        help="this many clients at once, standalone against inetd")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=3, help="each --clients spool's")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--source", type=pathlib.Path, default=ROOT,
                        help="the tree holding the popper package")
    parser.add_argument("--inetd-for", type=int, help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inetd_for:
        return inetd_for(args.inetd_for, args.command)
    if os.geteuid() != 0:
        print("bench.startup: run as root (a login process exists only then)", file=sys.stderr)
        return 1
    base = pathlib.Path(tempfile.mkdtemp(prefix="popper-startup-"))
    os.chmod(base, 0o755)
    try:
        spool, configs = setup(base)
        if args.greeting:
            greeting(args, base, configs)
            return 0
        if args.clients:
            many(args, base)
            return 0
        mail = corpus.mbox_bytes(list(corpus.messages(3, seed=5)))
        times = {name: [] for name in configs}
        for name in configs:                                # warm the caches
            one(configs[name], spool, mail)
        for _ in range(args.runs):
            for name in configs:
                times[name].append(one(configs[name], spool, mail))
        print("median of %d runs, ms from spawn   greeting    login      end  CPU time"
              % args.runs)
        result = {}
        for name, rows in times.items():
            result[name] = [statistics.median(r[i] for r in rows) * 1000 for i in range(4)]
            print("login-user = %-22s %8.2f %8.2f %8.2f %8.2f" % ((name,) + tuple(result[name])))
        print("%-35s %8.2f %8.2f %8.2f %8.2f" % (("difference",) + tuple(
            a - b for a, b in zip(result["nobody"], result["none"]))))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
