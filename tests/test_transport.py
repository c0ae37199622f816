"""popper over real connections: hostile input, hangups, signals, memory."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import TEST_GID, TEST_UID, Conversation, corpus, free_port, wait_for_port

pytestmark = pytest.mark.clients

MAIL = corpus.mbox_bytes(list(corpus.messages(4, seed=41)))


def vm_hwm_kib(pid: int) -> int:
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_bad_input_over_a_socket_gets_err_and_the_session_goes_on(mailhost, inetd):
    mailhost.deliver(MAIL)
    conv = inetd()
    conv.send(b"USER " + b"a" * (1 << 20) + b"\r\n")
    assert conv.line() == b"-ERR Command line too long: discarded %d bytes." % ((1 << 20) + 7)
    assert conv.cmd("USER al\x00ice") == b"+OK Password required for al?ice."
    conv.login()
    for line, reply in [("RETR 99999999999999999999",
                         b"-ERR Message 99999999999999999999 does not exist."),
                        ("TOP 1 -1", b"-ERR Number of lines must be a number, 0 or more: -1"),
                        ("LIST %s%n%x", b"-ERR Parameter must be a number between 1 and 4"),
                        ("DELE %n", b"-ERR Parameter must be a number between 1 and 4"),
                        ("APOP %s %n", b'-ERR Unknown command: "apop".'),
                        ("\x00\x01\x02", b'-ERR Unknown command: "???".')]:
        assert conv.cmd(line) == reply
    assert conv.cmd("STAT").startswith(b"+OK 4 ")


def test_megabytes_without_a_newline_cost_no_memory(mailhost, inetd):
    conv = inetd()
    chunk = b"x" * (1 << 20)
    for _ in range(64):
        conv.send(chunk)
    conv.send(b"\r\nNOOP\r\n")
    assert conv.line() == b"-ERR Command line too long: discarded %d bytes." % (64 * len(chunk) + 2)
    assert conv.line() == b'-ERR Unknown command: "noop".'
    assert vm_hwm_kib(conv.process.pid) < 64 * 1024


def test_hangup_in_the_middle_of_retr(mailhost, inetd):
    big = corpus.Message(99, b"From big@example.org Thu Nov 26 14:34:16 2026\n",
                         b"Subject: big\nMessage-ID: <big@x>\n\n" + b"line\n" * 2_000_000)
    mailhost.deliver(MAIL + corpus.mbox_bytes([big]))
    conv = inetd()
    conv.login()
    assert conv.cmd("DELE 1").startswith(b"+OK")
    conv.send(b"RETR 5\r\n")
    conv.sock.recv(65536)
    conv.sock.shutdown(socket.SHUT_RDWR)
    conv.close()                      # waits for popper to finish
    data = mailhost.spool().read_bytes()
    ids = [m.message_id for m in corpus.messages(4, seed=41)]
    assert ids[0] not in data and all(i in data for i in ids[1:])   # DELE applied on hangup
    tail = data[data.index(b"<big@x>"):]
    assert b"Status: U" in tail.split(b"\n\n", 1)[0]                # not sent whole: not read
    assert data.count(b"line\n") == 2_000_000


def test_sighup_reopens_the_trace_file_in_standalone_mode(mailhost, tmp_path):
    trace = mailhost.base / "trace"
    port = free_port()
    process = subprocess.Popen(mailhost.command("-t", str(trace), "127.0.0.1:%d" % port),
                               stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process)
        os.rename(trace, mailhost.base / "trace.1")
        process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        conv = Conversation(socket.create_connection(("127.0.0.1", port)))
        conv.cmd("CAPA")
        conv.cmd("QUIT")
        conv.close()
        time.sleep(0.3)
        assert 'Received: "CAPA"' in trace.read_text()
        assert process.poll() is None
    finally:
        process.terminate()
        assert process.wait(10) == 0


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                    reason="systemd-socket-activate is not installed")
def test_under_systemd_socket_activate_inetd(mailhost):
    mailhost.deliver(MAIL)
    port = free_port()
    process = subprocess.Popen(["systemd-socket-activate", "--accept", "--inetd", "-l",
                                "127.0.0.1:%d" % port] + mailhost.command(),
                               stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process)
        conv = Conversation(socket.create_connection(("127.0.0.1", port)))
        assert conv.login().startswith(b"+OK alice has 4 visible messages")
        assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
        conv.close()
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
def test_a_huge_spool_is_served_in_little_memory(mailhost, inetd):
    """1.5 GB of mail, served with under 100 MB resident."""
    size = 1536 << 20
    if shutil.disk_usage(mailhost.base).free < 3 * size + (1 << 30):
        pytest.skip("needs about 5 GB of free disk space")
    block = corpus.mbox_bytes(list(corpus.messages(120, seed=43)))
    path = mailhost.spool()
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
    os.chown(path, TEST_UID, TEST_GID)
    count = size // len(block) * 120
    conv = inetd()
    assert re.match(rb"\+OK alice has %d visible messages" % count, conv.login())
    conv.send(b"UIDL\r\n")
    conv.line()
    assert len(conv.multiline()) == count
    biggest = max(range(1, 121), key=lambda n: len(list(corpus.messages(120, seed=43))[n - 1].data))
    conv.send(b"RETR %d\r\nLIST\r\n" % biggest)
    conv.line()
    conv.multiline()
    conv.line()
    assert len(conv.multiline()) == count
    peak = vm_hwm_kib(conv.process.pid)
    print("1.5 GB, %d messages: peak resident %d KiB" % (count, peak))
    assert conv.cmd("DELE 1").startswith(b"+OK")
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at")
    conv.close()
    assert peak < 100 * 1024, "%d KiB resident" % peak
    assert os.path.getsize(path) > size - len(block)
