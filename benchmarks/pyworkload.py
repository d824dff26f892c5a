"""An allocation-heavy pure-Python workload: the `cpython` benchmark of
`pymalloc-real bench`.

The harness runs it with PYTHONMALLOC=malloc, so every object CPython creates comes
from the allocator under test (malloc, not CPython's own arenas), and PYTHONHASHSEED=0,
so its output is the same on every run. Each round builds and throws away the things
Python programs make most: dicts of records, lists that grow and are sorted and
sliced, strings split, joined and formatted, JSON encoded and decoded, sets, and
short-lived tuples. It prints a few totals and a CRC of every round's JSON; the
harness hashes that output into the run's checksum, so an allocator that broke the
interpreter's data would show as a different checksum.

Usage: python pyworkload.py [-n ROUNDS] [-s SEED]   (standard library only)
"""
import argparse
import json
import random
import zlib

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray "
         "yankee zulu").split()


def records(rng, count):
    """A list of dicts with nested lists and strings, like rows decoded from an API."""
    rows = []
    for i in range(count):
        name = "-".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        rows.append({"id": i, "name": name, "score": rng.randint(0, 10_000),
                     "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 6))],
                     "point": (rng.random(), rng.random())})
    return rows


def index(rows):
    """Group names by tag: a dict of lists that grows one append at a time."""
    by_tag = {}
    for row in rows:
        for tag in row["tags"]:
            by_tag.setdefault(tag, []).append(row["name"])
    return by_tag


def text(rows):
    """Strings made, split, joined and reformatted."""
    lines = [f"{row['id']:06d} {row['name'].upper()} {row['score']}" for row in rows]
    blob = "\n".join(lines)
    words = blob.split()
    counts = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return len(blob), len(counts)


def one_round(rng, size):
    """One round: build, transform and drop a batch of objects; return its summary."""
    rows = records(rng, size)
    rows.sort(key=lambda row: (row["score"], row["name"]))
    by_tag = index(rows)
    encoded = json.dumps(rows[: size // 2], sort_keys=True)
    decoded = json.loads(encoded)
    chars, distinct = text(rows)
    unique = {name for names in by_tag.values() for name in names}
    pairs = [(row["id"], len(row["tags"])) for row in decoded if row["tags"]]
    summary = (zlib.crc32(encoded.encode()), chars, distinct, len(unique), len(pairs))
    return summary, decoded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("-s", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("-t", type=int, default=1, help="accepted for the harness; ignored")
    args = parser.parse_args(argv)
    rng = random.Random(args.s)
    crc, totals = 0, [0, 0, 0, 0]
    kept = []       # some rounds' rows survive a while: long-lived data between the churn
    for round_ in range(args.n):
        (round_crc, *numbers), decoded = one_round(rng, 200 + round_ % 300)
        crc = zlib.crc32(round_crc.to_bytes(4, "little"), crc)
        totals = [total + number for total, number in zip(totals, numbers)]
        if round_ % 3 == 0:
            kept.append(decoded)
        if len(kept) > 40:
            del kept[:20]
    print(f"rounds={args.n} seed={args.s}")
    print(f"chars={totals[0]} distinct_words={totals[1]} unique_names={totals[2]} "
          f"tagged={totals[3]}")
    print(f"crc={crc:08x} kept={sum(map(len, kept))}")


if __name__ == "__main__":
    main()
