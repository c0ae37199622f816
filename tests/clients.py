"""Helpers for test_clients.py: what popper should send for a spool message,
what it should leave in the spool, how an MDA appends mail, and how each
real POP3 client (curl, fetchmail, getmail6, mpop) is run headless.

A message as RETR sends it (Qpopper's rules, docs in /work/shared/spec):
the stored message with "X-UIDL: <uid>" inserted before its first Status:
line, or at the end of the header when there is none, and with old
X-UIDL:/Content-Length: header lines dropped (corpus mail has none).
At QUIT a kept message is written back as: its From line, "X-UIDL: <uid>",
the header, "Status: RO" (retrieved) or "Status: U" (not) before the blank
line when it had no Status: line, the body, the blank line.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

CLIENT_TIMEOUT = 180        # seconds for one client run (a hang; under load getmail took > 60)

_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>\n]*)>$", re.MULTILINE | re.IGNORECASE)


# --- what popper sends and stores --------------------------------------------------

def split_header(data: bytes):
    """(header lines including the last LF, body after the blank line)."""
    end = data.index(b"\n\n")
    return data[:end + 1], data[end + 2:]


def header_lines(data: bytes) -> list:
    return split_header(data)[0].splitlines(keepends=True)


def with_uidl(data: bytes, uid: bytes) -> bytes:
    """The message as RETR sends it (LF line ends, dots unstuffed)."""
    lines = header_lines(data)
    at = next((i for i, line in enumerate(lines) if line.lower().startswith(b"status:")),
              len(lines))
    lines.insert(at, b"X-UIDL: " + uid + b"\n")
    return b"".join(lines) + b"\n" + split_header(data)[1]


def with_status(data: bytes, status: bytes) -> bytes:
    """The message with the Status: line popper adds at QUIT."""
    header, body = split_header(data)
    return header + b"Status: " + status + b"\n\n" + body


def strip_uidl(data: bytes):
    """(uid, message without the one X-UIDL: line popper inserted).  Fails
    unless there is exactly one, and exactly where popper puts it."""
    found = [line for line in header_lines(data) if line.lower().startswith(b"x-uidl:")]
    assert len(found) == 1, "want one X-UIDL: header line, got %r in\n%r" % (
        found, split_header(data)[0])
    uid = found[0][len(b"X-UIDL: "):-1]
    header, body = split_header(data)
    stripped = header.replace(found[0], b"", 1) + b"\n" + body
    assert with_uidl(stripped, uid) == data, "X-UIDL: line in the wrong place:\n%r" % header
    return uid, stripped


def from_wire(data: bytes) -> bytes:
    """CRLF -> LF, insisting that the server sent no bare LF."""
    assert data.count(b"\n") == data.count(b"\r\n"), "bare LF in %r..." % data[:200]
    return data.replace(b"\r\n", b"\n")


def message_id(data: bytes) -> bytes:
    ids = _MESSAGE_ID.findall(split_header(data)[0])
    assert len(ids) == 1, "want one Message-ID in\n%r" % split_header(data)[0]
    return ids[0]


def rewritten(msg, uid: bytes, seen: bool) -> bytes:
    """A kept message as QUIT writes it back to the spool."""
    header, body = split_header(msg.data)
    return (msg.envelope + b"X-UIDL: " + uid + b"\n" + header
            + (b"Status: RO\n" if seen else b"Status: U\n") + b"\n" + body + b"\n")


def spool_message_ids(spool: bytes) -> list:
    return _MESSAGE_ID.findall(spool)


def check_downloads(outputs: list, expected: dict, transform=None) -> dict:
    """outputs: messages as a client delivered them (LF line ends).
    expected: Message-ID -> the bytes popper should have sent, less the
    X-UIDL: line.  transform([retr_bytes, ...]) models what the client
    itself does to messages.  Returns Message-ID -> UID."""
    got = {}
    for out in outputs:
        mid = message_id(out)
        assert mid not in got, "message %r delivered twice" % mid
        got[mid] = out
    assert sorted(got) == sorted(expected), (
        "missing %r, unexpected %r" % (sorted(set(expected) - set(got)),
                                       sorted(set(got) - set(expected))))
    uids = {}
    for mid, out in got.items():
        if transform is None:
            uid, stripped = strip_uidl(out)
            assert stripped == expected[mid], "message %r differs:\n%s" % (
                mid, first_difference(stripped, expected[mid]))
        else:
            found = re.findall(rb"^X-UIDL: (.*)\n", split_header(out)[0], re.MULTILINE)
            assert len(found) == 1, "want one X-UIDL: line in %r" % split_header(out)[0]
            uid = found[0]
        uids[mid] = uid
    if transform is not None:
        mids = sorted(got)
        wants = transform([with_uidl(expected[mid], uids[mid]) for mid in mids])
        for mid, want in zip(mids, wants):
            assert got[mid] == want, "message %r differs:\n%s" % (
                mid, first_difference(got[mid], want))
    assert len(set(uids.values())) == len(uids), "UIDs are not unique: %r" % uids
    return uids


def first_difference(got: bytes, want: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return "lengths %d / %d; first difference at %d:\n got  %r\n want %r" % (
        len(got), len(want), at, got[max(0, at - 80):at + 80], want[max(0, at - 80):at + 80])


def read_outputs(directory: pathlib.Path) -> list:
    return [path.read_bytes() for path in sorted(directory.iterdir())]


# --- an MDA appending to the spool -------------------------------------------------

# --- running the clients ------------------------------------------------------------

def need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.skip("%s is not installed (tests/deps.sh installs it)" % binary)
    return path


def client_env(home: pathlib.Path) -> dict:
    """No proxies, no user configuration: HOME is a scratch directory."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(home), LC_ALL="C", LANG="C")
    return env


