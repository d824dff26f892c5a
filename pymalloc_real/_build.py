"""cffi builder for ``pymalloc_real._core`` (out-of-line API mode).

The C sources live in ``csrc/``, one folder per part: ``core/`` (the allocator, which
both builds compile), ``preload/`` (what only the LD_PRELOAD library has), ``lab/`` (the
placement-policy lab), ``pagesim/`` (the page-replacement simulator) and ``probe/`` (the
demo's address-space probe). The lists below name files relative to ``csrc/``.

The core (``csrc/core/``) is compiled into the extension together with a few lines of
glue, and so are the demo's probe (``csrc/probe/layout.c``), the page-replacement
simulator (``csrc/pagesim/pagesim.c``) and the placement-policy lab (``csrc/lab/``),
which stand beside the core. The interface cffi sees is ``csrc/core/prm.h``,
``csrc/pagesim/pagesim.h`` and ``csrc/lab/lab.h`` themselves, with their preprocessor
housekeeping removed, so the headers stay the single statement of the C API.

The core is built with ``PRM_RECOVERABLE=1``: detected heap corruption unwinds to
the entry point and becomes a Python exception instead of aborting the interpreter.
"""
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")

# The core (core/), the layout probe of the demo (probe/layout.c) and
# the page-replacement simulator (pagesim/pagesim.c).
CORE_SOURCES = [
    "core/os.c",
    "core/arena.c",
    "core/bins.c",
    "core/malloc.c",
    "core/mmapped.c",
    "core/check.c",
    "core/canary.c",
    "core/stats.c",
    "core/options.c",
    "core/threads.c",
    "core/remote.c",
    "core/tcache.c",
    "core/pagemap.c",
    "core/publish.c",
    "core/hardened.c",
    "core/faults.c",
    "probe/layout.c",
    "pagesim/pagesim.c",
]

# The LD_PRELOAD library: the core without the demo's probe and the simulator, plus
# preload/ (the shim, the trace recorder and the presizer). setup.py builds it;
# benchmarks/bench_checks.py builds a variant with the hardening checks compiled out,
# from the same lists. Its files include the core's headers by name: compile with
# -Icsrc/core.
PRELOAD_SOURCES = [name for name in CORE_SOURCES if name.startswith("core/")] + [
    "preload/preload.c", "preload/trace.c", "preload/callstack.c", "preload/presize.c",
    "preload/sized.c"]
PRELOAD_WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers",
                    "-Wno-unused-parameter"]
PRELOAD_COMPILE_ARGS = ["-std=gnu11", "-O2", "-g", *PRELOAD_WARNINGS, "-fvisibility=hidden",
                        "-ftls-model=initial-exec", "-fno-builtin", "-flto"]
# Link-time optimisation lets the exported malloc/free inline the core's fast paths.
# libm for the sampler's log(); libunwind, when its headers are installed (Debian's
# libunwind-dev, the Makefile's `unwind` target), for the recorder's call stacks
# (csrc/preload/callstack.h says why libunwind); without it the library records no stacks.
PRELOAD_LINK_ARGS = ["-flto", "-O2", "-lm"]


def _libunwind_headers():
    return any(os.path.exists(os.path.join(folder, "libunwind.h"))
               for folder in ("/usr/include", "/usr/include/x86_64-linux-gnu",
                              "/usr/include/aarch64-linux-gnu", "/usr/local/include"))


if _libunwind_headers():
    PRELOAD_COMPILE_ARGS.append("-DPRM_HAVE_LIBUNWIND")
    PRELOAD_LINK_ARGS.append("-lunwind")
# The placement-policy lab (csrc/lab/), which also stands beside the core: the policies,
# the two real allocators as policies, and the replay loop. Not in the LD_PRELOAD build.
LAB_SOURCES = [
    "lab/lab.c",
    "lab/lab_minimal.c",
    "lab/lab_freelist.c",
    "lab/lab_buddy.c",
    "lab/lab_bitmap.c",
    "lab/lab_slab.c",
    "lab/lab_real.c",
    "lab/lab_replay.c",
]

# What only the cffi module has for serving the interpreter (csrc/python/): the O(1)
# "is this pointer ours?" that the interpreter's allocator router (csrc/python/serve.c,
# the extension pymalloc_real._serve) asks for every block it frees.
PYTHON_SOURCES = ["python/owner.c"]

# The headers that state the C API: cffi reads them, the generated wrapper includes them.
HEADERS = ["core/prm.h", "pagesim/pagesim.h", "lab/lab.h", "python/owner.h"]

# -Werror keeps the core honest; cffi's generated wrapper is compiled with the same flags.
COMPILE_ARGS = ["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror",
                "-Wno-unused-parameter", "-fvisibility=hidden"]


def _cdef_from_header(path):
    """A header without what cffi's parser does not take: includes and the include guard
    (a ``#define`` with no value)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^#(include|ifndef|endif).*$", "", text, flags=re.M)
    text = re.sub(r"^#define \w+\s*$", "", text, flags=re.M)
    return text


# libc's own malloc and free, called through the same API-mode binding: the honest
# baseline for the Python-API benchmark.
_LIBC_CDEF = """
void *malloc(size_t size);
void free(void *ptr);
"""

ffibuilder = FFI()
ffibuilder.cdef("".join(_cdef_from_header(os.path.join(CSRC, name)) for name in HEADERS)
                + _LIBC_CDEF)
ffibuilder.set_source(
    "pymalloc_real._core",
    "#include <stdlib.h>\n" + "".join(f'#include "{name}"\n' for name in HEADERS),
    # setuptools insists on paths relative to setup.py's directory, where it runs.
    sources=[os.path.join("csrc", name) for name in CORE_SOURCES + LAB_SOURCES + PYTHON_SOURCES],
    # csrc for the wrapper's "core/prm.h" & co, csrc/core for the probe's "prm.h", "os.h".
    include_dirs=["csrc", "csrc/core"],
    define_macros=[("PRM_RECOVERABLE", "1"), ("_GNU_SOURCE", None)],
    extra_compile_args=COMPILE_ARGS,
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffibuilder.compile(tmpdir=ROOT, verbose=True)
