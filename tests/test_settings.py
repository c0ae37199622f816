"""The -f config file's words and numbers, as Qpopper's parser reads them."""

import pytest

from popper.settings import ConfigError, Settings, apply_line


@pytest.mark.parametrize("line,value", [
    ("set tracefile = /a", "/a"),
    ("set tracefile=/a", "/a"),
    ("set tracefile =/a", "/a"),
    ('set tracefile = "/x y"', "/x y"),
    ("set tracefile = `/x y`", "/x y"),
    ("set tracefile = '/x\"y'", '/x"y'),
    ("set tracefile = /b#c", "/b#c"),               # a string runs to a blank
    ("set tracefile = /b  # c", "/b"),
    ('set tracefile = "/x \\" y"', '/x \\" y'),     # pop_config.c: \" does not close, and stays
    ('set tracefile = "/x y', "/x y"),              # no closing quote: the rest of the line
    ("  SET   TraceFile   =   /a\t", "/a"),
])
def test_string_values_are_read_as_qpopper_reads_them(line, value):
    s = Settings()
    apply_line(s, line)
    assert s.tracefile == value


@pytest.mark.parametrize("line", ["  # set timeout = x", "", "   ", "#"])
def test_comments_and_blank_lines(line):
    apply_line(Settings(), line)


@pytest.mark.parametrize("value,seconds", [("45", 45), ("045", 37), ("0x2d", 45), ("0", 0)])
def test_numbers_are_read_as_strtol_base_0(value, seconds):
    s = Settings()
    apply_line(s, "set timeout = " + value)
    assert s.timeout == seconds


@pytest.mark.parametrize("value", ["09", "4 5", "-3", "ten"])
def test_bad_numbers(value):
    with pytest.raises(ConfigError):
        apply_line(Settings(), "set timeout = " + value)
