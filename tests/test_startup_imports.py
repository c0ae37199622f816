"""What an inetd session imports, and when (docs/architecture.md,
"Start-up"): before the greeting only what the greeting needs -- none of
the heavy modules below, and no pure twin's machinery (ctypes) on the
native path -- and, as root, everything the session uses before it
becomes the user: a session served as the user may not be able to read
the interpreter's files, so a late import there would fail.  The moments
are seen from inside the real program by tests/importprobe.py.  Timings
are bench/startup.py's; this holds the module sets, which do not vary."""

import base64
import os
import signal
import socket
import subprocess
import sys
import sysconfig

import pytest

from conftest import IS_ROOT, ROOT, Conversation, corpus, free_port, start_inetd, wait_for_port

import popper.native
from popper import deferred, server

PROBE = str(ROOT / "tests" / "importprobe.py")
# The library the tests import popper from (the checkout, or what tox installed).
LIBRARY = os.path.dirname(os.path.dirname(popper.native.__file__))

# Loaded by the session after its greeting (server.serve), never before.
AFTER_GREETING = {
    "email", "email.message", "hashlib", "hmac", "_hashlib", "ssl", "getopt", "gettext", "re",
    "traceback", "ctypes", "_ctypes", "ctypes.util", "subprocess", "tempfile", "shutil",
    "popper.extensions.mangle", "popper.auth.sasl", "popper.auth.apop",
    "popper.auth.gatekeeper", "popper.auth.cryptpw", "popper.auth.unix",
    "popper.auth.userdb", "popper.auth.pam", "popper.ndbm", "popper.maildrop",
    "popper.maildrop.scan", "popper.bulletins", "popper.bulldb", "popper.logindelay",
    "popper.transport.standalone", "popper.transport.tls", "popper.protocol.session",
    "popper.protocol.lines", "popper.extensions", "popper.privsep", "importlib", "warnings",
    # the session's half of the start: server.serve and the session loop
    "popper.server", "popper.transport.connection",
    # cffi's backend and the C extension: the session's (greeting.login_identity asks pwd)
    "_cffi_backend", "popper.native", "popper._cpopper", "popper._cpam", "popper.auth.unixdb",
    # socket.py and signal.py (enum, selectors, collections), the idna codec (re, unicodedata)
    "socket", "signal", "enum", "selectors", "collections", "functools", "encodings.idna",
    "unicodedata"}

MAIL = (b"From a@example.com Mon Jan  1 00:00:00 2001\nFrom: a@example.com\nSubject: hi\n"
        b"Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
        b"Content-Type: text/plain; charset=iso-8859-2\n\nAhoj\n--b\n"
        b"Content-Type: image/jpeg; name=\"x.jpg\"\nContent-Transfer-Encoding: base64\n\n"
        b"AAAA\n--b--\n\n")


def probed(mailhost, tmp_path, commands, pure: bool, bare: bool = False):
    """Run one inetd session through the probe: {(moment, uid): [modules]}
    (a set per process), and the replies; a command ending in "..." has
    a multi-line reply.  bare: without site.py, as the launcher runs popper
    (-S: a site's .pth files may import what popper must not)."""
    out = tmp_path / "probe"
    env = dict(os.environ, IMPORT_PROBE=str(out))
    env.pop("POPPER_PUREPYTHON", None)
    if pure:
        env["POPPER_PUREPYTHON"] = "1"
    python = [sys.executable]
    if bare:
        python.append("-S")
        paths = sysconfig.get_paths()
        env["PYTHONPATH"] = os.pathsep.join(
            [LIBRARY, paths["purelib"], paths["platlib"]] + sys.path[1:])
    conv = start_inetd(python + [PROBE] + mailhost.command()[3:], env=env)
    replies = [conv.greeting]
    for line in commands:
        replies.append(conv.cmd(line.rstrip(".")))
        if line.endswith("...") and replies[-1].startswith(b"+OK"):
            conv.multiline()
    conv.close()
    moments = {}
    for line in out.read_text().splitlines():
        moment, pid, uid, modules = line.split(" ", 3)
        moments.setdefault((moment, int(uid)), []).append(set(modules.split(",")))
    return moments, replies


