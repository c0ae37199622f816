"""X-MANGLE: a message condensed to one text part (Qpopper 4.0.x's mmangle/).

A filter stage between the maildrop's header rendering and the wire
encoder: mangled() takes the mail bytes RETR would send (render.py's
message_bytes: the header with its X-UIDL: line, then the body) and gives
the mail bytes of one text/plain (or text/html) message, in Qpopper's form
(../shared/spec/x-mangle.md): the chosen headers, "Mime-version: 1.0" and
its Content-Type, then the text of the part multipart/alternative's rules
pick, the other parts as "[... attachment omitted]" placeholders.

The MIME work is the stdlib email package's (its feed parser, its
transfer-encoding and charset codecs).  Memory stays bounded for a message
with a large attachment: before the parser sees the message, cut_bodies()
walks its boundaries and drops the body of every part that will only be a
placeholder (its header is all a placeholder needs), so the parser holds
the text parts and the headers only.  Where Qpopper loses text (utf-8 to
latin-1, multibyte characters in us-ascii, RFC 2047 B-words) the codecs do
better: docs/deviations.md.
"""

import codecs
import email.errors
import email.generator     # loaded now, as the feed parser's factory is
import email.header
import email.message         # the feed parser's factory, imported late by it
import email.parser
import html
import io
import re

from popper.auth.gatekeeper import ascii_lower
from popper.extensions import mangle_request
from popper.extensions.mangle_request import CHARSETS, TEXTS, Request

# The word's names where they were (mangle.parse, mangle.PLAIN, ...).
DEFAULT_HEADERS, PLAIN = mangle_request.DEFAULT_HEADERS, mangle_request.PLAIN
asks_for_mangle, parse = mangle_request.asks_for_mangle, mangle_request.parse

MAX_DEPTH = 5           # mime.c: nesting deeper than this is "too complex"
FILENAME_MAX, TYPEINFO_MAX = 30, 20
LINE_PIECE = 64 * 1024  # cut_bodies looks at lines in pieces of at most this
HEADER_MAX = 256 * 1024     # a part header longer than this is passed on as it is
FEED_PIECE = 64 * 1024


# --- cutting the bodies of what becomes a placeholder -----------------------------------

HEADER, PASS, SKIP = "header", "pass", "skip"


def _lines(pieces):
    """(line, at_line_start) from mail pieces: whole lines, or pieces of at
    most LINE_PIECE bytes of a longer one (only at_line_start ones can be
    boundaries)."""
    pending, start = b"", True
    for piece in pieces:
        data = pending + piece if pending else piece
        pos = 0
        while True:
            end = data.find(b"\n", pos, pos + LINE_PIECE)
            if end < 0:
                if len(data) - pos < LINE_PIECE:
                    break
                end = pos + LINE_PIECE - 1
                yield data[pos:end + 1], start
                start = False
            else:
                yield data[pos:end + 1], start
                start = True
            pos = end + 1
        pending = data[pos:]
    if pending:
        yield pending, start


def _keeps_body(header) -> tuple:
    """(next state, boundary or None) after a part's header."""
    part = email.parser.BytesHeaderParser().parsebytes(header)
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "multipart":
        boundary = part.get_boundary()
        return (PASS, boundary.encode("latin-1", "replace")) if boundary else (SKIP, None)
    if maintype == "message" and subtype in ("rfc822", "news"):
        return HEADER, None
    if maintype in ("text", "message") and part.get_content_disposition() != "attachment":
        return PASS, None
    return SKIP, None


def _boundary(line: bytes, boundaries: list):
    """(depth, closing) if line is the boundary of an open multipart
    (the innermost that matches), else None."""
    mark = line.rstrip()
    for depth in range(len(boundaries) - 1, -1, -1):
        boundary = b"--" + boundaries[depth]
        if mark == boundary:
            return depth, False
        if mark == boundary + b"--":
            return depth, True
    return None


