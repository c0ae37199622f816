"""One real user, as root: made with useradd, logging in over TCP through
the real PAM stack (a service file that includes Debian's common-auth and
common-account) and through the Unix back-end (pam_unix and popper both
read /etc/shadow), the serving process seen from /proc to run as the user.
Everything it makes it removes.  In the pure environment PAM goes through
python-pam, in the native one through popper._cpam."""

from __future__ import annotations

import os
import pathlib
import pwd
import secrets
import shutil
import socket
import subprocess

import pytest

from conftest import IS_ROOT, Conversation, TcpInetd, corpus

pytestmark = pytest.mark.skipif(
    not IS_ROOT or not shutil.which("useradd") or not os.path.isdir("/etc/pam.d")
    or not os.path.exists("/etc/pam.d/common-auth"),
    reason="needs root, useradd and Debian's /etc/pam.d/common-auth")


@pytest.fixture
def real_user(mailhost):
    name = "poptest%s" % secrets.token_hex(3)
    password = "pw-" + secrets.token_hex(6)
    subprocess.run(["useradd", "-M", "-d", str(mailhost.base), "-s", "/usr/sbin/nologin",
                    "-U", name], check=True)
    service = pathlib.Path("/etc/pam.d/popper-test-%s" % secrets.token_hex(3))
    try:
        subprocess.run(["chpasswd"], input="%s:%s\n" % (name, password), text=True, check=True)
        service.write_text("@include common-auth\n@include common-account\n")
        entry = pwd.getpwnam(name)
        mailhost.deliver(corpus.mbox_bytes(list(corpus.messages(3, seed=81))), user=name)
        os.chown(mailhost.spool(name), entry.pw_uid, entry.pw_gid)
        yield name, password, entry, service.name
    finally:
        service.unlink(missing_ok=True)
        subprocess.run(["userdel", name], capture_output=True)


def ids_of(pid: int) -> dict:
    status = pathlib.Path("/proc/%d/status" % pid).read_text()
    return {line.split(":")[0]: line.split()[1:] for line in status.splitlines()
            if line.startswith(("Uid:", "Gid:"))}


@pytest.mark.parametrize("backend", ["pam", "unix"])
def test_a_real_user_logs_in_over_tcp_and_is_served_as_itself(mailhost, real_user, backend):
    name, password, entry, service = real_user
    extra = ["set pam-service = %s" % service] if backend == "pam" else []
    mailhost.write_config(*extra, userdb=False)
    server = TcpInetd(mailhost.command())
    try:
        conv = Conversation(socket.create_connection(("127.0.0.1", server.port)))
        assert conv.login(name, password).startswith(b"+OK %s has 3 visible messages"
                                                     % name.encode())
        ids = ids_of(server.processes[-1].pid)
        assert ids["Uid"] == [str(entry.pw_uid)] * 4
        assert ids["Gid"] == [str(entry.pw_gid)] * 4
        assert os.stat(mailhost.temp_drop(name)).st_uid == entry.pw_uid
        assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
        conv.close()
        conv = Conversation(socket.create_connection(("127.0.0.1", server.port)))
        assert conv.login(name, "wrong").startswith(
            b'-ERR [AUTH] Password supplied for "%s" is incorrect.' % name.encode())
        conv.close()
    finally:
        server.close()
