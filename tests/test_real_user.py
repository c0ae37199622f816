"""One real user, as root: made with useradd, logging in over TCP through
the real PAM stack (a service file that includes Debian's common-auth and
common-account) and through the Unix back-end (pam_unix and popper both
read /etc/shadow), with USER/PASS and with SASL PLAIN and LOGIN, the
serving process seen from /proc to run as the user.
Everything it makes it removes.  In the pure environment PAM goes through
python-pam, in the native one through popper._cpam."""

import base64
import os
import pathlib
import pwd
import re
import secrets
import shutil
import subprocess
import sys

import pytest

import popper
from conftest import IS_ROOT, corpus, process_ids, start_inetd

pytestmark = [pytest.mark.root, pytest.mark.clients, pytest.mark.twin, pytest.mark.skipif(
    not IS_ROOT or not shutil.which("useradd") or not os.path.isdir("/etc/pam.d")
    or not os.path.exists("/etc/pam.d/common-auth"),
    reason="needs root, useradd and Debian's /etc/pam.d/common-auth")]


@pytest.fixture
def real_user(mailhost):
    name = "poptest%s" % secrets.token_hex(3)
    password = "pw-" + secrets.token_hex(6)
    subprocess.run(["useradd", "-M", "-d", str(mailhost.base), "-s", "/usr/sbin/nologin",
                    "-U", name], check=True)
    service = pathlib.Path("/etc/pam.d/popper-test-%s" % secrets.token_hex(3))
    try:
        subprocess.run(["chpasswd"], input="%s:%s\n" % (name, password),
                       universal_newlines=True, check=True)
        service.write_text("@include common-auth\n@include common-account\n")
        entry = pwd.getpwnam(name)
        mailhost.deliver(corpus.mbox_bytes(list(corpus.messages(3, seed=81))), user=name)
        os.chown(mailhost.spool(name), entry.pw_uid, entry.pw_gid)
        yield name, password, entry, service.name
    finally:
        if service.exists():
            service.unlink()
        subprocess.run(["userdel", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["pam", "unix"])
def test_a_real_user_logs_in_over_tcp_and_is_served_as_itself(mailhost, real_user, tcp_inetd,
                                                               backend):
    name, password, entry, service = real_user
    extra = ["set pam-service = %s" % service] if backend == "pam" else []
    mailhost.write_config(*extra, userdb=False)
    server = tcp_inetd()
    conv = server.connect()
    assert conv.login(name, password).startswith(b"+OK %s has 3 visible messages"
                                                 % name.encode())
    ids = process_ids(server.processes[-1].pid)
    assert ids["Uid"] == [str(entry.pw_uid)] * 4
    assert ids["Gid"] == [str(entry.pw_gid)] * 4
    assert os.stat(mailhost.temp_drop(name)).st_uid == entry.pw_uid
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()
    conv = server.connect()
    assert conv.login(name, "wrong").startswith(
        b'-ERR [AUTH] Password supplied for "%s" is incorrect.' % name.encode())
    conv.close()


@pytest.mark.parametrize("backend", ["pam", "unix"])
def test_sasl_plain_and_login_through_pam_and_unix(mailhost, real_user, tcp_inetd, backend):
    """AUTH PLAIN and LOGIN are PASS's check, whatever the back-end."""
    name, password, entry, service = real_user
    extra = ["set pam-service = %s" % service] if backend == "pam" else []
    mailhost.write_config(*extra, userdb=False)
    server = tcp_inetd()
    conv = server.connect()
    credentials = base64.b64encode(("\0%s\0%s" % (name, password)).encode()).decode()
    assert conv.cmd("AUTH PLAIN " + credentials).startswith(
        b"+OK %s has 3 visible messages" % name.encode())
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()
    conv = server.connect()
    assert conv.cmd("AUTH LOGIN " + base64.b64encode(name.encode()).decode()).startswith(b"+ ")
    assert conv.cmd(base64.b64encode(password.encode()).decode()).startswith(
        b"+OK %s has 3 visible messages" % name.encode())
    assert process_ids(server.processes[-1].pid)["Uid"] == [str(entry.pw_uid)] * 4
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()


def test_qpopper_options_are_read_as_the_user(mailhost, real_user, tcp_inetd):
    """-u: the user's ~/.qpopper-options is read after the login as the
    user -- a file owned by the user is believed only by a process that is
    the user (files.unfit) -- and a hard link to it is not."""
    name, password, entry, _ = real_user
    options = mailhost.base / ".qpopper-options"
    options.write_text("set announce-expire = 30\n")
    os.chown(str(options), entry.pw_uid, entry.pw_gid)
    options.chmod(0o600)
    mailhost.write_config("set user-options", userdb=False)
    server = tcp_inetd()
    conv = server.connect()
    assert conv.login(name, password).startswith(b"+OK")
    conv.send(b"CAPA\r\n")
    assert conv.line() == b"+OK Capability list follows"
    assert b"EXPIRE 30" in conv.multiline()
    conv.close()
    os.link(str(options), str(mailhost.base / "second"))
    conv = server.connect()
    assert conv.login(name, password).startswith(b"+OK")
    conv.send(b"CAPA\r\n")
    conv.line()
    assert not any(line.startswith(b"EXPIRE") for line in conv.multiline())
    conv.close()


# Every system call that names a path, and the ones that change identity.
TRACED = ("setresuid,setresgid,setgroups,open,openat,creat,link,linkat,unlink,unlinkat,"
          "mkdir,mkdirat,rename,renameat,renameat2,chmod,fchmodat,chown,fchownat,"
          "symlink,symlinkat,truncate,stat,newfstatat,lstat,access,faccessat,faccessat2")
PATH_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def writable_by(directory: str, entry) -> bool:
    """Whether the user could change what is in this directory."""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return bool(st.st_mode & 0o002 or (st.st_uid == entry.pw_uid and st.st_mode & 0o200)
                or (st.st_gid in groups and st.st_mode & 0o020))


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
def test_nothing_in_a_directory_the_user_can_write_is_touched_as_root(mailhost, real_user,
                                                                      tmp_path):
    """strace the whole session: every path named before the setresuid to
    the user lies in a directory the user cannot write, and the spool is
    named only after it."""
    name, password, entry, _ = real_user
    mailhost.write_config(userdb=False)
    trace = tmp_path / "trace"
    conv = start_inetd(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=" + TRACED,
                        *mailhost.command()])
    try:
        assert conv.login(name, password).startswith(b"+OK")
        assert conv.cmd("DELE 1").startswith(b"+OK")
        assert conv.cmd("QUIT").startswith(b"+OK")
    finally:
        conv.close()
    lines = trace.read_text().splitlines()
    become = re.compile(r"setresuid\(%d, %d, %d\)\s+= 0$" % ((entry.pw_uid,) * 3))
    switch = next(i for i, line in enumerate(lines) if become.search(line))
    as_root = [path for line in lines[:switch] for path in PATH_ARG.findall(line)
               if path.startswith("/")]
    assert as_root, "the trace names no path: strace saw nothing"
    # The interpreter resolves the directories it and popper are installed
    # in (Python 3.6 lstat()s each one): where they are is the
    # administrator's choice, and a checkout under /tmp is not popper's doing.
    installed = set()
    for where in (sys.prefix, sys.base_prefix, os.path.dirname(popper.__file__)):
        while where not in ("/", ""):
            installed.add(where)
            where = os.path.dirname(where)
    touched = [p for p in as_root if p not in installed
               and writable_by(os.path.dirname(p.rstrip("/")) or "/", entry)]
    assert touched == []
    inside_spool_dir = str(mailhost.spool_dir) + "/"        # its own group is looked at
    assert not any(p.startswith(inside_spool_dir) for p in as_root)
    assert any(inside_spool_dir in line for line in lines[switch:])
