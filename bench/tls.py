"""RETR over TLS beside plaintext, popper beside Dovecot, in one run.

    bench/deps.sh                              Dovecot 2.3 (dovecot-pop3d) and openssl
    python3 -m bench.tls                       10,000 messages (about 172 MB), 5 rounds
    python3 -m bench.tls --messages 2000 --rounds 9

One mailbox (bench/corpus.py, cached as bench/harness.py caches it), served
by popper in standalone mode -- plaintext, over STLS (-l 1) and with TLS
from the first byte (-l 2) -- and by a Dovecot of its own (a private
configuration on 127.0.0.1: its own base_dir, the harness's passwd-file as
passdb and userdb, the same mbox in a spool directory of its own), on its
pop3 and pop3s listeners.  Each server gets a certificate of the tests' CA
(tests/tlsca.py, made with openssl), which the client trusts, checking the
host name.

Every round measures each server once, in an order that turns round by
round: the spool restored from the corpus (copied, fsync'ed; Dovecot's
index removed), a login, then RETR of every message one at a time with the
harness's client (whole commands out, large recv_into()s in), timed, then
QUIT.  The table gives medians over the rounds in MB/s (the octets the +OK
lines announce over the time for all of them), and the CPU seconds of the
server's processes for the connection (popper's session and, with TLS,
whatever relays it; Dovecot's pop3-login, which relays TLS, and pop3) and
of this client during the RETRs.

Both servers use one cipher: the client offers only TLS_AES_128_GCM_SHA256
(TLS 1.3, through an OpenSSL configuration file of its own: Python cannot
choose TLS 1.3 suites) or, with --tls12, ECDHE-ECDSA-AES128-GCM-SHA256; each
run checks the cipher it got.  bench/README.md has the figures.
"""

import argparse
import importlib.util
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import time

if __package__ in (None, ""):                    # run as python3 bench/tls.py
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402
from bench.harness import (BENCH_GID, BENCH_UID, MB, PASSWORD, USER, note,  # noqa: E402
                           ProtocolError)

