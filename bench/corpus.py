"""A deterministic generator of realistic mail, as an MTA leaves it in an mbox.

Sizes are long-tailed (log-normal, mean MEAN_SIZE bytes); about one message
in six carries a base64 attachment; bodies hold lines an MTA escaped as
">From ", lines starting with "." (and a line that is only "."), 8-bit text
and the odd line of more than 1000 characters.  The same seed gives the
same bytes on every machine and Python version.

    python -m bench.corpus --count 10000 --out spool.mbox     (about 166 MB)

Used by the benchmark harness, the tests and `make demo`.
"""

import argparse
import base64
import math
import random

MEAN_SIZE = 16600
SIGMA = 1.2

WORDS = ("the of and to in is that for it as was with be by on not he this are or his "
         "from at which but have an they you were her she there one all we their can "
         "mailbox server spool delivery queue message header body attachment invoice "
         "meeting report tomorrow budget draft review please thanks regards schedule "
         "update version release backup printer network holiday lunch project status").split()

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Message:
    """One generated message: its mbox From line and its bytes (LF lines)."""

    __slots__ = ("envelope", "data", "number")

    def __init__(self, number: int, envelope: bytes, data: bytes):
        self.number, self.envelope, self.data = number, envelope, data

    @property
    def message_id(self) -> bytes:
        start = self.data.index(b"Message-ID: <") + 13
        return self.data[start:self.data.index(b">", start)]


def _date(rng: random.Random):
    day, month = rng.randrange(1, 29), rng.randrange(12)
    hour, minute, second = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    weekday = DAYS[(day + month * 3) % 7]
    envelope = "%s %s %2d %02d:%02d:%02d 2026" % (weekday, MONTHS[month], day, hour, minute, second)
    header = "%s, %d %s 2026 %02d:%02d:%02d +0000" % (weekday, day, MONTHS[month], hour, minute,
                                                       second)
    return envelope, header


def _text_line(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 14)))


def _randbytes(rng: random.Random, n: int) -> bytes:
    """rng.randbytes(n), which Python 3.9 brought, the same bytes on 3.6."""
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n else b""


def _body(rng: random.Random, size: int, number: int) -> bytes:
    lines = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.01:
            line = ">From the desk of the director, " + _text_line(rng)   # escaped by the MTA
        elif roll < 0.02:
            line = "." + _text_line(rng)                                   # needs dot-stuffing
        elif roll < 0.022:
            line = "."                                                     # a lone dot
        elif roll < 0.03:
            line = ""
        elif roll < 0.032:
            line = "x" * rng.randrange(1000, 3000)                         # a long line
        elif roll < 0.04:
            line = "caf\xe9 na\xefve r\xe9sum\xe9 " + _text_line(rng)      # 8-bit text
        else:
            line = _text_line(rng)
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines).encode("latin-1") + b"\n"


def message(rng: random.Random, number: int) -> Message:
    size = int(math.exp(rng.gauss(math.log(MEAN_SIZE) - SIGMA * SIGMA / 2, SIGMA)))
    size = max(300, size)
    sender = "%s%d@example.org" % (rng.choice(("alice", "bob", "carol", "dave", "erin")),
                                   rng.randrange(100))
    envelope_date, header_date = _date(rng)
    subject = _text_line(rng)[:60]
    header = [
        "Return-Path: <%s>" % sender,
        "Received: from mx%d.example.org (mx.example.org [192.0.2.%d])" % (rng.randrange(9),
                                                                          rng.randrange(1, 255)),
        "\tby mail.example.com (Postfix) with ESMTP id %X; %s" % (rng.getrandbits(40), header_date),
        "Date: %s" % header_date,
        "From: %s" % sender,
        "To: user@example.com",
        "Subject: %s" % subject,
        "Message-ID: <%d.%d@example.org>" % (number, rng.getrandbits(32)),
        "MIME-Version: 1.0",
    ]
    if rng.random() < 1 / 6 and size > 2000:
        boundary = "=_boundary_%d" % number
        text_size = max(200, size // 8)
        attachment = base64.encodebytes(_randbytes(rng, (size - text_size) * 3 // 4))
        header.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        body = (b"This is a multi-part message in MIME format.\n\n--" + boundary.encode() +
                b"\nContent-Type: text/plain; charset=iso-8859-1\n\n" + _body(rng, text_size, number)
                + b"\n--" + boundary.encode() + b"\nContent-Type: application/octet-stream\n"
                b"Content-Transfer-Encoding: base64\n"
                b'Content-Disposition: attachment; filename="data.bin"\n\n' + attachment
                + b"\n--" + boundary.encode() + b"--\n")
    else:
        header.append("Content-Type: text/plain; charset=iso-8859-1")
        body = _body(rng, size, number)
    envelope = ("From %s %s\n" % (sender, envelope_date)).encode()
    return Message(number, envelope, "\n".join(header).encode() + b"\n\n" + body)


def messages(count: int, seed: int = 1):
    rng = random.Random(seed)
    for number in range(1, count + 1):
        yield message(rng, number)


def mbox_bytes(msgs) -> bytes:
    """An mbox of the messages: From line, message, blank line."""
    return b"".join(m.envelope + m.data + b"\n" for m in msgs)


def write_mbox(path: str, count: int, seed: int = 1) -> list:
    """Write an mbox of count messages; return the Message list."""
    msgs = list(messages(count, seed))
    with open(path, "wb") as f:
        for m in msgs:
            f.write(m.envelope + m.data + b"\n")
    return msgs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.out, "wb") as f:
        total = 0
        for m in messages(args.count, args.seed):
            data = m.envelope + m.data + b"\n"
            f.write(data)
            total += len(data)
    print("%s: %d messages, %d bytes" % (args.out, args.count, total))


if __name__ == "__main__":
    main()