def cut_bodies(pieces):
    """The message, less the bodies of its non-text parts and attachments
    (their headers stay, for the placeholders), as pieces; the memory it
    holds is a part header and a line piece."""
    boundaries = []
    state, header, size = HEADER, [], 0
    for line, at_start in _lines(pieces):
        found = _boundary(line, boundaries) if at_start and line.startswith(b"--") else None
        if found is not None:
            if header:                  # a part header cut short by a boundary
                yield b"".join(header)
            depth, closing = found
            del boundaries[depth + (0 if closing else 1):]
            state, header, size = (PASS if closing else HEADER), [], 0   # PASS: the epilogue
            yield line
        elif state == HEADER:
            header.append(line)
            size += len(line)
            if line.strip() == b"" or size > HEADER_MAX:
                block, header, size = b"".join(header), [], 0
                yield block
                state, boundary = _keeps_body(block) if line.strip() == b"" else (PASS, None)
                if boundary is not None and len(boundaries) > MAX_DEPTH:
                    state = SKIP        # too deep to be shown: the parser need not nest it
                elif boundary is not None:
                    boundaries.append(boundary)
        elif state == PASS:
            yield line
    if header:
        yield b"".join(header)


def parse_message(pieces):
    """The email.message.Message of the cut message, fed in pieces."""
    parser = email.parser.BytesFeedParser()
    buffered, size = [], 0
    for piece in cut_bodies(pieces):
        buffered.append(piece)
        size += len(piece)
        if size >= FEED_PIECE:
            parser.feed(b"".join(buffered))
            buffered, size = [], 0
    parser.feed(b"".join(buffered))
    return parser.close()


# --- the text ---------------------------------------------------------------------

def _underscore(error):
    """Encoding: a character the charset lacks is "_" (charmangle.c's mark
    for an 8-bit byte it cannot show), one per character; a no-break
    space a space (charmangle.c let 0xA0 through to us-ascii)."""
    lacking = error.object[error.start:error.end]
    return "".join(" " if c == "\xa0" else "_" for c in lacking), error.end


codecs.register_error("popper-mangle", _underscore)

_CODECS = {"us-ascii": "ascii", "iso_2022-jp": "iso2022_jp", "iso-8859-12": "ascii"}


def _codec(charset: str) -> str:
    name = _CODECS.get(charset, charset)
    try:
        codecs.lookup(name)
    except LookupError:
        return "ascii"
    return name


# Every codec of the table loaded now: the session runs as the user after
# privsep.become, where the interpreter's own files may not be readable.
for _charset in CHARSETS:
    _codec(_charset)


# striphtml.c's gnElemBreaks: the line breaks an element makes sure of
# before it and after its end tag.  popper adds block elements the 1997
# table lacks (ul beside ol, table rows, HTML 4 and 5 blocks): Qpopper ran
# the words of one into the next's (docs/deviations.md).
_BREAKS = dict.fromkeys(("address", "blockquote", "dl", "h1", "h2", "h3", "h4", "h5", "h6",
                         "listing", "menu", "ol", "p", "plaintext", "pre", "xmp", "ul"), 2)
_BREAKS.update(dict.fromkeys(("dd", "dir", "div", "dt", "hr", "li", "table", "tr", "caption",
                              "center", "form", "article", "aside", "footer", "header", "main",
                              "nav", "section", "figure", "figcaption"), 1))
_HIDDEN = ("title", "comment", "script", "select", "style")     # style: popper's
_PRE = ("pre", "listing", "xmp", "plaintext")
_VERBATIM = ("xmp", "plaintext")    # their text is not markup (plaintext to the end)
_RAW_TEXT = ("script", "style")     # nor is this, as HTML reads it
_NAME = r"[A-Za-z0-9@_.+$-]"        # CharIsSgmlTok
_WORDS = re.compile(r"([ \t\r\n]+)")            # CHARISSPACE
_PRE_DROPPED = re.compile(r"[\x00-\x08\x0b-\x1f]")  # tsPre keeps \n, \t and from 32 up
_MARKUP = re.compile(
    r"<!--(?:-?>|.*?-->|.*\Z)"                  # a comment, to "-->"
    r"|<[?!][^>]*(?:>|\Z)"                      # <!DOCTYPE ...>, <?xml ...?>
    r"|<(/?)((?<=/)" + _NAME + r"*|[A-Za-z]" + _NAME + r"*)"     # a tag's name
    r"((?:=[ \t\r\n]*(?:\"[^\"]*\"|'[^']*')|[^>])*)(?:>|\Z)", re.S)  # its attributes
