"""The native account calls and their pure twins give the same answer for
every name, hostile ones above all: a NUL (C would look up the name cut
at it: "alice\\0junk" is alice), a very long name, "..", "/", a non-ASCII
latin-1 name, one beyond latin-1, an empty one.  And crypt for hostile
passwords and settings; and PAM's refusal of a NUL.

Run against the host's own databases in this process, and in a child
process under nss_wrapper, with a passwd and a shadow that hold a latin-1
name ("m\\xfcller", the bytes 6d fc 6c 6c 65 72).
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import popper
from popper import native
from popper.auth import cryptpw, unixdb

pytestmark = pytest.mark.twin

NSS_WRAPPER = pathlib.Path("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so")
needs_native = pytest.mark.skipif(not native.BUILT, reason="the C extension is not built")

NAMES = ["root", "alice", "m\xfcller", "root\0", "root\0junk", "alice\0junk", "\0", "\0root",
         "alice\0", "m\xfcller\0x", "", " root", "root ", "root\n", "ROOT", "..", "../root", "/",
         "root/", "/etc/passwd", "x" * 300, "root" + "x" * 100000, "\u20acuro",
         "m\u00fcller".encode("utf-8").decode("latin-1"), "%s%n", "*", "+", "-", "+root"]

PASSWORDS = [b"", b"pw", b"pw\0", b"pw\0junk", b"\0", b"m\xfcller", b"\xff\xfe\x80",
             b"x" * 511, b"x" * 512, b"x" * 513, b"x" * 5000]
SETTINGS = [b"$6$saltsalt$", b"$6$rounds=1000$saltsalt$", b"$5$saltsalt$", b"$1$saltsalt$",
            b"$2b$05$abcdefghijklmnopqrstuu", b"Zq", b"Zq" + b"." * 33, b"_J9..abcd", b"!",
            b"*", b"", b"x", b"$", b"$6$", b"$6$salt\0junk$", b"\0", b"$9$nosuch$",
            b"$6$" + b"s" * 5000 + b"$", b"\xff\xfe",
            cryptpw.crypt(b"pw", b"$y$j9T$abcdefghijklmnopqrstu.$")]
TWINS = ("getpwnam", "getspnam", "passwd_hashes", "shadow_hashes", "crypt_gensalt")


def plain(value):
    """A result as JSON can hold it (bytes as latin-1 text)."""
    if isinstance(value, bytes):
        return ["bytes", value.decode("latin-1")]
    if isinstance(value, (unixdb.Passwd, unixdb.Shadow)):
        return [type(value).__name__] + [plain(getattr(value, k)) for k in value.__slots__]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def call(function, *args):
    try:
        return plain(function(*args))
    except Exception as exc:            # the same refusal either way, not the message
        return ["raised", type(exc).__name__, getattr(exc, "errno", None)]


def collect(twins: dict) -> dict:
    """Each function's answers, in one build."""
    out = {}
    for name in NAMES:
        out["getpwnam %r" % name] = call(twins["getpwnam"], name)
        out["getspnam %r" % name] = call(twins["getspnam"], name)
    for password in PASSWORDS:
        for setting in SETTINGS:
            out["crypt %r %r" % (password[:20], setting[:40])] = call(twins["crypt"], password,
                                                                      setting)
    out["passwd_hashes"] = call(twins["passwd_hashes"], 50)
    out["shadow_hashes"] = call(twins["shadow_hashes"], 50)
    for limit in (-1, 0, 1, 10 ** 9):
        out["passwd_hashes %d" % limit] = call(twins["passwd_hashes"], limit)
        out["shadow_hashes %d" % limit] = call(twins["shadow_hashes"], limit)
    out["crypt_gensalt method"] = call(lambda: twins["crypt_gensalt"]()[:7])
    return out