def run(command: list, home: pathlib.Path, ok=(0,), extra_env=None) -> subprocess.CompletedProcess:
    env = client_env(home)
    env.update(extra_env or {})
    try:
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=home, timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("%s timed out after %ds\nstdout: %s\nstderr: %s" % (
            command[0], CLIENT_TIMEOUT, exc.stdout, exc.stderr))
    assert result.returncode in ok, "%s exited %d\nstdout: %s\nstderr: %s" % (
        command, result.returncode, result.stdout.decode("latin-1")[-4000:],
        result.stderr.decode("latin-1")[-4000:])
    return result


def file_mda(outdir: pathlib.Path) -> str:
    """A shell command that stores standard input in a new file in outdir."""
    assert not re.search(r"[^\w/.-]", str(outdir)), outdir
    return "cat > $(mktemp %s/msg.XXXXXXXX)" % outdir


def curl_retr_all(port: int, count: int, outdir: pathlib.Path, work: pathlib.Path,
                  user="alice", password="secret") -> subprocess.CompletedProcess:
    """RETR 1..count with one curl: a URL glob, one connection reused."""
    return run([need("curl"), "-q", "-sS", "--noproxy", "*", "-u", "%s:%s" % (user, password),
                "pop3://127.0.0.1:%d/[1-%d]" % (port, count), "-o", "%s/#1.eml" % outdir],
               work)


def fetchmail(port: int, outdir: pathlib.Path, work: pathlib.Path, keep=True, uidl=True,
              user="alice", password="secret", ok=(0,)) -> subprocess.CompletedProcess:
    """One poll with an rc file of mode 600 and an MDA writing files.
    Exit status 0 = mail fetched, 1 = no new mail."""
    binary = need("fetchmail")
    rc = work / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        'poll "127.0.0.1" with proto POP3 port %d %s auth password timeout 30\n'
        '  user "%s" there with password "%s" is "root" here\n'
        "  options %s no rewrite sslproto ''\n"
        '  mda "%s"\n' % (port, "uidl" if uidl else "no uidl", user, password,
                          "keep" if keep else "no keep", file_mda(outdir)))
    os.chmod(rc, 0o600)
    return run([binary, "-v", "-f", str(rc), "--idfile", str(work / "fetchmail.ids"),
                "--pidfile", str(work / "fetchmail.pid"), "--invisible"],
               work, ok=ok, extra_env={"FETCHMAILHOME": str(work)})


def getmail(port: int, outdir: pathlib.Path, work: pathlib.Path, read_all=True,
            user="alice", password="secret") -> subprocess.CompletedProcess:
    binary = need("getmail")
    rc = work / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %d\n"
        "username = %s\npassword = %s\n"
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        "arguments = (\"-c\", \"%s\")\nallow_root_commands = true\n"
        "[options]\nread_all = %s\ndelete = false\n"
        "delivered_to = false\nreceived = false\nverbose = 2\n"
        % (port, user, password, file_mda(outdir),
           "true" if read_all else "false"))
    return run(getmail_interpreter() + ["-c", _GETMAIL_REAPS_ITS_CHILD, binary,
                                        "--rcfile", str(rc), "--getmaildir", str(work)], work)