_ATTRIBUTE = re.compile(r"(" + _NAME + r"+)(?:[ \t\r\n]*=[ \t\r\n]*"
                        r"(\"[^\"]*\"|'[^']*'|[^ \t\r\n>]*))?")


def _attributes(text: str) -> dict:
    """name: value (entities decoded), the first of each name."""
    attributes = {}
    for name, value in _ATTRIBUTE.findall(text):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        attributes.setdefault(ascii_lower(name), html.unescape(value))
    return attributes


class _HTMLToPlain:
    """striphtml.c's textHTMLToPlain: tags and comments out, entities
    decoded, white space collapsed (a run of it one space, none after a
    line break) but in <pre>, <listing>, <xmp> and <plaintext>, the text
    of <title>, <script>, <select> dropped, <li> "*  ", <img alt=X>
    "[ Image X ]", <a href=U> " <U> ", <hr> 20 dashes and a line break,
    the line breaks of gnElemBreaks.  The text machine is Html_Text's,
    state for state; tags and entities are read as HTML reads them, where
    striphtml.c's reading loses text (docs/deviations.md)."""

    WORD, SPACE, HIDDEN, PRE = range(4)     # tsInWord, tsInSpace, tsComment, tsPre

    def __init__(self):
        # textHTMLInit: in space, as after two line breaks (so none at the start)
        self.out, self.state, self.breaks, self.column = [], self.SPACE, 2, 0

    def text(self, text: str) -> None:
        """Html_Text."""
        if self.state == self.HIDDEN or not text:
            return
        if self.state == self.PRE:
            text = _PRE_DROPPED.sub("", text)
            if text:
                self.out.append(text)
                self.column = 0 if text.endswith("\n") else 1   # only 0 or not matters
            return
        for piece in _WORDS.split(text):
            if not piece:
                continue
            if piece[0] not in " \t\r\n":
                self.breaks = 0
                self.out.append(piece)
                self.state = self.WORD
            elif self.state == self.WORD:
                self.out.append(" ")
                self.state = self.SPACE

    def write_breaks(self, count: int) -> None:
        """Html_WriteBreaks."""
        self.breaks += count
        self.out.append("\n" * count)
        if self.state == self.WORD:
            self.state = self.SPACE

    def ensure_break(self, count: int) -> None:
        """Html_EnsureBreak."""
        if count > self.breaks:
            self.write_breaks(min(count - self.breaks, 2))

    def open(self, tag: str, attributes: dict) -> None:
        """Html_OpenElem."""
        self.ensure_break(_BREAKS.get(tag, 0))
        if tag == "br":
            self.write_breaks(1)
        elif tag in _HIDDEN:
            self.state = self.HIDDEN
        elif tag == "li":
            self.out.append("*  ")
            self.breaks = 0
        elif tag in _PRE:
            self.column, self.state = 0, self.PRE
        elif tag == "img" and attributes.get("alt"):
            # popper: counted as text, so that a block after it starts a line
            self.out.append("[ Image %s ]" % attributes["alt"])
            self.breaks, self.state = 0, self.WORD
        elif tag == "a" and attributes.get("href"):
            self.out.append(" <%s> " % attributes["href"])
            self.breaks = 0
        elif tag == "hr":
            self.out.append("-" * 20 + "\n")
        elif tag in ("td", "th"):
            self.text(" ")          # popper: a cell's words apart from the next cell's

    def close(self, tag: str) -> None:
        """Html_CloseElem."""
        if tag in _PRE:
            self.breaks = 1 if self.column == 0 else 0
            self.state = self.SPACE
            self.ensure_break(2)
        elif tag in _HIDDEN:
            self.state = self.SPACE
        self.ensure_break(_BREAKS.get(tag, 0))

    def feed(self, text: str) -> str:
        pos = 0
        while pos < len(text):
            found = _MARKUP.search(text, pos)
            stop = found.start() if found else len(text)
            self.text(html.unescape(text[pos:stop]))
            if found is None:
                break
            pos = found.end()
            if found.group(2) is None:
                continue                    # a comment or a declaration
            tag = ascii_lower(found.group(2))
            if found.group(1):
                self.close(tag)
                continue
            self.open(tag, _attributes(found.group(3)))
            if tag in _VERBATIM or tag in _RAW_TEXT:
                end = None if tag == "plaintext" else re.compile(
                    "</%s(?!%s)" % (tag, _NAME), re.I).search(text, pos)
                stop = end.start() if end else len(text)
                self.text(text[pos:stop])   # HIDDEN for script and style
                pos = stop
        return "".join(self.out)


