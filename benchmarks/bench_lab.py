"""Speed of the placement-policy lab: the replay loop's own cost per operation, and each
policy's cost per operation on synthetic traces of growing length.

The traces (seeded) allocate with probability 0.55 and free a random live object
otherwise, so the live set grows with the length (about a tenth of the ops are live at
the end); one op in ten is a realloc of a live object. Sizes are 16..256 bytes (so
that the bitmap's 256-byte blocks take every request) with a tail to 4 KiB for the
other policies when --sizes wide is given. Each figure is the best of --repeat replays
with verification off: ``elapsed_ns / ops`` from clock_gettime around the C loop
(sampling excluded). The null policy hands out fake addresses and does nothing, so its
figure is the loop's own cost per op (reading the op, the object table, the counters, one
indirect call); a policy's cost is its figure minus that.

    python benchmarks/bench_lab.py [--lengths 1000,10000,100000,1000000] [--repeat 3]
                                   [--budget 3] [--json FILE]

Targets (issue 7): the replay loop adds under 50 ns per op over the policy; buddy,
bitmap and slab O(1) or O(log n) per op (flat across lengths), the fits growing.

Standard library and pymalloc_real only.
"""
import argparse
import array
import datetime
import json
import platform
import random
import struct
import sys

from bench_python_api import cpu_model      # this directory: the same machine line

from pymalloc_real import lab

POLICIES = ("null",) + lab.POLICIES


def synthetic(n_ops, seed=1, wide=False):
    """A packed trace of n_ops ops whose live set grows with its length."""
    rnd = random.Random(seed)
    record = struct.Struct("<BBHIQQ")
    out = bytearray(record.size * n_ops)
    live = array.array("Q")
    next_id = 0
    for i in range(n_ops):
        r = rnd.random()
        if live and r < 0.45:
            k = rnd.randrange(len(live))
            oid = live[k]
            if r < 0.045:
                op, size = lab.REALLOC, rnd.randrange(16, 257)
            else:
                op, size = lab.FREE, 0
                live[k] = live[-1]
                live.pop()
        else:
            oid, op = next_id, lab.MALLOC
            size = rnd.randrange(16, 257)
            if wide and rnd.random() < 0.1:
                size = rnd.randrange(257, 4097)
            live.append(oid)
            next_id += 1
        record.pack_into(out, i * record.size, op, 0, 0, 0, oid, size)
    return lab._Packed(bytes(out), n_ops, next_id), len(live)


def best_ns_per_op(packed, policy, repeat):
    best = None
    for _ in range(repeat):
        with lab.Policy(policy) as p:
            result = p.replay(packed, verify=False, sample_every=max(1, packed.n_ops))
        if result.failed:
            raise SystemExit(f"{policy} refused {result.failed} requests: enlarge the region")
        ns = result.ns_per_op
        best = ns if best is None else min(best, ns)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="1000,10000,100000,1000000",
                        help="comma-separated trace lengths (ops)")
    parser.add_argument("--repeat", type=int, default=3, help="replays per figure (best kept)")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds: a policy is not run on the next length when, its "
                             "cost per op growing with the length, it would take longer")
    parser.add_argument("--sizes", choices=("narrow", "wide"), default="narrow",
                        help="request sizes: 16..256 (default) or with a tail to 4 KiB "
                             "(the bitmap then refuses some: left out)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    policies = [p for p in POLICIES if not (args.sizes == "wide" and p == "bitmap")]

    figures = {p: {} for p in policies}
    live_at_end = {}
    stopped = set()
    for index, n in enumerate(lengths):
        packed, live_at_end[n] = synthetic(n, wide=args.sizes == "wide")
        following = lengths[index + 1] if index + 1 < len(lengths) else None
        for policy in policies:
            if policy in stopped:
                continue
            ns = best_ns_per_op(packed, policy, args.repeat if n < 1_000_000 else 1)
            figures[policy][n] = ns
            print(f"{n:>9,} ops  {policy:<11} {ns:10.1f} ns/op", file=sys.stderr)
            # Predicted as if O(n) per op (cost growing with the live set): the linear
            # policies stop before a run of minutes.
            if following and ns * following * (following / n) / 1e9 > args.budget:
                stopped.add(policy)

    loop = figures["null"]
    print(f"Machine: {cpu_model()}; Python {platform.python_version()}; "
          f"{datetime.date.today()}")
    print()
    print("ns per op, verification off, best of "
          f"{args.repeat} (one run at 1,000,000 ops); live objects at the end: "
          + ", ".join(f"{live_at_end[n]:,}" for n in lengths))
    print()
    print("| policy | " + " | ".join(f"{n:,} ops" for n in lengths) + " | growth |")
    print("|---|" + "---:|" * (len(lengths) + 1))
    for policy in policies:
        row = figures[policy]
        cells = [f"{row[n]:.0f}" if n in row else "—" for n in lengths]
        ran = [n for n in lengths if n in row]
        growth = (f"{row[ran[-1]] / row[ran[0]]:.1f}x over {ran[-1] // ran[0]:,}x ops"
                  if len(ran) > 1 else "")
        name = "null (the loop alone)" if policy == "null" else policy
        print(f"| {name} | " + " | ".join(cells) + f" | {growth} |")
    print()
    largest = max(n for n in lengths if n in loop)
    print(f"Replay loop overhead: {loop[largest]:.1f} ns/op at {largest:,} ops "
          f"(target: under 50 ns/op) -> {'met' if loop[largest] < 50 else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": cpu_model(), "lengths": lengths, "live_at_end": live_at_end,
                       "ns_per_op": figures}, f, indent=2)


if __name__ == "__main__":
    main()
