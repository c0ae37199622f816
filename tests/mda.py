"""A mail delivery agent for the tests, locking as Debian's do.

It opens the spool for appending, takes an fcntl lock on it, then the
dot-lock <spool>.lock (O_EXCL, holding its pid), appends, fsyncs, and
unlocks -- the order Debian policy asks for (Postfix's local does this).
Like liblockfile it breaks a dot-lock that is older than five minutes or
names a process that no longer runs: after popper is killed, deliveries go
on at once, which is what the crash tests want.

As a program it delivers messages one after another, each logged (its
Message-ID and digest, once safely written) to a file:

    python mda.py SPOOL LOG COUNT [--prefix P] [--pause SECONDS] [--uid U --gid G]
"""

import argparse
import fcntl
import hashlib
import os
import random
import time

STALE = 300


def _dotlock_is_stale(path: str) -> bool:
    try:
        st = os.stat(path)
        text = open(path, "rb").read().decode("ascii", "replace")
    except OSError:
        return False
    if time.time() - st.st_mtime > STALE:
        return True
    pid = text.strip().split("@")[0]
    if not pid.isdigit() or int(pid) <= 1:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class MdaLock:
    """fcntl, then the dot-lock; __enter__ waits for both (the dot-lock up
    to `wait`, the fcntl lock as long as it takes -- or up to fcntl_wait)."""

    def __init__(self, spool, wait: float = 60, fcntl_wait: float = None):
        self.spool = str(spool)
        self.lock_path = self.spool + ".lock"
        self.wait = wait
        self.fcntl_wait = fcntl_wait
        self.fd = None

    def _lockf(self) -> None:
        if self.fcntl_wait is None:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
            return
        deadline = time.monotonic() + self.fcntl_wait
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (BlockingIOError, PermissionError):      # EAGAIN, EACCES: held
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise TimeoutError("fcntl lock on %s held too long" % self.spool) from None
                time.sleep(0.01)

    def __enter__(self):
        self.fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lockf()
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.write(fd, b"%d\n" % os.getpid())
                os.close(fd)
                return self
            except FileExistsError:
                if _dotlock_is_stale(self.lock_path):
                    try:
                        os.unlink(self.lock_path)
                    except FileNotFoundError:
                        pass
                    continue
                if time.monotonic() > deadline:
                    fcntl.lockf(self.fd, fcntl.LOCK_UN)
                    os.close(self.fd)
                    raise TimeoutError("dot-lock %s held too long" % self.lock_path)
                time.sleep(0.01)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)

    def __exit__(self, *exc_info):
        os.unlink(self.lock_path)
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def deliver(spool, data: bytes) -> None:
    with MdaLock(spool) as lock:
        lock.append(data)


def message(prefix: str, n: int, size: int = 2000) -> bytes:
    """A small message in mbox form, with Message-ID <prefix-n@mda.test>."""
    body = b"".join(b"line %d of message %s-%d\n" % (k, prefix.encode(), n)
                    for k in range(size // 30))
    return (b"From mda@test Thu Nov 26 14:34:16 2026\n"
            b"Received: from mda by test; Thu, 26 Nov 2026 14:34:16 +0000\n"
            b"Subject: delivered %s-%d\nMessage-ID: <%s-%d@mda.test>\n\n"
            % (prefix.encode(), n, prefix.encode(), n) + body + b"\n")


def digest(message: bytes) -> str:
    """A message's identity, whatever popper did to it: its header without
    the From line and the X-UIDL:/Status: lines popper writes, and its body."""
    header, _, body = message.partition(b"\n\n")
    lines = [line for line in header.split(b"\n")[1:]
             if not line.lower().startswith((b"x-uidl:", b"status:"))]
    return hashlib.md5(b"\n".join(lines) + b"\n\n" + body).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spool")
    parser.add_argument("log")
    parser.add_argument("count", type=int)
    parser.add_argument("--prefix", default="mda")
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--gid", type=int)
    args = parser.parse_args()
    if args.gid is not None:
        os.setgroups([])
        os.setgid(args.gid)
    if args.uid is not None:
        os.setuid(args.uid)
    rng = random.Random(os.getpid())
    with open(args.log, "a") as log:
        for n in range(args.count):
            data = message(args.prefix, n, rng.randrange(500, 20000))
            deliver(args.spool, data)
            # The spool keeps the message without the blank line that ends it.
            log.write("%s-%d@mda.test %s\n" % (args.prefix, n, digest(data[:-1])))
            log.flush()
            time.sleep(rng.uniform(0, args.pause))


if __name__ == "__main__":
    main()