def html_to_plain(text: str) -> str:
    return _HTMLToPlain().feed(text)


_ENRICHED = re.compile(r"<<|<[^>]*(?:>|\Z)|\n|[^<\n]+")


def enriched_to_plain(text: str) -> str:
    """enriched.c's textEnrichedToPlain (RFC 1896's algorithm): commands
    out, "<<" a "<", the text of <param> dropped; outside <nofill> one line
    end is a space and n of them n - 1."""
    out, params, nofill, newlines = [], 0, 0, 0
    for token in _ENRICHED.findall(text):
        if token[0] == "<":
            if newlines == 1:
                out.append(" ")
            newlines = 0
            if token == "<<":
                if params <= 0:
                    out.append("<")
                continue
            command = ascii_lower(token[1:-1] if token.endswith(">") else token[1:])
            params += {"param": 1, "/param": -1}.get(command, 0)
            nofill += {"nofill": 1, "/nofill": -1}.get(command, 0)
        elif params > 0:
            continue
        elif token == "\n" and nofill <= 0:
            newlines += 1
            if newlines > 1:
                out.append("\n")
        else:
            if newlines == 1:
                out.append(" ")
            newlines = 0
            out.append(token)
    return "".join(out)


# etags.c: an enriched command's html (<param> and </param> are handled apart)
_ENRICHED_HTML = {
    ">": "&gt;", "<<": "&lt;", "&": "&amp;", "<bold>": "<b>", "</bold>": "</b>",
    "<italic>": "<i>", "</italic>": "</i>", "<underline>": "<u>", "</underline>": "</u>",
    "<fixed>": "<tt>", "</fixed>": "</tt>", "<smaller>": "<small>", "</smaller>": "</small>",
    "<bigger>": "<big>", "</bigger>": "</big>", "<center>": "<center>", "</center>": "</center>",
    "<flushleft>": "<div align=left>", "</flushleft>": "</div>",
    "<flushright>": "<div align=right>", "</flushright>": "</div>",
    "<flushboth>": "<div align=justify>", "</flushboth>": "</div>",
    "<excerpt>": "<blockquote type=cite>", "</excerpt>": "</blockquote>",
    "<nofill>": "<pre>", "</nofill>": "</pre>", "<fontfamily>": '<font face="',
    "</fontfamily>": "</font>", "<color>": '<font color="', "</color>": "</font>",
    "<paraindent>": "", "</paraindent>": "",
}
_ENRICHED_TOKENS = re.compile(r"<<|<[^>]*(?:>|\Z)|[&>\n]|[^<&>\n]+")


def _color(value: str) -> str:
    """A <color> parameter: a name as it is, RFC 1896's "rrrr,gggg,bbbb" as #RRGGBB."""
    if "," not in value:
        return value
    try:
        return "#" + "".join("%02X" % ((int(v, 16) >> 8) & 0xFF) for v in value.split(","))
    except ValueError:
        return value        # (sscanf left the numbers it could not read unset)