# getmail6 before 6.19 (Debian 12 has 6.18.11) sets its SIGCHLD handler
# after fork(): an MDA that exits before it is set is never reaped, and
# getmail waits out its timeout (getmail6/getmail6#52, #226, #245).  Under
# load about one run in twenty hung so.  getmail runs here with that wait
# done as upstream now does it, by waiting for the child itself; everything
# else is getmail's own code.
_GETMAIL_REAPS_ITS_CHILD = r"""
import os, runpy, sys
from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError

def _wait_for_child(self, childpid):
    pid, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError('child pid %d killed by signal %d'
                                    % (pid, os.WTERMSIG(status)))
    return os.WEXITSTATUS(status)

baseclasses.ForkingBase._prepare_child = lambda self: None
baseclasses.ForkingBase._wait_for_child = _wait_for_child
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def getmail_interpreter() -> list:
    """The #! line of getmail's program: its own interpreter."""
    with open(need("getmail"), "rb") as f:
        first = f.readline()
    return first[2:].decode().split() if first.startswith(b"#!") else ["python3"]


def getmail_oldmail_uids(work: pathlib.Path) -> set:
    """The UIDs getmail recorded, as the server sent them (getmail stores
    a "/" in a UID as "-": SimplePOP3Retriever's _getmsglist)."""
    files = list(work.glob("oldmail-*"))
    assert len(files) == 1, files
    return {line.split(b"\0")[0] for line in files[0].read_bytes().splitlines() if line}


def mpop(port: int, outdir: pathlib.Path, work: pathlib.Path, only_new=False,
         user="alice", password="secret") -> subprocess.CompletedProcess:
    return run([need("mpop"), "--host=127.0.0.1", "--port=%d" % port, "--user=%s" % user,
                "--passwordeval=echo '%s'" % password, "--auth=user", "--tls=off",
                "--keep=on", "--only-new=%s" % ("on" if only_new else "off"),
                "--received-header=off", "--uidls-file=%s" % (work / "mpop.uidls"),
                "--delivery=mda,%s" % file_mda(outdir), "--timeout=30", "-d"], work)


def mpop_uids(work: pathlib.Path) -> set:
    """The UIDs in mpop's file: after comment lines, " <count> <host> <user>"
    and then <count> UIDs, one a line (a UID may start with "#")."""
    lines = (work / "mpop.uidls").read_bytes().split(b"\n")
    at = next(i for i, line in enumerate(lines) if line.startswith(b" "))
    count = int(lines[at].split()[0])
    assert lines[at].split()[1:] == [b"127.0.0.1", b"alice"], lines[at]
    uids = lines[at + 1:at + 1 + count]
    assert len(uids) == count and not any(line.startswith(b" ") for line in uids)
    return set(uids)


# --- getmail's own rewriting -------------------------------------------------------

_GETMAIL_FLATTEN = r"""
import sys
from getmailcore.message import Message
data = sys.stdin.buffer.read()
out = sys.stdout.buffer
while data:
    size, _, data = data.partition(b"\n")
    size = int(size)
    msg, data = data[:size], data[size:]
    # What getmail's POP3 retriever does: poplib's lines, plus an empty one.
    flat = Message(fromlines=msg.split(b"\n")[:-1] + [b""]).flatten(False, False)
    out.write(b"%d\n" % len(flat) + flat)
"""


def getmail_flatten(messages: list) -> list:
    """What getmail6 hands its MDA for each message popper sent (LF line
    ends): getmail re-generates every message with the email package
    (Return-Path moved first, long headers refolded), so the expected bytes
    are computed by getmail's own Message class, run by getmail's own
    interpreter.  (delivered_to and received are off in the rc file.)"""
    interpreter = getmail_interpreter()
    payload = b"".join(b"%d\n" % len(m) + m for m in messages)
    result = subprocess.run(interpreter + ["-c", _GETMAIL_FLATTEN], input=payload,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLIENT_TIMEOUT)
    if result.returncode:
        pytest.skip("cannot run getmail's Message class: %s" % result.stderr.decode()[-500:])
    out, data = [], result.stdout
    while data:
        size, _, data = data.partition(b"\n")
        out.append(data[:int(size)])
        data = data[int(size):]
    assert len(out) == len(messages)
    return out
