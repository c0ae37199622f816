"""EUIDL [n] (Qpopper's pop_uidl.c, pop_euidl): UIDL with each message's
size and its From: value, for the Newton's pre-filtering.  The From: value
is the first From: line's, after its blanks, without continuation lines,
at most 128 bytes: it goes into the reply as a value, never as a format
(CVE-2000-0442 was Qpopper 2.53's EUIDL printing it through one).
"""

from popper.protocol import replies as R
from popper.protocol.lines import is_number
from popper.protocol.session import TRANSACTION

FROM_LIMIT = 128        # pop_uidl.c: %.128s


def rows(session):
    return {TRANSACTION: {"euidl": (lambda number=None: euidl(session, number), 0, 1)}}


def euidl(session, number: str = None):
    messages = session.maildrop.messages
    count = len(messages) - session.first
    if number is None:
        return _listing(session, messages)
    if not is_number(number) or int(number) == 0:
        return session.err(R.EUIDL_NOT_A_NUMBER, count=count)
    n = int(number)
    if n > count:
        return session.err(R.EUIDL_OUT_OF_RANGE, count=count)
    i = n - 1 + session.first
    if session.deleted[i]:
        return session.err(R.UIDL_DELETED, number=n)
    return R.ok(R.EUIDL_ONE, number=n, uid=messages.uid[i].decode("ascii"),
                octets=messages.octets[i],
                sender=sender(session, messages[i]).decode("latin-1"))


def _listing(session, messages):
    yield R.ok(R.UIDL_ALL)
    for i in session.live():
        yield b"%d %s %d %s\r\n" % (i + 1 - session.first, messages.uid[i],
                                    messages.octets[i], sender(session, messages[i]))
    yield b".\r\n"


def sender(session, msg) -> bytes:
    """pop_uidl.c's from_hdr(): the first From: line's value, or b""."""
    for line in session.maildrop.header_lines(msg):
        if line[:5].lower() == b"from:":
            value = line[5:].lstrip(b" \t")
            value = value[:-1] if value.endswith(b"\n") else value
            value = value[:-1] if value.endswith(b"\r") else value
            return value[:FROM_LIMIT].replace(b"\0", b" ")
    return b""
