"""The page-replacement simulator: the algorithms of seed 001 (OPT, NRU, LRU, FIFO,
second chance, clock, and aging) run over traces of page references.

The work is in C (``csrc/pagesim/pagesim.c``, through the cffi module): a :class:`Trace` holds
its references there, as dense page ids, so a run over ten million references takes
a fraction of a second. This module builds traces (from page lists, from the memory
accesses of valgrind's lackey tool or any list of accesses, from generators), runs
one algorithm (:func:`simulate`) or all of them over a range of frame counts
(:func:`curve`, a table that prints and plots), finds Belady's anomaly
(:func:`belady_anomalies`) and records a program's accesses (:func:`record`).

    >>> from pymalloc_real import pagesim
    >>> pagesim.simulate([7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1], 3, "opt").faults
    9
"""
import array
import collections
import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import tempfile

from ._core import ffi, lib
from .errors import PymallocError

__all__ = ["ALGORITHMS", "Trace", "Reference", "Result", "Curve", "Anomaly", "Recording",
           "PagesimError", "simulate", "curve", "belady_anomalies", "record"]

# Every algorithm, by the name used in the API and on the command line, in the order of
# the tables: the optimum first, then the exact and approximate LRUs, then the FIFOs.
ALGORITHMS = ("opt", "lru", "aging", "nru", "clock", "second_chance", "fifo")
_CODES = {"opt": lib.PS_OPT, "nru": lib.PS_NRU, "lru": lib.PS_LRU, "fifo": lib.PS_FIFO,
          "second_chance": lib.PS_SECOND_CHANCE, "clock": lib.PS_CLOCK,
          "aging": lib.PS_AGING}

PAGE_SIZE = 4096
_BLOCK = 16 << 20               # lackey text is parsed this many bytes at a time
_SNIFF = 64 << 10               # and recognised from this much of its start
_LACKEY_LINE = re.compile(rb"^(?:==\d+==|I  [0-9a-fA-F]+,\d+| [LSM] [0-9a-fA-F]+,\d+)",
                          re.M)


class PagesimError(PymallocError, ValueError):
    """A trace or a parameter the simulator cannot take, or a recording that failed."""


def _check(status):
    if status == lib.PS_ERR_NOMEM:
        raise MemoryError("out of memory in the page-replacement simulator")
    if status == lib.PS_ERR_TOO_LONG:
        raise PagesimError(f"a trace holds at most {lib.PS_MAX_LENGTH:,} references "
                           f"and {lib.PS_MAX_PAGES:,} distinct pages")
    if status != lib.PS_OK:
        raise PagesimError(f"the simulator refused an argument (status {status})")


def _page_shift(page_size):
    if not isinstance(page_size, int) or page_size < 1 or page_size & (page_size - 1):
        raise PagesimError(f"the page size must be a power of two, not {page_size!r}")
    return page_size.bit_length() - 1


Reference = collections.namedtuple("Reference", "page write")
Reference.__doc__ = "One reference of a trace: a page number, and whether it was a store."