# Each back-end: cli's start-up warnings check it before every greeting
# (Settings.backend_problems), which must not load it.
BACKENDS = {"userdb": {}, "unix": {"userdb": False},
            "pam": {"userdb": False, "extra": ["set pam-service = pop3"]}}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("pure", [False, True], ids=["native", "pure"])
def test_the_greeting_imports_nothing_heavy(mailhost, tmp_path, pure, backend):
    if not pure and not popper.native.BUILT:
        pytest.skip("the C extension is not built")
    config = BACKENDS[backend]
    mailhost.write_config(*config.get("extra", []), userdb=config.get("userdb", True))
    moments, replies = probed(mailhost, tmp_path, ["QUIT"], pure)
    assert replies[0].startswith(b"+OK") and replies[1].startswith(b"+OK")
    (at_start,) = [sets[0] for (moment, _), sets in moments.items() if moment == "start"]
    (at_greeting,) = [sets[0] for (moment, _), sets in moments.items() if moment == "greeting"]
    assert sorted((at_greeting - at_start) & AFTER_GREETING) == []
    if not pure:        # the C twins in use: none of the pure twins' machinery at all
        ends = set().union(*[s for (moment, _), sets in moments.items() for s in sets])
        assert sorted((ends - at_start) & {"ctypes", "_ctypes", "ctypes.util"}) == []


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="becoming the user needs root")
@pytest.mark.parametrize("pure", [False, True], ids=["native", "pure"])
def test_nothing_is_imported_after_becoming_the_user(mailhost, tmp_path, pure):
    """A session that uses every command group: what its processes have
    when they become nobody (the login process) or the user is all they
    ever load."""
    mailhost.deliver(MAIL + corpus.mbox_bytes(list(corpus.messages(3, seed=7))))
    commands = ["CAPA...", "USER alice", "PASS secret", "STAT", "LIST...", "UIDL...",
                "LIST 1 x-mangle", "RETR 1 X-MANGLE(TEXT=PLAIN)...", "TOP 2 0...",
                "XTND XLST subject 1...", "MDEF plain(x-mangle(text=plain))", "RETR 1 plain...",
                "NOOP", "BOGUS", "LAST", "DELE 3", "RSET", "DELE 2", "QUIT"]
    moments, replies = probed(mailhost, tmp_path, commands, pure)
    assert replies[3].startswith(b"+OK alice has 4 visible messages"), replies
    assert replies[-1].startswith(b"+OK Pop server at"), replies
    failed = [(command, reply) for command, reply in zip(commands, replies[1:])
              if not reply.startswith(b"+OK")]
    assert failed == [("BOGUS", b'-ERR Unknown command: "bogus".')]
    uids = {uid for moment, uid in moments if moment == "become"}
    assert len(uids) == 2, moments.keys()            # nobody's login process, alice's session
    # Where every user can import the interpreter's and popper's modules
    # (deferred.readable_by_all), nothing is read ahead and the user's
    # session imports what it runs; else only what was read ahead.
    open_to_all = deferred.readable_by_all(server.READ_AHEAD)
    for uid in uids:
        (became,), (ended,) = moments[("become", uid)], moments[("end", uid)]
        (held,) = moments[("held", uid)]       # read before, run from memory (popper/deferred.py)
        late = ended - became - held - set(sys.builtin_module_names)
        if open_to_all:
            assert held == {""} or not held, held
            assert late <= set(server.READ_AHEAD), sorted(late - set(server.READ_AHEAD))
        else:
            assert sorted(late) == [], uid
    # X-MANGLE's mangler was read ahead (where it must be) and run only by
    # the session that mangled.
    if not open_to_all:
        assert "popper.extensions.mangle" in moments[("held", min(uids))][0], "read ahead"
    # Nor, before it becomes the user, what no session needs: OpenSSL's
    # hashes (digests.py computes MD5 and HMAC; SCRAM's PBKDF2 loads
    # hashlib when it runs) and the traceback module (log.trace).  (What
    # was read ahead may import them when it runs.)  Python 3.6's threading
    # imports traceback, and its random hashlib.
    became = set().union(*[s for (moment, _), sets in moments.items() if moment == "become"
                           for s in sets])
    if sys.version_info >= (3, 7):
        assert sorted(became & {"_hashlib", "hashlib", "hmac", "traceback"}) == []