def enriched_to_html(text: str) -> str:
    """enriched.c's textEnrichedToHTML, inside <html>...</html>: etags.c's
    tags; a <color> or <fontfamily> parameter is the font's attribute, the
    others dropped; one line end (outside <nofill> and parameters) stays a
    line end, each more one "<br>"."""
    out, params, nofill, newlines = ["<html>"], 0, 0, 0
    incomplete, color = None, []
    for token in _ENRICHED_TOKENS.findall(text):
        if token[0] in "<&>":
            if newlines == 1:
                out.append("\n")
            newlines = 0
            command = ascii_lower(token) if token[0] == "<" else token
            if command == "<param>":
                params += 1
            elif command == "</param>":
                params -= 1
                if incomplete == "<color>":
                    out.append(_color("".join(color)))
                    color = []
                if incomplete in ("<color>", "<fontfamily>"):
                    out.append('">')    # (enriched.c: also after any other parameter)
                incomplete = None
            elif command in _ENRICHED_HTML:
                if command in ("<fontfamily>", "<color>", "<paraindent>"):
                    incomplete = command
                nofill += {"<nofill>": 1, "</nofill>": -1}.get(command, 0)
                out.append(_ENRICHED_HTML[command])
        elif token == "\n" and nofill <= 0 and params <= 0:
            newlines += 1
            if newlines > 1:
                out.append("<br>\n")
        else:
            if newlines == 1:
                out.append("\n")
            newlines = 0
            if params <= 0:
                out.append(token)
            elif incomplete == "<color>":
                color.append(token)
            elif incomplete == "<fontfamily>":
                out.append(token)
    out.append("</html>")
    return "".join(out)


def plain_to_html(text: str) -> str:
    """textPlainToHTML: the text escaped inside <html><pre>...</pre></html>."""
    return "<html><pre>" + html.escape(text, quote=False) + "</pre></html>\n"


_SPACES = re.compile(r" +")


def _flowed_spaces(text: str) -> str:
    """textFlowedToHTML inside a line: a run of n spaces is n - 1 &nbsp; and a space."""
    return _SPACES.sub(lambda m: "&nbsp;" * (len(m.group()) - 1) + " ",
                       html.escape(text, quote=False))


def flowed_to_html(text: str) -> str:
    """striphtml.c's textFlowedToHTML for text/plain; format=flowed (RFC
    2646): a line ending in a space flows into the next (a soft line end,
    its paragraph ends with "<P>"), other line ends are "<BR>", quote marks
    ">" become nested <blockquote type=cite>, the stuffed space after them
    goes, "-- " is a signature line, not flowed.  Line by line, the same
    bytes as its character loop."""
    out, depth, paragraph = ["<html>\n<p>\n"], 0, False
    lines = text.split("\n")
    for number, line in enumerate(lines):
        ended = number < len(lines) - 1
        quotes = len(line) - len(line.lstrip(">"))
        content = line[quotes:]
        if not content and not ended:
            break                       # nothing came after the quote marks
        if content.startswith(" "):
            content = content[1:]       # the stuffed space
        # ffToHTML_lineStart: the quote depth changes
        out.append("<blockquote type=cite>" * (quotes - depth) +
                   "</blockquote>" * (depth - quotes))
        depth = quotes
        body = content.rstrip(" ")
        trailing = len(content) - len(body)
        out.append(_flowed_spaces(body))
        if not ended:
            break                       # spaces still counted at the end are not written
        if trailing:
            out.append("&nbsp;" * (trailing - 1) + " ")
            if content != "-- ":
                paragraph = True        # a soft line end
                continue
        out.append("<P>\n" if paragraph else "<BR>\n")
        paragraph = False
    out.append("</html>\n")
    return "".join(out)


# --- the message ------------------------------------------------------------------

