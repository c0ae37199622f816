"""make demo: a demo mailbox served by a standalone popper on 127.0.0.1.

Makes a spool with 20 messages for the user "demo" (password "demo"), a
user database, a self-signed certificate for 127.0.0.1 and localhost (STLS
is offered) and a config file under --dir, prints how to fetch the mail
with curl, in clear text and over STLS, and runs popper in the foreground
until Ctrl-C.
"""

import argparse
import importlib.util
import os
import pathlib
import pwd
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/popper-demo")
    parser.add_argument("--port", type=int, default=1110)
    parser.add_argument("--popper", default="popper", help="the popper program to run")
    args = parser.parse_args()

    spec = importlib.util.spec_from_file_location("corpus", ROOT / "bench" / "corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    from popper.auth import cryptpw    # the installed popper, for crypt

    base = pathlib.Path(args.dir)
    shutil.rmtree(base, ignore_errors=True)
    spool_dir = base / "spool"
    spool_dir.mkdir(parents=True)
    os.chmod(base, 0o755)
    os.chmod(spool_dir, 0o1777)
    if os.geteuid() == 0:               # popper drops root: serve the demo user as nobody
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    else:
        uid, gid = os.getuid(), os.getgid()
    spool = spool_dir / "demo"
    corpus.write_mbox(str(spool), 20, seed=2026)
    os.chown(spool, uid, gid)
    os.chmod(spool, 0o600)
    users = base / "users"
    users.write_text("demo:%s:%d:%d::%s:/bin/sh\n"
                     % (cryptpw.crypt(b"demo", b"$6$popperdemo$").decode(), uid, gid, base))
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    config = base / "popper.conf"
    config.write_text("set userdb = %s\nset spool-dir = %s\nset statistics\n"
                      "set tls-support = STLS\nset tls-server-cert-file = %s\n"
                      "set tls-private-key-file = %s\n" % (users, spool_dir, cert, key))
    url = "pop3://127.0.0.1:%d" % args.port
    print("popper demo: 20 messages for user demo (password demo) in %s" % spool, flush=True)
    print("  list them:     curl -sS %s/ -u demo:demo" % url)
    print("  read one:      curl -sS %s/1 -u demo:demo" % url)
    print("  their UIDs:    curl -sS -X UIDL %s/ -u demo:demo" % url)
    print("  delete one:    curl -sS -X DELE -I %s/1 -u demo:demo" % url)
    print("  over STLS:     curl -sS --ssl-reqd --cacert %s %s/1 -u demo:demo" % (cert, url))
    print("Serving on 127.0.0.1:%d; Ctrl-C stops." % args.port, flush=True)
    command = [args.popper, "-f", str(config), "-R", "127.0.0.1:%d" % args.port]
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
