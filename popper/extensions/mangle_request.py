"""X-MANGLE's word: what RETR, TOP or LIST asks for (pop_send.c, pop_list.c,
FillMangleInfo), and the Request it makes.  Apart from the mangler
(mangle.py, with the email package): a session reads the word of every
RETR, and only one that asks for X-MANGLE loads the mangler
(popper/deferred.py)."""

from popper.auth.gatekeeper import ascii_lower

TEXTS = ("plain", "html", "enriched")
# mangle.c's table, in its order (the second iso-8859-15 is its slip for -14).
CHARSETS = ("us-ascii", "iso-8859-1", "iso-8859-2", "iso-8859-3", "iso-8859-4",
            "iso-8859-5", "iso-8859-6", "iso-8859-7", "iso-8859-8", "iso-8859-9",
            "iso-8859-10", "iso-8859-11", "iso-8859-12", "iso-8859-13", "iso-8859-15",
            "iso-8859-15", "utf-8", "cp1252", "iso_2022-jp")
DEFAULT_HEADERS = ("to:", "cc:", "subject:", "from:", "date:", "reply-to:", "x-priority:",
                   "x-uidl:")


class Request:
    """What X-MANGLE(...) asked for: text (plain/html/enriched), charset
    (one of CHARSETS), headers (lower-case name prefixes)."""

    __slots__ = ("text", "charset", "headers")

    def __init__(self, text="plain", charset="us-ascii", headers=DEFAULT_HEADERS):
        self.text, self.charset, self.headers = text, charset, tuple(headers)

    def __repr__(self):
        return "Request(%r, %r, %r)" % (self.text, self.charset, self.headers)


PLAIN = Request()        # -no-mime's, and X-MANGLE(TEXT=PLAIN)'s


def asks_for_mangle(word) -> bool:
    """pop_send.c, pop_list.c: the lower-cased word starts with "mangle" or
    "x-mangle" (so "mangled" is one too)."""
    return bool(word) and ascii_lower(word).startswith(("mangle", "x-mangle"))


def _value(rest: str, name: str):
    """The value after name= in rest (FillMangleInfo's strstr: anywhere),
    ending at the first ";" after it, else the first ")"; None if absent
    or unterminated."""
    at = rest.find(name)
    if at < 0:
        return None
    value = rest[at + len(name):]
    end = value.find(";")
    if end < 0:
        end = value.find(")")
    return None if end < 0 else value[:end]


def _prefix_of(value: str, table):
    """The first entry of table that value is a prefix of (strncmp), or None."""
    return next((entry for entry in table if entry.startswith(value)), None)


def parse(word: str):
    """The Request for an X-MANGLE word, or None for a bad text= (the
    only error Qpopper has).  An unknown charset is ignored."""
    word = ascii_lower(word)
    rest = word[6:]                     # FillMangleInfo skips 6 characters
    request = Request()
    text = _value(rest, "text=")
    if text is not None:
        request.text = _prefix_of(text, TEXTS)
        if request.text is None:
            return None
    charset = _value(rest, "charset=")
    if charset is not None:
        request.charset = _prefix_of(charset, CHARSETS) or request.charset
    at = word.find("headers=")
    if at >= 0:
        value = word[at + len("headers="):]
        for stop in ";)":
            value = value.split(stop, 1)[0]
        # Split properly: Qpopper's fill loop runs past ";" and overflows.
        request.headers = tuple(item for item in value.split(",") if item)
    return request