TLS13_SUITE = "TLS_AES_128_GCM_SHA256"
TLS12_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
OPENSSL_CNF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = %s
""" % TLS13_SUITE


def pin_tls13(out: pathlib.Path) -> None:
    """The client's OpenSSL offers only TLS13_SUITE: set before ssl is first
    used (OpenSSL reads its configuration file then)."""
    cnf = out / "openssl-client.cnf"
    cnf.write_text(OPENSSL_CNF)
    os.environ["OPENSSL_CONF"] = str(cnf)


def client_context(ca: pathlib.Path, tls12: bool):
    import ssl
    context = ssl.create_default_context(cafile=str(ca))
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHER)
    return context


# --- the test CA --------------------------------------------------------------------

def make_certificates(directory: pathlib.Path) -> dict:
    """The tests' CA (tests/tlsca.py, loaded by its path as tests/conftest.py
    loads bench/corpus.py): a root the client trusts, and a server
    certificate it signs for localhost and 127.0.0.1 (EC P-256)."""
    spec = importlib.util.spec_from_file_location("popper_tlsca",
                                                  str(harness.ROOT / "tests" / "tlsca.py"))
    tlsca = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tlsca)
    ca = tlsca.TestCA(directory)
    return {"ca": ca.root, "cert": ca.cert, "key": ca.key}


# --- Dovecot ------------------------------------------------------------------------

DOVECOT_CONF = """# bench/tls.py's private Dovecot: nothing of the system's is read.
base_dir = {base}/run
state_dir = {base}/state
instance_name = popper-bench-dovecot
log_path = {base}/dovecot.log
protocols = pop3
listen = 127.0.0.1
{users_as}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
ssl_cipher_list = {tls12}
ssl_cipher_suites = {tls13}
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=CRYPT {userdb}
}}
userdb {{
  driver = passwd-file
  args = {userdb}
}}
mail_location = mbox:{base}/mail/%u:INBOX={base}/spool/%u:INDEX={base}/index/%u
{warm}service pop3-login {{
  inet_listener pop3 {{
    port = {plain_port}
  }}
  inet_listener pop3s {{
    port = {tls_port}
    ssl = yes
  }}
}}
"""


class Dovecot:
    """dovecot -F with DOVECOT_CONF, on two free ports; stopped by its pid."""

    def __init__(self, host: harness.MailHost, certs: dict, warm: bool = False):
        """warm: the mbox and its index are made once and kept (no flag
        updates: QUIT leaves the mbox as the corpus has it)."""
        self.warm, self.restored = warm, False
        self.base = host.base / "dovecot"
        for name in ("run", "state", "spool", "mail/" + USER, "index/" + USER):
            (self.base / name).mkdir(parents=True)
        os.chmod(str(self.base / "spool"), 0o1777)
        for name in ("mail", "mail/" + USER, "index", "index/" + USER):
            os.chown(str(self.base / name), BENCH_UID, BENCH_GID)
        self.spool = self.base / "spool" / USER
        self.index = self.base / "index" / USER
        self.plain_port, self.tls_port = harness.free_port(), harness.free_port()
        # Not root: Dovecot's own users must be this one (it cannot change uid).
        users_as = "" if harness.IS_ROOT else (
            "default_login_user = {0}\ndefault_internal_user = {0}\n".format(
                pwd_name(os.getuid())))
        self.conf = self.base / "dovecot.conf"
        self.conf.write_text(DOVECOT_CONF.format(
            base=self.base, users_as=users_as, cert=certs["cert"], key=certs["key"],
            tls12=TLS12_CIPHER, tls13=TLS13_SUITE, userdb=host.userdb,
            plain_port=self.plain_port, tls_port=self.tls_port,
            warm="pop3_no_flag_updates = yes\n" if warm else ""))
        self.process = subprocess.Popen(["dovecot", "-F", "-c", str(self.conf)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        try:
            for port in (self.plain_port, self.tls_port):
                wait_listening(port, self.process, self.log)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        try:
            return (self.base / "dovecot.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def version(self) -> str:
        done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
        return done.stdout.strip()

    def restore(self, corpus_path: pathlib.Path) -> None:
        """The mbox as the corpus has it, and no index: each round the same
        (warm: only the first time)."""
        if self.warm and self.restored:
            return
        self.restored = True
        shutil.rmtree(str(self.index), ignore_errors=True)
        self.index.mkdir()
        os.chown(str(self.index), BENCH_UID, BENCH_GID)
        restore_file(corpus_path, self.spool)

    def stop(self) -> None:
        harness.end_process(self.process)


def pwd_name(uid: int) -> str:
    import pwd
    return pwd.getpwuid(uid).pw_name


def wait_listening(port: int, process, log, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited (%s): %s" % (process.returncode, log()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on port %d: %s" % (port, log()))


def restore_file(source: pathlib.Path, path: pathlib.Path) -> None:
    shutil.copyfile(str(source), str(path))
    os.chown(str(path), BENCH_UID, BENCH_GID)
    os.chmod(str(path), 0o600)
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the servers under test -------------------------------------------------------------

class Target:
    """One server and one way of connecting to it: how ("plain", "stls",
    "implicit"), its port, the pid whose new descendants serve a
    connection, and how to restore the spool it serves."""

    def __init__(self, name: str, how: str, port: int, pid: int, restore):
        self.name, self.how, self.port, self.pid, self.restore = name, how, port, pid, restore


def popper_tls_config(host: harness.MailHost, certs: dict) -> pathlib.Path:
    path = host.base / "popper-tls.conf"
    path.write_text("set tls-server-cert-file = %s\nset tls-private-key-file = %s\n"
                    % (certs["cert"], certs["key"]))
    return path


def start_poppers(args, host, certs, corpus_path) -> tuple:
    """(servers, targets): popper plaintext, and over STLS and implicit TLS
    when this popper has TLS (else a note says why not)."""
    servers, targets = [], []

    def restore():
        for name in os.listdir(str(host.spool_dir)):
            (host.spool_dir / name).unlink()
        restore_file(corpus_path, host.spool)

    plain = harness.Server(args, host)
    servers.append(plain)
    targets.append(Target("popper, plaintext", "plain", plain.port, plain.pid, restore))
    if args.no_popper_tls:
        return servers, targets
    tls_conf = popper_tls_config(host, certs)
    for level, how, name in (("1", "stls", "popper, STLS (-l 1)"),
                             ("2", "implicit", "popper, TLS from the start (-l 2)")):
        try:
            server = harness.Server(args, host, extra=["-f", str(tls_conf), "-l", level])
        except SystemExit as exc:
            note("no %s: %s" % (name, str(exc).splitlines()[0][:300]))
            continue
        servers.append(server)
        targets.append(Target(name, how, server.port, server.pid, restore))
    return servers, targets


# --- one measured session ---------------------------------------------------------------

def server_cpu(pids) -> dict:
    """CPU seconds of each process, by "<name> (uid <uid>)": which part
    works (popper's session as the user, a relay as login-user; Dovecot's
    pop3-login and pop3)."""
    out = {}
    for pid in pids:
        try:
            name = pathlib.Path("/proc/%d/comm" % pid).read_text().strip()
            uid = pathlib.Path("/proc/%d/status" % pid).read_text().split("\nUid:")[1].split()[1]
        except (OSError, IndexError):
            continue
        key = "%s (uid %s)" % (name, uid)
        out[key] = out.get(key, 0.0) + (harness.cpu_seconds(pid) or 0.0)
    return out


def session(target: Target, context, count: int, args) -> dict:
    before = set(harness.descendants(target.pid))
    pop = harness.Pop3(target.port, args.timeout,
                       tls=context if target.how == "implicit" else None)
    try:
        if not pop.line().startswith(b"+OK"):
            raise ProtocolError("no greeting from %s" % target.name)
        if target.how == "stls":
            pop.stls(context)
        pop.ok(b"USER %s\r\n" % USER.encode())
        pop.ok(b"PASS %s\r\n" % PASSWORD.encode())
        words = pop.ok(b"STAT\r\n").split()
        if int(words[1]) != count:
            raise ProtocolError("%s: STAT %r, expected %d messages" % (target.name, words,
                                                                        count))
        cipher = pop.sock.cipher() if target.how != "plain" else None
        mine = [pid for pid in harness.descendants(target.pid) if pid not in before]
        cpu0, client0 = server_cpu(mine), time.process_time()
        octets = mismatches = 0
        t0 = time.perf_counter()
        for n in range(1, count + 1):
            pop.send(b"RETR %d\r\n" % n)
            status, got, _ = pop.multiline()
            announced = harness.octets_of(status)
            octets += announced
            mismatches += got != announced
        elapsed = time.perf_counter() - t0
        cpu1 = server_cpu(mine)
        by_process = {key: cpu1[key] - cpu0.get(key, 0.0) for key in cpu1}
        client = time.process_time() - client0
        harness.timed_quit(pop)         # QUIT, then the server's close
    finally:
        pop.close()
    return {"seconds": elapsed, "octets": octets, "mismatches": mismatches,
            "server_cpu": sum(by_process.values()), "server_cpu_by_process": by_process,
            "client_cpu": client, "processes": len(mine),
            "cipher": list(cipher) if cipher else None}


def wait_for_sessions_to_end(target: Target, before: set, seconds: float = 60) -> None:
    """The QUIT's write-back finishes before the next server is timed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [pid for pid in harness.descendants(target.pid) if pid not in before
                and harness.start_time(pid) is not None]:
            return
        time.sleep(0.02)


