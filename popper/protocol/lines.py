"""Client bytes to command lines, with a bound on their length."""

# Qpopper hands its parser at most 1023 characters of a command line.
MAX_LINE = 1023


def is_number(text: str) -> bool:
    """Whether text is a whole number in ASCII digits only: str.isdigit()
    alone also takes other scripts' digits and superscripts, and
    str.isascii() is Python 3.7."""
    return bool(text) and not text.strip("0123456789")


def leading_number(text: str):
    """The number text's leading ASCII digits make (as atol reads them), or
    None if it does not begin with a digit."""
    digits = text[:len(text) - len(text.lstrip("0123456789"))]
    return int(digits) if digits else None


class TooLong:
    """An over-long line that was thrown away: `discarded` bytes of it."""

    __slots__ = ("discarded",)

    def __init__(self, discarded: int):
        self.discarded = discarded

    def __repr__(self):
        return "TooLong(%d)" % self.discarded


class LineReader:
    """Splits a byte stream into lines at LF (a CR before the LF is dropped).

    A line longer than max_line is not kept: the bytes up to its LF are
    discarded as they arrive and the reader yields one TooLong for it, so a
    client sending megabytes without a newline costs no memory.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.pending = b""
        self.discarding = 0       # bytes of an over-long line thrown away so far
        self.ends = []

    def feed(self, data: bytes):
        """The complete lines (bytes) and TooLong events in data, in order;
        self.ends[k] is where item k ends in data (after its LF)."""
        out = []
        self.ends = ends = []
        start = 0
        while True:
            lf = data.find(b"\n", start)
            if lf < 0:
                break
            piece = data[start:lf]
            start = lf + 1
            ends.append(start)
            if self.discarding:
                out.append(TooLong(self.discarding + len(piece) + 1))
                self.discarding = 0
                continue
            line = self.pending + piece
            self.pending = b""
            raw = len(line) + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            out.append(line if len(line) <= self.max_line else TooLong(raw))
        rest = data[start:]
        if self.discarding:
            self.discarding += len(rest)
        else:
            self.pending += rest
            # max_line + 1 leaves room for the CR of a CRLF still to come.
            if len(self.pending) > self.max_line + 1:
                self.discarding = len(self.pending)
                self.pending = b""
        return out