def both() -> dict:
    pure = {name: getattr(unixdb, "pure_" + name) for name in TWINS}
    pure["crypt"] = cryptpw.pure_crypt
    built = {name: getattr(unixdb, "native_" + name) for name in TWINS}
    built["crypt"] = cryptpw.native_crypt
    return {"native": collect(built), "pure": collect(pure)}


def child() -> None:
    print(json.dumps(both()))


def assert_agree(results: dict) -> None:
    differ = ["%s: native %r, pure %r" % (key, results["native"][key], results["pure"][key])
              for key in results["native"] if results["native"][key] != results["pure"][key]]
    assert not differ, "\n".join(differ[:20])


@needs_native
def test_native_and_pure_agree_on_the_hosts_databases():
    results = both()
    assert_agree(results)
    assert results["native"]["getpwnam 'root'"][1] == "root"
    assert results["native"]["getpwnam 'root\\x00junk'"] is None


@needs_native
@pytest.mark.skipif(not NSS_WRAPPER.exists(), reason="nss_wrapper is not installed")
def test_native_and_pure_agree_under_nss_wrapper(tmp_path):
    latin = "m\xfcller".encode("latin-1")
    (tmp_path / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/sh\n"
                                      b"alice:x:4242:4242:Alice:/home/alice:/bin/sh\n"
                                      b"" + latin + b":x:4243:4243:J\xfcrgen:/home/" + latin
                                      + b":/bin/sh\n")
    sha = cryptpw.crypt(b"pw", b"$6$saltsalt$")
    (tmp_path / "shadow").write_bytes(b"root:*:19000:0:99999:7:::\n"
                                      b"alice:" + sha + b":19000:0:99999:7:::\n"
                                      b"" + latin + b":!" + sha + b":19000::::::\n")
    (tmp_path / "group").write_text("root:x:0:\n")
    tests = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(os.path.dirname(os.path.abspath(popper.__file__)))
    env = dict(os.environ, LD_PRELOAD=str(NSS_WRAPPER),
               NSS_WRAPPER_PASSWD=str(tmp_path / "passwd"),
               NSS_WRAPPER_GROUP=str(tmp_path / "group"),
               NSS_WRAPPER_SHADOW=str(tmp_path / "shadow"),
               PYTHONPATH=os.pathsep.join([top, tests] + sys.path))
    out = subprocess.run([sys.executable, "-c", "import test_backend_parity as t; t.child()"],
                         env=env, cwd=tests, stdout=subprocess.PIPE, check=True).stdout
    results = json.loads(out.decode().splitlines()[-1])
    assert_agree(results)
    native_ = results["native"]
    assert native_["getpwnam 'alice'"][1:5] == ["alice", ["bytes", "x"], 4242, 4242]
    assert native_["getpwnam 'm\xfcller'"][1] == "m\xfcller"
    assert native_["getpwnam 'm\xfcller'"][5] == "J\xfcrgen"
    assert native_["getspnam 'alice'"][2] == ["bytes", sha.decode()]
    for hostile in ("alice\0junk", "alice\0", "m\xfcller\0x"):
        assert native_["getpwnam %r" % hostile] is None
        assert native_["getspnam %r" % hostile] is None
    assert native_["shadow_hashes"] == [["bytes", "*"], ["bytes", sha.decode()],
                                        ["bytes", "!" + sha.decode()]]


@pytest.mark.parametrize("user,password", [("alice\0junk", b"pw"), ("\0", b"pw"),
                                           ("alice", b"pw\0junk"), ("\u20acuro", b"pw")])
def test_pam_refuses_a_nul_in_both_builds(user, password):
    from popper.auth import libpam
    logins = [libpam.pam_login, libpam.pure_pam_login]
    if native.PAM_BUILT:
        logins.append(libpam.native_pam_login)
    answers = {login("popper-nosuchservice", user, password, "localhost", "127.0.0.1")
               for login in logins}
    assert answers == {libpam.REFUSED}
    assert libpam.REFUSED[0] == libpam.PAM_AUTH_ERR == 7