# --- the report -------------------------------------------------------------------------

def report(results: dict) -> str:
    f, m = results["corpus"], results["machine"]
    out = ["RETR of every message, one at a time: %d messages, %.1f MB (seed %d), "
           "%d rounds, interleaved" % (f["messages"], f["bytes"] / MB, f["seed"],
                                       results["rounds"]),
           "popper %s (%s), %s; %s; Python %s, %s x %s, Linux %s"
           % (results["popper"]["version"], results["popper"]["commit"],
              "native C extension" if results["popper"]["native"] else "pure Python",
              results["dovecot"], m["python"], m["cpus"], m["cpu"], m["kernel"]),
           "Dovecot's mbox and index %s; cipher: %s; load average at the start %s, at the end %s"
           % ("kept from session to session (--dovecot-warm)" if results["dovecot_warm"]
              else "fresh for each session", results["cipher"],
              "/".join("%.2f" % x for x in m["loadavg_start"]),
              "/".join("%.2f" % x for x in m["loadavg_end"])),
           ""]
    head = "%-38s %8s %8s %8s %9s %9s %9s"
    out.append(head % ("server", "MB/s", "min", "max", "us/msg", "server", "client"))
    out.append(head % ("", "median", "", "", "", "CPU s", "CPU s"))
    for name, s in results["summary"].items():
        out.append(head % (name, "%.0f" % s["mbps"]["median"], "%.0f" % s["mbps"]["min"],
                           "%.0f" % s["mbps"]["max"], "%.0f" % s["us_per_message"],
                           "%.2f" % s["server_cpu"], "%.2f" % s["client_cpu"]))
    out.append("")
    out.append("server CPU s by process (medians):")
    for name, s in results["summary"].items():
        out.append("  %-36s %s" % (name, ", ".join(
            "%s %.2f" % item for item in s["server_cpu_by_process"].items())))
    out.append("")
    out.append("MB/s: 10^6 octets (as the +OK lines announce them) per second; CPU s: "
               "medians over the rounds, of the RETRs only.  Octet mismatches: %d."
               % results["mismatches"])
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.tls", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5,
                        help="each server measured once a round (default 5)")
    parser.add_argument("--tls12", action="store_true",
                        help="TLS 1.2 with %s instead of TLS 1.3 with %s"
                             % (TLS12_CIPHER, TLS13_SUITE))
    parser.add_argument("--no-popper-tls", action="store_true",
                        help="popper plaintext only (a popper without TLS)")
    parser.add_argument("--no-dovecot", action="store_true", help="popper only")
    parser.add_argument("--dovecot-warm", action="store_true",
                        help="keep Dovecot's mbox and index from session to session "
                             "(pop3_no_flag_updates), instead of a fresh copy and index each")
    parser.add_argument("--pure", action="store_true",
                        help="popper with POPPER_PUREPYTHON=1")
    parser.add_argument("--source", type=pathlib.Path, default=harness.ROOT, metavar="DIR",
                        help="run `python3 -m popper` from this source tree")
    parser.add_argument("--settle", type=float, default=0.5, metavar="SECONDS",
                        help="sync, then wait this long before each session (default 0.5)")
    parser.add_argument("--out", type=pathlib.Path, default=harness.DEFAULT_OUT)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args(argv)
    # What harness.Server and harness.popper_env read.
    args.popper, args.server_mode, args.bulletins, args.cpu = None, False, 0, None
    args.source = args.source.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.tls12:
        pin_tls13(args.out)
    json_path = args.json or args.out / "tls.json"
    if not args.no_dovecot and not shutil.which("dovecot"):
        parser.error("no dovecot: run bench/deps.sh (Debian's dovecot-pop3d), or --no-dovecot")

    load_start = os.getloadavg()
    corpus_path, facts = harness.cached_corpus(args.out, args.messages, args.seed)
    host = harness.MailHost(args.tmpdir, args.source)
    certs = make_certificates(host.base / "certs")
    context = client_context(certs["ca"], args.tls12)
    servers, dovecot = [], None
    runs = {}
    try:
        servers, targets = start_poppers(args, host, certs, corpus_path)
        if not args.no_dovecot:
            dovecot = Dovecot(host, certs, args.dovecot_warm)
            if args.dovecot_warm:           # the index made, before anything is timed
                dovecot.restore(corpus_path)
                session(Target("Dovecot, warm-up", "plain", dovecot.plain_port, dovecot.pid,
                               None), context, facts["messages"], args)
            targets.append(Target("Dovecot, plaintext", "plain", dovecot.plain_port,
                                  dovecot.pid, lambda: dovecot.restore(corpus_path)))
            targets.append(Target("Dovecot, pop3s", "implicit", dovecot.tls_port,
                                  dovecot.pid, lambda: dovecot.restore(corpus_path)))
        for target in targets:
            runs[target.name] = []
        for rnd in range(args.rounds):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            for target in order:
                target.restore()
                harness.settle(args)
                before = set(harness.descendants(target.pid))
                run = session(target, context, facts["messages"], args)
                wait_for_sessions_to_end(target, before)
                runs[target.name].append(run)
                note("round %d, %-36s %7.1f MB/s  server CPU %.2f s  %s"
                     % (rnd + 1, target.name, run["octets"] / MB / run["seconds"],
                        run["server_cpu"], run["cipher"][0] if run["cipher"] else ""))
    finally:
        for server in servers:
            server.stop()
        if dovecot is not None:
            dovecot.stop()
        if args.keep_tmp:
            note("mail host left in %s" % host.base)
        else:
            host.remove()

    ciphers = {tuple(run["cipher"][:2]) for rs in runs.values() for run in rs if run["cipher"]}
    wanted = TLS12_CIPHER if args.tls12 else TLS13_SUITE
    if any(c[0] != wanted for c in ciphers):
        note("warning: ciphers other than %s were used: %s" % (wanted, sorted(ciphers)))
    summary = {}
    for name, rs in runs.items():
        mbps = [run["octets"] / MB / run["seconds"] for run in rs]
        summary[name] = {
            "mbps": {"median": statistics.median(mbps), "min": min(mbps), "max": max(mbps),
                     "all": mbps},
            "us_per_message": statistics.median(run["seconds"] for run in rs)
            / facts["messages"] * 1e6,
            "server_cpu": statistics.median(run["server_cpu"] for run in rs),
            "server_cpu_by_process": {
                key: statistics.median(run["server_cpu_by_process"].get(key, 0.0) for run in rs)
                for key in sorted({k for run in rs for k in run["server_cpu_by_process"]})},
            "client_cpu": statistics.median(run["client_cpu"] for run in rs)}
    info = harness.popper_facts(args)
    info["commit"] = harness.git_commit(args.source)
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": dict(harness.machine(), loadavg_start=load_start,
                        loadavg_end=os.getloadavg()),
        "popper": info,
        "dovecot": "Dovecot %s" % (dovecot.version() if dovecot else "not run"),
        "corpus": dict(facts, file=str(corpus_path)),
        "rounds": args.rounds,
        "dovecot_warm": args.dovecot_warm,
        "cipher": ", ".join("%s (%s)" % c for c in sorted(ciphers)) or "none",
        "mismatches": sum(run["mismatches"] for rs in runs.values() for run in rs),
        "summary": summary,
        "runs": runs,
    }
    return harness.save(results, report, json_path)


if __name__ == "__main__":
    sys.exit(main())
