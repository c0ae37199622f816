"""The two ndbm twins, _native/ndbm.c and popper/ndbm.py's pure engine,
against each other: the same answers and byte-identical files for a
10,000-key workload with deletes and many splits, each reading the other's
files in both byte orders, the same refusal of the same damaged files, and
a fuzz of random page and map bytes in which every operation ends (in a
result, Corrupt or TooBig) with the same outcome in both."""

import os
import random
import struct

import pytest

from popper import native, ndbm
from test_ndbm import NATIVE_ORDER, files, user_keys

pytestmark = pytest.mark.twin

TWINS = sorted(ndbm.ENGINES)
needs_native = pytest.mark.skipif("native" not in ndbm.ENGINES,
                                  reason="the C extension is not built")


def test_the_twin_in_use_matches_the_environment():
    # tox's native environment must use the C engine, pure the Python one.
    if os.environ.get("POPPER_EXPECT_NATIVE"):
        assert ndbm._engine is ndbm.ENGINES["native"]
    if os.environ.get("POPPER_PUREPYTHON"):
        assert ndbm._engine is ndbm.ENGINES["pure"]
    assert (ndbm._engine is ndbm.ENGINES.get("native")) == native.NATIVE


@needs_native
def test_the_same_hash():
    rng = random.Random(8)
    for _ in range(3000):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        assert ndbm.ENGINES["native"].dcalchash(key) == ndbm.dcalchash(key)


def outcome(call):
    try:
        return call()
    except (ndbm.Corrupt, ndbm.TooBig) as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "page", None))


