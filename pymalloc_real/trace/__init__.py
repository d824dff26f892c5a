"""Allocation traces (issue 7): what a program asked of malloc, call by call, as data.

A :class:`Trace` is a sequence of operations ``(op, id, size, align_log2, thread)``:

=====  ==============  =====================================================================
 op     name            meaning
=====  ==============  =====================================================================
 1      ``MALLOC``      malloc(size) creates object ``id``
 2      ``FREE``        free(id); size and alignment are 0
 3      ``REALLOC``     realloc(id, size): the object keeps its id (realloc(NULL, n) is
                        recorded as a malloc, realloc(p, 0) as a free)
 4      ``CALLOC``      calloc: size is the total, nmemb * size
 5      ``MEMALIGN``    memalign, posix_memalign, aligned_alloc, valloc, pvalloc: an object
                        of ``size`` bytes aligned to ``2 ** align_log2``
=====  ==============  =====================================================================

Object ids are dense, ``0 .. n_objects - 1``, numbered in the order objects are created
when the trace comes from a program; threads are small dense numbers ``0, 1, 2, ...`` in
the order of their first operation. ``len(trace)`` is the number of operations,
iterating yields the tuples, ``trace[i]`` one of them, and ``trace.packed()`` the
operations as little-endian 24-byte records, C's::

    struct lab_op { uint8_t op; uint8_t align_log2; uint16_t thread; uint32_t reserved;
                    uint64_t id; uint64_t size; };     /* struct.pack('<BBHIQQ', ...) */

which is what the placement-policy lab (``pymalloc_real.lab.replay``) reads.

Three file formats, told apart by their first bytes (:func:`load` reads all three):

* **text** (``Trace.to_text``/``from_text``): one operation per line, ``m ID SIZE``,
  ``f ID``, ``r ID SIZE``, ``c ID SIZE``, ``a ID SIZE ALIGN`` (ALIGN in bytes), with
  `` tTHREAD`` appended when the thread is not 0; ``#`` starts a comment; the first line
  is a header comment.
* **binary** (``Trace.save``): ``b"PRMTRACE"``, a version byte (1), then unsigned LEB128
  varints: the number of operations, objects and threads, and the description's length
  followed by its UTF-8 bytes. Then one record per operation, starting with a tag byte::

      bits 0-2  op (1-5)
      bit  3    the thread changed: a varint thread number follows
      bits 4-7  the id, relative to `created` (how many creating operations came before):
                  malloc, calloc, memalign: 0 when id == created (always so for a
                    recorded trace), else 15 and a zigzag varint of id - created follows;
                  free, realloc: d = created - 1 - id (how far back the object was
                    made) when 0 <= d < 15, else 15 and a zigzag varint of d follows;

  then, in this order: the thread, the id, the size as a varint (all ops but free), and
  for memalign one byte of align_log2. Short-lived objects make d small, so a free is
  usually 1 byte and a malloc 2 or 3: a recorded CPython trace takes about 2.5 bytes per
  operation against 24 in the packed form (README.md has the measured figures).
* **raw** (what the preload library writes with ``trace=PATH``): ``b"PRMRAW02"``, then a
  stream of varint-coded records: operations on addresses (a free of a block just made
  or a malloc of a block just freed is one byte), the call stacks that allocated
  (defined once, referred to by id), timeline samples, the command line and the
  process's maps at exit (the layout is in csrc/preload/trace.h). ``rawstream.decode``
  reads it into a :class:`RawRecording`: the trace with addresses turned into object ids
  (an address names an object from the malloc that returned it until the free that
  released it), each operation's stack id, the stacks, the samples. The older
  ``b"PRMRAW01"`` form (24-byte records with addresses, no stacks) is still read by
  :meth:`Trace.from_raw`. A stream cut short (the process was killed) keeps every whole
  record.

Recording a program: :func:`record` runs a command under the preload library with
``trace=`` and returns its trace, :func:`record_run` a :class:`Recording` with its call
sites (``sites()``, ``sites`` module: :class:`CallSite`, :class:`Frame`) and its
timeline (``timeline``: :class:`Sample`), following the program a wrapper execs; :func:`profile` runs it with ``profile=`` and returns
the size-class :class:`Profile` the library wrote, which ``presize=PATH`` reads back to
presize the heap at start-up (seed 001's "working set"). Generators (uniform,
exponential, phased and the seeds' worked examples) live in ``generators``; all of it is
re-exported here.

``model`` holds the Trace and its file formats, ``rawstream`` the library's compact
recording, ``sites`` call sites, symbols and the timeline, ``recording`` runs programs
to record traces and profiles, ``generators`` makes synthetic ones. This wing uses the
running-programs wing (``preload``) and the errors; the placement lab reads its traces.
"""
from .generators import SEED_EXAMPLES, exponential, phased, seed_example, uniform
from .model import (CALLOC, CREATING, FREE, MAGIC, MALLOC, MEMALIGN, OP_NAMES, RAW_MAGIC,
                    REALLOC, RECORD, VERSION, Summary, Trace, TraceError)
from .rawstream import RAW2_MAGIC, RawRecording, decode, load
from .recording import Profile, Recording, profile, record, record_run, why_empty
from .sites import CallSite, Frame, Sample, Symboliser, call_sites, timeline

__all__ = ["Trace", "TraceError", "Summary", "Recording", "Profile", "load", "record",
           "CallSite", "Frame", "Sample", "Symboliser", "call_sites", "timeline",
           "RawRecording", "decode", "RAW2_MAGIC", "why_empty",
           "record_run", "profile", "uniform", "exponential", "phased", "seed_example",
           "SEED_EXAMPLES", "MALLOC", "FREE", "REALLOC", "CALLOC", "MEMALIGN", "OP_NAMES",
           "CREATING", "RECORD", "MAGIC", "RAW_MAGIC", "VERSION"]