class _Mangler:
    def __init__(self, request: Request, no_content: bool):
        self.request = request
        self.no_content = no_content
        self.codec = _codec(request.charset)
        self.out = []
        self.body_at, self.lines, self.top_lines = None, 0, None

    def add(self, data: bytes) -> None:
        self.out.append(data)
        if self.top_lines is not None and self.body_at is not None:
            self.lines += data.count(b"\n")
            if self.lines >= self.top_lines:
                raise _Enough       # TOP has its lines: the rest is not made

    def emit(self, text: str) -> None:
        self.add(text.encode(self.codec, "popper-mangle"))

    def line_start(self) -> None:
        """A part's text starts a line: the line end before a boundary is
        the boundary's (mime.c's savedNewline), and Qpopper ran the last
        line of one part into the first of the next."""
        last = next((piece for piece in reversed(self.out) if piece), b"\n")
        if not last.endswith(b"\n"):
            self.add(b"\n")

    def note(self, text: str) -> None:
        """A placeholder line ("\\n[...]\\n\\n"), as html in text=html."""
        text = "\n" + text + "\n\n"
        self.emit(plain_to_html(text) if self.request.text == "html" else text)

    def headers(self, msg) -> None:
        """headerHandler: the header lines that begin with a listed name,
        RFC 2047 words decoded, then the Mime-version/Content-Type pair and
        the blank line (neither for TOP n 0 or an empty body)."""
        for name, value in msg.raw_items():
            line = (name + ": " + value).lower()
            if not any(line.startswith(item) for item in self.request.headers):
                continue
            self.emit("%s: %s\n" % (name, _decoded(value)))
        if not self.no_content:
            self.emit('Mime-version: 1.0\nContent-Type: text/%s;charset="%s"\n\n'
                      % (self.request.text, self.request.charset))

    def body(self, part, depth: int, parent: str = "") -> None:
        maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
        if maintype == "multipart":
            self.multipart(part, depth + 1, subtype)
        elif maintype == "text":
            if part.get_content_disposition() == "attachment":
                self.placeholder(part, None)
            else:
                self.text(part, subtype)
        elif maintype == "message":
            self.message(part, depth, subtype, parent)
        elif maintype == "application":
            if subtype == "vnd.ms-tnef" or (subtype == "applefile" and parent == "appledouble"):
                return
            self.placeholder(part, None if subtype == "octet-stream" else subtype)
        else:
            known = maintype in ("image", "audio", "video", "model")
            self.placeholder(part, maintype if known else "unknown")

    def multipart(self, part, depth: int, subtype: str) -> None:
        if depth > MAX_DEPTH:
            self.note("[message too complex; part omitted]")
            return
        children = part.get_payload()
        if part.get_boundary() is None or not isinstance(children, list):
            self.note("[invalid MIME formatting; part omitted]")
            return
        if subtype == "alternative":
            chosen = children[_chosen(part, children, self.request.text)] if children else None
            if chosen is None:
                return
            if chosen.get_content_maintype() == "multipart":
                if chosen.get_content_subtype() == "related":
                    self.multipart(chosen, depth + 1, "related")
                return          # other multiparts inside an alternative are dropped
            self.body(chosen, depth, subtype)
            return
        for child in children:
            self.body(child, depth, subtype)

    def message(self, part, depth: int, subtype: str, parent: str) -> None:
        if subtype in ("delivery-status", "external-body"):
            return
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if subtype not in ("rfc822", "news") or inner is None:
            self.line_start()
            self.add(_raw(payload))         # passed on as it came
            return
        if parent == "report":
            self.note("[Header of message follows:]")
            self.headers(inner)
            return
        self.note("[Included message follows:]")
        self.headers(inner)
        self.body(inner, depth)

    def placeholder(self, part, typeinfo) -> None:
        text = "["
        filename = part.get_filename()
        if filename:
            text += _decoded(filename)[:FILENAME_MAX] + "]\n[ "
        if typeinfo:
            text += typeinfo[:TYPEINFO_MAX] + " "
        inline = part.get_content_disposition() == "inline"
        self.note(text + ("part omitted]" if inline else "attachment omitted]"))

    def text(self, part, subtype: str) -> None:
        data = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "us-ascii"
        if charset not in CHARSETS:
            charset = "us-ascii"           # charmangle.c: unknown is us-ascii
        want = self.request.text
        self.line_start()
        if want != "html" and subtype not in ("html", "enriched") \
                and charset == self.request.charset:
            self.add(data)              # nothing to convert: the bytes as they are
            return
        text = data.decode(_codec(charset), "replace").replace("\r\n", "\n")
        if want == "html":
            if subtype in ("plain", "") and ascii_lower(str(part.get_param("format", ""))) \
                    == "flowed":
                text = flowed_to_html(text)
            elif subtype in ("plain", ""):
                text = plain_to_html(text)
            elif subtype == "enriched":
                text = enriched_to_html(text)
        elif subtype == "html":
            text = html_to_plain(text)
        elif subtype == "enriched":
            text = enriched_to_plain(text)
        self.emit(text)