def workload(base, twin: str, seed: int, keys: int, byteorder=None) -> list:
    """Seeded stores (replacing and inserting), deletes and fetches of
    `keys` distinct keys, then a walk: every answer, in order."""
    rng = random.Random(seed)
    names = [b"user%06d\0" % n for n in rng.sample(range(10 ** 6), keys)]
    answers = []
    with ndbm.open(base, "n", byteorder=byteorder, twin=twin) as db:
        for step in range(keys * 2):
            key = names[rng.randrange(len(names))] if step % 3 else names[step // 2]
            op = rng.random()
            if op < 0.6:
                value = bytes(rng.randrange(256) for _ in range(rng.randrange(24)))
                answers.append(db.store(key, value, replace=rng.random() < 0.9))
            elif op < 0.8:
                answers.append(db.delete(key))
            else:
                answers.append(db.fetch(key))
        answers.append(list(db.keys()))
    return answers


@needs_native
@pytest.mark.parametrize("byteorder", [None, "little", "big"])
def test_same_answers_and_bytes_for_10000_keys(tmp_path, byteorder):
    results = {twin: workload(tmp_path / twin, twin, 10, 10000, byteorder) for twin in TWINS}
    assert results["native"] == results["pure"]
    native, pure = files(tmp_path / "native"), files(tmp_path / "pure")
    assert len(native[1]) // 1024 > 500                      # many splits
    assert len(native[0]) == 4096
    assert native == pure


@needs_native
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_each_reads_the_others_files(tmp_path, byteorder):
    keys = user_keys(3000, seed=12)
    for writer in TWINS:
        with ndbm.open(tmp_path / writer, "c", byteorder=byteorder, twin=writer) as db:
            for n, key in enumerate(keys):
                db.store(key, struct.pack("<l", n))
            for key in keys[::7]:
                db.delete(key)
    for writer in TWINS:
        for reader in TWINS:
            with ndbm.open(tmp_path / writer, "w", byteorder=byteorder, twin=reader) as db:
                expected = {k: struct.pack("<l", n) for n, k in enumerate(keys)}
                for key in keys[::7]:
                    expected.pop(key, None)
                assert {k: db.fetch(k) for k in db.keys()} == expected
                for key in keys:
                    assert db.fetch(key) == expected.get(key)


@needs_native
@pytest.mark.parametrize("shorts", [[3, 1020, 1010, 1000], [-2], [600], [2, 1000, 1010],
                                    [2, 1030, 1010], [2, 1020, 4], [2, 1020, -5]])
def test_the_same_refusals(tmp_path, shorts):
    seen = {}
    for twin in TWINS:
        base = tmp_path / twin
        with ndbm.open(base, "c", twin=twin) as db:
            for key in user_keys(120, seed=13):
                db.store(key, b"value")
        with open(str(base) + ".pag", "r+b") as f:
            f.seek(1024)
            f.write(struct.pack("%s%dh" % (NATIVE_ORDER, len(shorts)), *shorts))
        with ndbm.open(base, "w", twin=twin) as db:
            seen[twin] = [outcome(lambda: db.fetch(key)) for key in user_keys(120, seed=13)]
            seen[twin] += [outcome(lambda: db.store(b"new", b"x")),
                           outcome(lambda: db.delete(b"user1")),
                           outcome(lambda: list(db.keys()))]
        seen[twin].append(files(base))
    assert seen["native"] == seen["pure"]
    assert any(isinstance(o, tuple) and o[0] == "Corrupt" and o[2] == 1 for o in seen["pure"])


@needs_native
def test_too_big_and_no_room_alike(tmp_path):
    seen = {}
    for twin in TWINS:
        with ndbm.open(tmp_path / twin, "c", twin=twin) as db:
            seen[twin] = [outcome(lambda: db.store(b"k" * 17, b"v" * n)) for n in (1000, 1001)]
            seen[twin].append(outcome(lambda: db.store(b"k" * 17, b"v" * 1001, replace=False)))
        seen[twin].append(files(tmp_path / twin))
    assert seen["native"] == seen["pure"]
    assert seen["pure"][:3] == [True, ("TooBig", str(ndbm._too_big(b"k" * 17, b"v" * 1001)),
                                       None), False]


def fuzz(base, twin: str, seed: int, rounds: int) -> dict:
    """Random damage to a real database's pages and map, then operations:
    each ends, in a result or Corrupt/TooBig.  Every outcome and the files."""
    rng = random.Random(seed)
    keys = user_keys(400, seed=7)
    outcomes = {}
    for round_ in range(rounds):
        with ndbm.open(base, "n", twin=twin) as db:
            for key in keys[:rng.randrange(1, 400)]:
                db.store(key, key * rng.randrange(4))
        dir_, pag = (bytearray(x) for x in files(base))
        kind = rng.randrange(4)
        if kind == 0:                                  # random bytes in a page's header
            at = rng.randrange(len(pag) // 1024) * 1024 + rng.randrange(64)
            pag[at:at + 4] = bytes(rng.randrange(256) for _ in range(4))
        elif kind == 1:                                # a whole page of random bytes
            at = rng.randrange(len(pag) // 1024) * 1024
            pag[at:at + 1024] = bytes(rng.randrange(256) for _ in range(1024))
        elif kind == 2 and dir_:                       # random map bytes
            for _ in range(rng.randrange(1, 20)):
                dir_[rng.randrange(64)] = rng.randrange(256)
        else:                                          # one offset anywhere in range
            at = rng.randrange(len(pag) // 1024) * 1024 + 2 * rng.randrange(1, 80)
            pag[at:at + 2] = struct.pack(NATIVE_ORDER + "h", rng.randrange(-50, 1100))
        with open(str(base) + ".dir", "wb") as f:
            f.write(dir_)
        with open(str(base) + ".pag", "wb") as f:
            f.write(pag)
        with ndbm.open(base, "w", twin=twin) as db:
            for n, key in enumerate(rng.sample(keys, 30) + [b"new%d" % i for i in range(30)]):
                value = key * rng.randrange(30)
                op = (lambda: db.fetch(key), lambda: db.store(key, value),
                      lambda: db.delete(key), lambda: len(list(db.keys())))[n % 4]
                outcomes[round_, n] = outcome(op)
        outcomes[round_] = files(base)
    return outcomes


@pytest.mark.parametrize("twin", TWINS)
def test_fuzz_random_page_bytes_ends_cleanly(tmp_path, twin):
    outcomes = fuzz(tmp_path / "db", twin, 11, 60)
    refused = [v for v in outcomes.values() if isinstance(v, tuple) and v[0] == "Corrupt"]
    assert len(refused) > 20                   # the damage was seen, and refused


@needs_native
@pytest.mark.parametrize("seed", [21, 22, 23])
def test_fuzz_the_same_outcomes(tmp_path, seed):
    assert fuzz(tmp_path / "native", "native", seed, 40) == fuzz(tmp_path / "pure", "pure",
                                                                  seed, 40)


@needs_native
def test_the_same_partial_blocks_and_deep_map(tmp_path):
    """A page and a map block cut short read as zeros, and a map deeper
    than the hash is refused, alike."""
    seen = {}
    for twin in TWINS:
        base = tmp_path / twin
        with ndbm.open(base, "c", twin=twin) as db:
            for key in user_keys(300, seed=14):
                db.store(key, b"value")
        os.truncate(str(base) + ".pag", os.path.getsize(str(base) + ".pag") - 100)
        with ndbm.open(base, "w", twin=twin) as db:
            seen[twin] = [outcome(lambda: sorted(db.keys()))]
            seen[twin] += [outcome(lambda: db.store(key, b"again")) for key in user_keys(50)]
        os.truncate(str(base) + ".dir", 3000)
        with ndbm.open(base, "w", twin=twin) as db:
            seen[twin] += [outcome(lambda: db.store(key, b"more")) for key in user_keys(50)]
        h, hmask, bits = ndbm.dcalchash(b"user1"), 0, {}
        for _ in range(33):                                     # user1's path, every level
            bit = (h & hmask) + hmask
            bits[bit >> 3] = bits.get(bit >> 3, 0) | 1 << (bit & 7)
            hmask = hmask * 2 + 1
        with open(str(base) + ".dir", "wb") as f:
            for at, byte in sorted(bits.items()):
                f.seek(at)
                f.write(bytes([byte]))
            f.truncate((max(bits) + 4096) // 4096 * 4096)
        with ndbm.open(base, "w", twin=twin) as db:
            seen[twin] += [outcome(lambda: db.fetch(b"user1")), outcome(lambda: db.delete(b"x")),
                           outcome(lambda: db.store(b"user1", b"v"))]
        with open(str(base) + ".pag", "rb") as f:            # (the .dir is 1 GiB, sparse)
            seen[twin].append(f.read())
    assert seen["native"] == seen["pure"]
    assert seen["pure"][-4][0] == "Corrupt" and "deeper" in seen["pure"][-4][1]