# What a session that only logs in and downloads never imports: the
# regular expressions and enum (base64.py imports them), signal.py, socket.py,
# importlib and warnings -- some 3 ms of every inetd connection.  The mangler and XMIT, which need
# them, have them read ahead (server.READ_AHEAD).
PLAIN_SESSION_NEVER = {"re", "enum", "base64", "signal", "socket", "selectors", "email",
                       "subprocess", "tempfile", "traceback", "importlib", "warnings"}


@pytest.mark.parametrize("pure", [False, True], ids=["native", "pure"])
def test_a_plain_session_imports_no_regular_expressions(mailhost, tmp_path, pure):
    if not pure and not popper.native.BUILT:
        pytest.skip("the C extension is not built")
    mailhost.deliver(corpus.mbox_bytes(list(corpus.messages(3, seed=7))))
    plain = base64.b64encode(b"\0alice\0secret").decode()
    commands = ["CAPA...", "AUTH PLAIN !!!!", "AUTH PLAIN " + plain, "STAT", "LIST...",
                "UIDL...", "RETR 1...", "TOP 2 0...", "LAST", "DELE 1", "NOOP", "QUIT"]
    moments, replies = probed(mailhost, tmp_path, commands, pure, bare=True)
    assert replies[2].startswith(b"-ERR") and replies[3].startswith(b"+OK"), replies
    assert [r for r in replies[4:] if not r.startswith(b"+OK")] == [], replies
    (at_start,) = [sets[0] for (moment, _), sets in moments.items() if moment == "start"]
    assert sorted(at_start & PLAIN_SESSION_NEVER) == []     # else this test cannot fail
    ends = [s for (moment, _), sets in moments.items() if moment == "end" for s in sets]
    assert len(ends) == 1 + IS_ROOT, moments.keys()     # as root: the login process too
    # Less what threading itself loads on this Python (3.6's imports
    # traceback, so re): the maildrop runs work beside the session in a
    # thread where there are threads (SCO's Python has none).
    threads = subprocess.run([sys.executable, "-S", "-c", "import sys; before = set(sys.modules); "
                              "import threading; print(' '.join(set(sys.modules) - before))"],
                             stdout=subprocess.PIPE, check=True).stdout.decode().split()
    for ended in ends:
        assert sorted(ended & PLAIN_SESSION_NEVER - set(threads)) == []


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="a login process exists only as root")
def test_a_standalone_session_imports_nothing_the_listener_had_not(mailhost, tmp_path):
    """The standalone listener loads what every session needs once, before
    it listens: a session process (and its login process) forked from it
    imports nothing, whatever the session does -- each import there is paid
    again by every connection."""
    mailhost.deliver(MAIL + corpus.mbox_bytes(list(corpus.messages(3, seed=7))))
    out = tmp_path / "probe"
    env = dict(os.environ, IMPORT_PROBE=str(out))
    env.pop("POPPER_PUREPYTHON", None)
    port = free_port()
    listener = subprocess.Popen([sys.executable, PROBE] + mailhost.command()[3:]
                                + ["127.0.0.1:%d" % port], env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, listener)
        conv = Conversation(socket.create_connection(("127.0.0.1", port)))
        commands = ["CAPA...", "USER alice", "PASS secret", "LIST 1 x-mangle",
                    "RETR 1 X-MANGLE(TEXT=PLAIN)...", "XTND XLST subject 1...",
                    "MDEF plain(x-mangle(text=plain))", "UIDL...", "DELE 2", "QUIT"]
        for line in commands:
            reply = conv.cmd(line.rstrip("."))
            assert reply.startswith(b"+OK"), (line, reply)
            if line.endswith("..."):
                conv.multiline()
        conv.close()
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.communicate(timeout=30)
    records = {}
    for line in out.read_text().splitlines():
        moment, pid, _, modules = line.split(" ", 3)
        records.setdefault(int(pid), {})[moment] = set(modules.split(","))
    forked = {pid: moments for pid, moments in records.items() if "fork" in moments}
    assert len(forked) >= 4, records.keys()     # the probe's session and ours, each with its login process
    for pid, moments in forked.items():
        assert sorted(moments["end"] - moments["fork"]) == [], pid