def _raw(payload) -> bytes:
    """A message/* body as it came: the parser's message written back
    without folding its header lines again (maxheaderlen=0)."""
    if not isinstance(payload, list):
        return (payload or "").encode("ascii", "surrogateescape")
    data = []
    for inner in payload:
        out = io.BytesIO()
        email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(inner)
        written = out.getvalue()
        if any(isinstance(defect, email.errors.MissingHeaderBodySeparatorDefect)
               for defect in inner.defects):
            # No blank line came after its header (a message/partial after the
            # first has none at all): take out the one the generator wrote.
            written = written[1:] if not inner.keys() else written.replace(b"\n\n", b"\n", 1)
        data.append(written)
    return b"".join(data)


def _decoded(value: str) -> str:
    """A header value with its RFC 2047 words decoded (Qpopper decodes Q
    words only, and drops B words raw); 8-bit bytes as latin-1."""
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, ImportError, email.errors.HeaderParseError):
        # (ImportError: a charset whose codec cannot be loaded as the user)
        return value.encode("ascii", "surrogateescape").decode("latin-1")


def _kind(part) -> str:
    """What a part of an alternative is, for the choice: plain, html,
    enriched, or "" (other text, or no text at all)."""
    maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
    if maintype == "text":
        return subtype if subtype in TEXTS else ""
    if (maintype, subtype) == ("multipart", "related"):
        kind = part.get_param("type")
        if kind is None:
            return "html"           # Netscape leaves type= out
        return {"text/html": "html", "text/plain": "plain",
                "text/enriched": "enriched"}.get(str(kind).lower(), "")
    return ""


def _chosen(part, children, want: str) -> int:
    """Which child of a multipart/alternative is shown: by LGL's types=
    list if it has one, else the first of the requested kind, else the
    first."""
    types = part.get_param("types")
    if types:
        types = str(types).lower()
        order = {"plain": ("plain", "html", "enriched"),
                 "html": ("html", "plain", "enriched")}.get(want, ("html", "enriched"))
        for kind in order:
            at = types.find("text/" + kind)
            if at >= 0:
                index = types[:at].count(",")
                return index if index < len(children) else 0
    return next((i for i, child in enumerate(children) if _kind(child) == want), 0)


class _Enough(Exception):
    """TOP's body lines are all made."""


def _top(mangler, lines: int):
    """TOP's cut on the mangled output: the header and `lines` body lines."""
    out = mangler.out
    if mangler.body_at is None:
        yield from out
        return
    yield from out[:mangler.body_at]
    body, pos = b"".join(out[mangler.body_at:]), 0
    for _ in range(lines):
        pos = body.find(b"\n", pos) + 1
        if not pos:
            pos = len(body)
            break
    yield body[:pos]


def mangled(pieces, request: Request, top_lines: int = None):
    """The mangled message's mail bytes, from the rendered message's
    pieces (header first); TOP's top_lines counts mangled body lines, and
    the mangling stops at the part where the last of them is (the parts
    after it are not converted, nor held)."""
    msg = parse_message(pieces)
    payload = msg.get_payload()
    empty = msg.get_content_maintype() != "multipart" and isinstance(payload, str) \
        and not payload.strip()
    mangler = _Mangler(request, no_content=top_lines == 0 or empty)
    mangler.headers(msg)
    if top_lines != 0 and not empty:
        mangler.body_at, mangler.top_lines = len(mangler.out), top_lines
        try:
            mangler.body(msg, 0)
            mangler.line_start()        # what the wire encoder would add: LIST counts it
        except _Enough:
            return _top(mangler, top_lines)
    if top_lines:
        return _top(mangler, top_lines)
    return iter(mangler.out)