class Trace:
    """A sequence of page references, each a load or a store, held in C.

    Build one with a class method: :meth:`from_pages` (page numbers), :meth:`from_text`
    (a plain list in text), :meth:`from_lackey` and :meth:`load` (valgrind lackey's
    ``--trace-mem=yes`` output, or either kind of file), :meth:`from_accesses`
    (address ranges, such as an allocator's recorded reads and writes), or a generator:
    :meth:`sequential`, :meth:`uniform`, :meth:`working_set`.

    ``len(trace)`` is the number of references, ``trace.pages`` the number of distinct
    pages, ``trace.stores`` the number of stores; iterating yields :class:`Reference`
    tuples. ``description`` says where it came from, ``page_size`` the page size used
    to turn addresses into pages (None when the trace was made of page numbers).
    """

    __slots__ = ("_c", "description", "page_size")

    def __init__(self, description="", page_size=None):
        handle = lib.ps_trace_new()
        if handle == ffi.NULL:
            raise MemoryError("out of memory in the page-replacement simulator")
        self._c = ffi.gc(handle, lib.ps_trace_delete)
        self.description = description
        self.page_size = page_size

    # ---- building ----

    @classmethod
    def from_pages(cls, pages, writes=None, description="page list"):
        """References to ``pages`` (integers 0 to 2**64-1), loads unless ``writes``
        (one truth value per page) marks stores."""
        try:
            numbers = array.array("Q", pages)
        except (OverflowError, TypeError) as error:
            raise PagesimError(f"page numbers are integers from 0 to 2**64-1: {error}") from None
        flags = None
        if writes is not None:
            flags = bytes(1 if w else 0 for w in writes)
            if len(flags) != len(numbers):
                raise PagesimError(f"{len(flags)} write flags for {len(numbers)} pages")
        trace = cls(description)
        if numbers:
            _check(lib.ps_trace_append(trace._c, ffi.from_buffer("uint64_t[]", numbers),
                                       ffi.from_buffer("uint8_t[]", flags) if flags else ffi.NULL,
                                       len(numbers)))
        return trace

    @classmethod
    def from_text(cls, text, description="page list"):
        """A plain list of page numbers: decimal or 0x-hexadecimal, separated by spaces,
        commas or newlines, each optionally followed by ``w`` for a store ("3 5w 7");
        ``#`` starts a comment."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        pages, writes = [], []
        for number, line in enumerate(text.splitlines(), 1):
            for token in line.split("#", 1)[0].replace(",", " ").split():
                store = token[-1] in "wW"       # never a digit, not even in hex
                digits = token[:-1] if store else token
                try:
                    page = int(digits, 0)
                except ValueError:
                    raise PagesimError(f"line {number}: {token!r} is not a page number "
                                       "(decimal or 0x-hex, with w for a store)") from None
                pages.append(page)
                writes.append(store)
        return cls.from_pages(pages, writes, description)

    @classmethod
    def from_lackey(cls, text, page_size=PAGE_SIZE, instructions=True, description="lackey"):
        """The references in the text of ``valgrind --tool=lackey --trace-mem=yes``: one
        per page touched by each load (L), store (S), modify (M: one reference that
        dirties the page) and, unless ``instructions`` is false, instruction fetch (I).
        An access across a page boundary touches both pages; other lines are skipped."""
        if isinstance(text, str):
            text = text.encode()
        trace = cls(description, page_size)
        trace._parse_lackey(bytes(text) + b"\n", _page_shift(page_size), instructions)
        return trace

    @classmethod
    def load(cls, path, format="auto", page_size=PAGE_SIZE, instructions=True):
        """A trace file: lackey's output (``format="lackey"``) or a plain list of page
        numbers (``"pages"``, see :meth:`from_text`); ``"auto"`` tells them apart by
        their first lines. Lackey files are read in blocks, so their size is no limit."""
        if format not in ("auto", "lackey", "pages"):
            raise PagesimError(f"unknown trace format {format!r}: auto, lackey or pages")
        with open(path, "rb") as f:
            start = f.read(_SNIFF)
            if format == "auto":
                format = "lackey" if _LACKEY_LINE.search(start) else "pages"
            name = os.path.basename(os.fspath(path))
            if format == "pages":
                return cls.from_text(start + f.read(), description=name)
            trace = cls(name, page_size)
            shift = _page_shift(page_size)
            buffer = bytearray(start)
            while True:
                block = f.read(_BLOCK)
                if not block:
                    break
                buffer += block
                del buffer[:trace._parse_lackey(buffer, shift, instructions)]
            trace._parse_lackey(buffer + b"\n", shift, instructions)
        return trace

    def _parse_lackey(self, text, shift, instructions):
        """Parse the complete lines of ``text``; return how many bytes they took."""
        consumed = ffi.new("size_t *")
        _check(lib.ps_trace_parse_lackey(self._c, ffi.from_buffer(text), len(text), shift,
                                         bool(instructions), consumed))
        return consumed[0]

    @classmethod
    def from_accesses(cls, accesses, page_size=PAGE_SIZE, description="accesses"):
        """The pages touched by ``accesses``, an iterable of (address, size, is_write):
        each touches every page from ``address`` to ``address + size - 1`` in order.
        This is how a recorded allocator trace (the blocks malloc returned, as they were
        written and read) becomes page references."""
        addresses, sizes, writes = array.array("Q"), array.array("Q"), bytearray()
        try:
            for address, size, write in accesses:
                addresses.append(address)
                sizes.append(size)
                writes.append(1 if write else 0)
        except (OverflowError, TypeError) as error:
            raise PagesimError(f"an access is (address, size, is_write) with address and "
                               f"size from 0 to 2**64-1: {error}") from None
        trace, shift = cls(description, page_size), _page_shift(page_size)
        if addresses:
            status = lib.ps_trace_append_accesses(
                trace._c, ffi.from_buffer("uint64_t[]", addresses),
                ffi.from_buffer("uint64_t[]", sizes), ffi.from_buffer("uint8_t[]", writes),
                len(addresses), shift)
            if status == lib.PS_ERR_INVALID:
                raise PagesimError("an access runs past the end of the address space")
            _check(status)
        return trace

    @classmethod
    def sequential(cls, pages, length, write_fraction=0.0, seed=0):
        """A loop over ``pages`` pages: 0, 1, ..., pages-1, 0, 1, ... (``length``
        references). LRU and FIFO fault on every reference once pages exceed frames."""
        return cls._generate(lib.PS_GEN_SEQUENTIAL, f"sequential loop over {pages} pages",
                             pages, length, write_fraction, seed)

    @classmethod
    def uniform(cls, pages, length, write_fraction=0.0, seed=0):
        """Each reference uniform over ``pages`` pages: no locality at all."""
        return cls._generate(lib.PS_GEN_UNIFORM, f"uniform over {pages} pages", pages,
                             length, write_fraction, seed)

    @classmethod
    def working_set(cls, pages, length, working_set=32, phase=10_000, locality=0.9,
                    write_fraction=0.0, seed=0):
        """Locality: with probability ``locality`` a reference goes to the current
        working set (``working_set`` consecutive pages at a random place), else to any
        of ``pages`` pages; the working set moves every ``phase`` references."""
        return cls._generate(lib.PS_GEN_WORKING_SET,
                             f"working set of {working_set} of {pages} pages, locality "
                             f"{locality:g}, phase {phase}", pages, length, write_fraction,
                             seed, working_set=working_set, phase=phase, locality=locality)

    @classmethod
    def _generate(cls, kind, description, pages, length, write_fraction, seed, **local):
        generator = ffi.new("struct ps_generator *")
        try:
            generator.kind, generator.pages, generator.length = kind, pages, length
            generator.write_fraction, generator.seed = write_fraction, seed
            for name, value in local.items():
                setattr(generator, name, value)
        except (OverflowError, TypeError) as error:
            raise PagesimError(f"generator parameter out of range: {error}") from None
        trace = cls(description + (f", {write_fraction:.0%} stores" if write_fraction else ""))
        status = lib.ps_trace_generate(trace._c, generator)
        if status == lib.PS_ERR_INVALID:
            raise PagesimError("generator parameters: pages >= 1, 1 <= working_set <= "
                               "pages, phase >= 1, locality and write_fraction in 0..1")
        _check(status)
        return trace

    # ---- reading ----

    def __len__(self):
        return self._c.length

    @property
    def pages(self):
        """The number of distinct pages referenced."""
        return self._c.pages

    @property
    def stores(self):
        """The number of references that are stores."""
        return bytes(ffi.buffer(self._c.writes, self._c.length)).count(1) if len(self) else 0

    def page_numbers(self):
        """The distinct pages, in order of their first reference."""
        return list(ffi.unpack(self._c.page_numbers, self._c.pages)) if self.pages else []

    def __iter__(self):
        numbers = self.page_numbers()
        ids = ffi.unpack(self._c.ids, len(self)) if len(self) else []
        writes = ffi.buffer(self._c.writes, len(self)) if len(self) else b""
        for page_id, write in zip(ids, bytes(writes)):
            yield Reference(numbers[page_id], bool(write))

    def __repr__(self):
        return (f"<Trace {self.description!r}: {len(self):,} references to {self.pages:,} "
                f"pages, {self.stores:,} stores>")


def _as_trace(trace):
    return trace if isinstance(trace, Trace) else Trace.from_pages(trace)


@dataclasses.dataclass(frozen=True)
class Result:
    """One run of one algorithm: ``faults + hits == references``; ``evictions`` are
    the faults that had to free a frame; ``writebacks`` the evicted pages that were
    dirty (a store since they were loaded). Dirty pages still resident at the end are
    not counted: nothing evicts them."""
    algorithm: str
    frames: int
    references: int
    faults: int
    hits: int
    evictions: int
    writebacks: int

    @property
    def fault_rate(self):
        return self.faults / self.references if self.references else 0.0


def simulate(trace, frames, algorithm="lru", tick=None):
    """Run ``algorithm`` (one of :data:`ALGORITHMS`) over ``trace`` (a :class:`Trace`
    or a list of page numbers) with ``frames`` page frames; return a :class:`Result`.
    ``tick`` is the number of references between clearings of the R bits (NRU) and
    shifts of the counters (aging); by default 4 x frames."""
    trace = _as_trace(trace)
    code = _CODES.get(algorithm)
    if code is None:
        raise PagesimError(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    if not isinstance(frames, int) or not 1 <= frames < 2 ** 32:
        raise PagesimError(f"frames must be an integer from 1 to 2**32-1, not {frames!r}")
    if tick is not None and (not isinstance(tick, int) or not 1 <= tick < 2 ** 64):
        raise PagesimError(f"tick must be a positive integer, not {tick!r}")
    out = ffi.new("struct ps_result *")
    _check(lib.ps_simulate(trace._c, frames, code, tick or 0, out))
    return Result(algorithm, frames, len(trace), out.faults, out.hits, out.evictions,
                  out.writebacks)


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """Belady's anomaly: with ``frames`` frames the algorithm faults ``faults`` times,
    more than the ``fewer_faults`` it took with ``fewer_frames`` (the next smaller
    frame count tried)."""
    frames: int
    faults: int
    fewer_frames: int
    fewer_faults: int


@dataclasses.dataclass(frozen=True)
class Curve:
    """Faults against frames for several algorithms on one trace: ``results[name]``
    holds one :class:`Result` per entry of ``frames``, in that order."""
    description: str
    references: int
    pages: int
    frames: tuple
    algorithms: tuple
    results: dict

    def faults(self, algorithm):
        return [result.faults for result in self.results[algorithm]]

    def anomalies(self, algorithm="fifo"):
        """Where more frames gave more faults (see :func:`belady_anomalies`)."""
        return _anomalies(self.frames, self.faults(algorithm))

    def markdown(self):
        """Faults per frame count, one column per algorithm, as a Markdown table."""
        lines = ["| frames | " + " | ".join(self.algorithms) + " |",
                 "|---:|" + "---:|" * len(self.algorithms)]
        for row, frames in enumerate(self.frames):
            cells = (f"{self.results[name][row].faults:,}" for name in self.algorithms)
            lines.append(f"| {frames} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def as_dict(self):
        return {"description": self.description, "references": self.references,
                "pages": self.pages, "frames": list(self.frames),
                "results": {name: [dataclasses.asdict(r) for r in runs]
                            for name, runs in self.results.items()}}

    def plot(self, path, title=None):
        """Draw faults against frames, one line per algorithm, into the PNG ``path``;
        return the path. Belady's anomalies of FIFO are circled. Needs matplotlib."""
        from matplotlib.figure import Figure     # optional dependency: only when plotting

        figure = Figure(figsize=(8, 5), layout="constrained")
        ax = figure.add_subplot()
        styles = ("-", "--", "-.", ":")     # clock and second chance coincide: both show
        for number, name in enumerate(self.algorithms):
            ax.plot(self.frames, self.faults(name), linestyle=styles[number % len(styles)],
                    marker="." if len(self.frames) > 20 else "o", markersize=4,
                    linewidth=1.2, label=name)
        if "fifo" in self.algorithms:
            found = self.anomalies("fifo")
            if found:
                ax.scatter([a.frames for a in found], [a.faults for a in found], s=120,
                           facecolors="none", edgecolors="#b00020", linewidths=1.5,
                           label="Belady's anomaly (FIFO)", zorder=3)
        ax.set_xlabel("page frames")
        ax.set_ylabel("page faults")
        every = [n for name in self.algorithms for n in self.faults(name)]
        if min(every) > 0 and max(every) > 50 * min(every):
            ax.set_yscale("log")        # compulsory faults to thrashing: decades apart
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(title or f"{self.description}: {self.references:,} references to "
                              f"{self.pages:,} pages", fontsize=10)
        figure.savefig(path, dpi=80)
        return path


