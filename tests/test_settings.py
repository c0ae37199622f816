"""The -f config file's words and numbers, as Qpopper's parser reads them."""

import pytest

from popper.settings import ConfigError, Settings, apply_line, words_of


@pytest.mark.parametrize("line,words", [
    ("set a = b", ["set", "a", "=", "b"]),
    ("set a=b", ["set", "a", "=", "b"]),
    ("set a =b", ["set", "a", "=", "b"]),
    ('set a = "x y"', ["set", "a", "=", "x y"]),
    ("set a = `x y`", ["set", "a", "=", "x y"]),
    ("set a = 'x\"y'", ["set", "a", "=", 'x"y']),
    ("set a = b#c", ["set", "a", "=", "b#c"]),
    ("set a # c = d", ["set", "a"]),
    ("  # set a", []),
    ("", []),
])
def test_words(line, words):
    assert words_of(line) == words


@pytest.mark.parametrize("value,seconds", [("45", 45), ("045", 37), ("0x2d", 45), ("0", 0)])
def test_numbers_are_read_as_strtol_base_0(value, seconds):
    s = Settings()
    apply_line(s, "set timeout = " + value)
    assert s.timeout == seconds


@pytest.mark.parametrize("value", ["09", "4 5", "-3", "ten"])
def test_bad_numbers(value):
    with pytest.raises(ConfigError):
        apply_line(Settings(), "set timeout = " + value)
