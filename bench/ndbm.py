"""What one ndbm operation costs, in each twin (popper/ndbm.py, _native/ndbm.c).

    python3 -m bench.ndbm [--keys 10000] [--reps 5]

Stores `keys` Qpopper-like pairs (a user name and a NUL; a 4-byte value,
bulldb's) into a new database, fetches each, walks the keys, and deletes
each, on a temporary directory; prints microseconds per operation (the
best of `reps` runs) for each twin that is here.  It measures; it asserts
nothing.
"""

import argparse
import pathlib
import random
import struct
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from popper import ndbm  # noqa: E402


def run(base: pathlib.Path, twin: str, keys: list) -> dict:
    times = {}
    with ndbm.open(base, "n", twin=twin) as db:
        start = time.perf_counter()
        for n, key in enumerate(keys):
            db.store(key, struct.pack("<l", n))
        times["store"] = time.perf_counter() - start
        start = time.perf_counter()
        for key in keys:
            db.fetch(key)
        times["fetch"] = time.perf_counter() - start
        start = time.perf_counter()
        walked = sum(1 for _ in db.keys())
        times["keys"] = time.perf_counter() - start
        start = time.perf_counter()
        for key in keys:
            db.delete(key)
        times["delete"] = time.perf_counter() - start
    assert walked == len(keys)
    return {op: 1e6 * seconds / len(keys) for op, seconds in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    keys = [b"user%06d\0" % n for n in rng.sample(range(10 ** 6), args.keys)]
    with tempfile.TemporaryDirectory() as tmp:
        print("%d keys; microseconds per operation, best of %d" % (args.keys, args.reps))
        print("%-8s %8s %8s %8s %8s" % ("twin", "store", "fetch", "keys", "delete"))
        for twin in sorted(ndbm.ENGINES):
            runs = [run(pathlib.Path(tmp) / twin, twin, keys) for _ in range(args.reps)]
            best = {op: min(r[op] for r in runs) for op in runs[0]}
            print("%-8s %8.2f %8.2f %8.2f %8.2f"
                  % (twin, best["store"], best["fetch"], best["keys"], best["delete"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