def curve(trace, frames=range(1, 65), algorithms=ALGORITHMS, tick=None, progress=None):
    """Every algorithm of ``algorithms`` (names, or "all") over ``trace`` for each frame
    count in ``frames``; returns a :class:`Curve`. ``progress(done, total, label)`` is
    called before each run and once at the end."""
    trace = _as_trace(trace)
    if algorithms == "all":
        algorithms = ALGORITHMS
    algorithms = tuple(algorithms)
    unknown = [name for name in algorithms if name not in _CODES]
    if unknown or not algorithms:
        raise PagesimError(f"unknown algorithm {', '.join(unknown) or '(none given)'}: "
                           f"choose from {', '.join(ALGORITHMS)}")
    frames = tuple(frames)
    if not frames:
        raise PagesimError("no frame counts given")
    total, done, results = len(frames) * len(algorithms), 0, {}
    for name in algorithms:
        runs = []
        for count in frames:
            if progress:
                progress(done, total, f"{name}, {count} frames")
            runs.append(simulate(trace, count, name, tick))
            done += 1
        results[name] = tuple(runs)
    if progress:
        progress(total, total, "")
    return Curve(trace.description, len(trace), trace.pages, frames, algorithms, results)


def _anomalies(frames, faults):
    pairs = sorted(zip(frames, faults))
    return [Anomaly(f, n, fewer, fewer_n)
            for (fewer, fewer_n), (f, n) in zip(pairs, pairs[1:]) if n > fewer_n]


