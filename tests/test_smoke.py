"""The installed popper is the one we mean to test, and it serves mail."""

import os

import pytest

from conftest import corpus

from popper import native

pytestmark = pytest.mark.twin


def test_native_module_matches_the_environment():
    # tox's native environment must really test the C twins, pure the Python ones.
    if os.environ.get("POPPER_EXPECT_NATIVE"):
        assert native.NATIVE
    if os.environ.get("POPPER_PUREPYTHON"):
        assert not native.NATIVE
        from popper.maildrop import scan
        assert scan.scan is scan.pure_scan


@pytest.mark.clients
def test_login_list_retr_quit(mailhost, inetd):
    msgs = list(corpus.messages(3, seed=7))
    mailhost.deliver(corpus.mbox_bytes(msgs))
    conv = inetd()
    assert conv.greeting.startswith(b"+OK QPOP (version ")
    assert conv.login() == b"+OK alice has 3 visible messages (0 hidden) in %d octets." % sum(
        len(m.data.replace(b"\n", b"\r\n")) + 30 for m in msgs)
    assert conv.cmd("RETR 2").startswith(b"+OK ")
    body = b"\n".join(conv.multiline()) + b"\n"
    assert body.replace(b"X-UIDL: ", b"").count(b"\n") == msgs[1].data.count(b"\n") + 1
    assert conv.cmd("QUIT").startswith(b"+OK Pop server at ")
