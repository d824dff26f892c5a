"""`pymalloc-real replay TRACE`: a malloc trace replayed under the placement policies of
the lab, their footprint and fragmentation as a table, a chart and a picture.
"""


import importlib.util
import json
import os
import sys

from .tables import fit, markdown_argument
from .errors import UsageError, check_output_file, positive_float, positive_int
from .text import byte_size, names_list, wrap


# ---- replay (the placement-policy lab) --------------------------------------------------------

def add_parser(commands):
    from .. import lab
    parser = commands.add_parser(
        "replay", help="a malloc trace under the placement policies: footprint, fragmentation",
        description="Replay the malloc/free/realloc trace TRACE under each placement policy "
                    "of the lab (each on its own region of real mmapped memory) and under our "
                    "ptmalloc core and glibc's malloc, and print a Markdown table: peak "
                    "footprint taken from the OS, its ratio to the peak live bytes, internal "
                    "fragmentation at the peak, external fragmentation (1 - largest free / "
                    "total free, over time), failed requests, time per op and minor faults. "
                    "TRACE is a trace file of pymalloc_real.trace or the text form (one op a "
                    "line: m ID SIZE, f ID, r ID SIZE, c ID SIZE, a ID SIZE ALIGN). "
                    "Exit status: 0, or 2 on an error.")
    parser.add_argument("trace", metavar="TRACE", help="the trace file")
    parser.add_argument("--policies", default="all", metavar="A,B,...",
                        help=f"comma-separated, of {', '.join(lab.POLICIES)} (default all)")
    parser.add_argument("--region", metavar="SIZE",
                        help="address space of each region policy, e.g. 64M, 1G "
                             "(default 256M)")
    parser.add_argument("--block-size", type=positive_int, metavar="BYTES",
                        help="bitmap: the one block size (default 256)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the pattern checks in every block (faster, for timing)")
    parser.add_argument("--time-limit", type=positive_float, default=30.0, metavar="SECONDS",
                        help="stop a policy after this long (the fits and the minimal "
                             "allocator are O(free blocks) per op; default 30)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the footprint over time per policy into this PNG")
    parser.add_argument("--picture", metavar="POLICY[@OP]",
                        help="also draw POLICY's region after OP ops (default: the end) "
                             "as text")
    parser.add_argument("--json", action="store_true",
                        help="print every result, with its time series, as JSON")
    markdown_argument(parser)
    parser.set_defaults(run=_replay)


def _replay(args):
    from .. import lab
    policies = lab.POLICIES if args.policies == "all" else names_list(args.policies)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    for option, path in (("--plot", args.plot),):
        if path:
            check_output_file(path, option)
    region = byte_size(args.region) if args.region else None
    trace = _well_formed(lab.load(args.trace), args.trace)
    trace = lab.pack(trace)
    table = lab.compare(trace, policies, region_size=region, verify=not args.no_verify,
                        block_size=args.block_size, time_limit=args.time_limit,
                        description=os.path.basename(args.trace))
    plot = table.plot(args.plot) if args.plot else None
    picture = None
    if args.picture:
        name, _, at = args.picture.partition("@")
        if at and not at.isdigit():
            raise lab.LabError(f"--picture takes POLICY or POLICY@OP, not {args.picture!r}")
        picture = lab.picture(trace, name, at_op=int(at) if at else None,
                              region_size=region, **({"block_size": args.block_size}
                                                     if name == "bitmap" and args.block_size
                                                     else {}))
    if args.json:
        json.dump({"trace": {"path": args.trace, "ops": trace.n_ops,
                             "objects": trace.n_objects},
                   **table.as_dict(), "plot": plot, "picture": picture}, sys.stdout, indent=2)
        print()
        return 0
    print(wrap(f"pymalloc-real replay: {args.trace}", ""))
    print(f"  {trace.n_ops:,} ops on {trace.n_objects:,} objects; the replay loop alone costs "
          f"{table.loop_ns_per_op:.0f} ns/op{'' if args.no_verify else ' (ns/op below include the pattern checks)'}")
    print()
    print(fit(table.as_table(), args.markdown))
    print()
    print(wrap("Footprint: region policies, the high-water mark of their region and side "
                "tables (never given back); ptmalloc and glibc, what their heaps and mmaps "
                "grew by (glibc may reuse memory it already held: below the live bytes).", ""))
    if picture:
        print()
        print(picture)
    if plot:
        print(f"Plot: {plot}")
    return 0


def _well_formed(trace, path):
    """The trace, refused when it is empty or not a program's history (a double free,
    a free of an object never made): the replay would be meaningless."""
    if not len(trace):
        raise UsageError(f"{path} holds no operations: give a trace of `pymalloc-real "
                         "trace` or the text form (m ID SIZE, f ID, r ID SIZE, ...)")
    problems = trace.problems(limit=3)
    if problems:
        raise UsageError(f"{path} is not a well-formed trace: {'; '.join(problems)} (each "
                         "object is made once, then freed at most once, by its id)")
    return trace