def belady_anomalies(trace, frames=range(1, 17), algorithm="fifo"):
    """The frame counts where ``algorithm`` (FIFO by default) faults more with more
    frames: Belady's anomaly. Each frame count is compared with the next smaller one
    in ``frames``. A list of :class:`Anomaly`, empty when there is none; stack
    algorithms (OPT, LRU) never have one."""
    trace = _as_trace(trace)
    frames = sorted(frames)
    return _anomalies(frames, [simulate(trace, count, algorithm).faults for count in frames])


@dataclasses.dataclass(frozen=True)
class Recording:
    """A command run under lackey: its trace in ``path``, its exit status, the ``pid``
    traced and the command line it ran last (``recorded``: a wrapper's program)."""
    command: tuple
    path: str
    exit_status: int
    pid: int = 0
    recorded: str = ""


def record(command, path, stdout=None, stderr=None, timeout=None):
    """Run ``command`` (a list) under ``valgrind --tool=lackey --trace-mem=yes``, its
    memory trace (valgrind's log) into ``path``; ``stdout``/``stderr`` as for subprocess.
    The trace follows the process through exec (a wrapper's log is replaced by its
    program's); forked processes' logs are dropped. A :class:`Recording`."""
    command = [os.fspath(arg) for arg in command]
    if not command:
        raise PagesimError("no command to record")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise PagesimError("valgrind is not installed (recording runs the command under "
                           "valgrind --tool=lackey; on Debian: apt-get install valgrind)")
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)         # so that an old trace is never taken for this one
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-lackey-") as scratch:
        pattern = os.path.join(scratch, "lackey.%p")
        proc = subprocess.Popen([valgrind, "--tool=lackey", "--trace-mem=yes",
                                 "--trace-children=yes", f"--log-file={pattern}", *command],
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill(), proc.wait()
            raise PagesimError(f"{command[0]} under lackey ran longer than {timeout} s") from None
        own = pattern.replace("%p", str(proc.pid))
        recorded, references = _lackey_summary(own) if os.path.exists(own) else ("", False)
        if not references:
            raise PagesimError(f"valgrind wrote no trace for {command[0]} (pid {proc.pid}, "
                               f"program {recorded or '?'}, exit status {returncode}): is "
                               "it a program valgrind can run?")
        shutil.move(own, path)
    return Recording(tuple(command), os.fspath(path), returncode, proc.pid, recorded)


def _lackey_summary(path):
    """(the command line valgrind's log names, whether it holds a reference line)."""
    recorded = ""
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"==") and b"== Command: " in line:
                recorded = line.partition(b"== Command: ")[2].decode("utf-8", "replace").strip()
            elif line[:2] in (b"I ", b" L", b" S", b" M"):
                return recorded, True
    return recorded, False
