"""Which allocators there are and where their libraries lie: our LD_PRELOAD library
(``library_path``, ``_preload`` + an extension suffix of this interpreter, in the
package's directory) and the peers' (jemalloc, mimalloc and tcmalloc where Debian
installs them), and ``resolve`` from a name or a path to an ``Allocator``.
"""
import functools
import importlib
import importlib.machinery
import os
import platform
import subprocess
import sysconfig
from dataclasses import dataclass
from typing import Optional

from .options import OptionError
from ..reprs import readable


OURS = "pymalloc_real"
GLIBC = "glibc"
ALLOCATORS = (GLIBC, OURS, "jemalloc", "mimalloc", "tcmalloc")
_PRELOAD_STEM = "_preload"
_MiB = 1024 * 1024


@readable
@dataclass(frozen=True)
class Peer:
    """A peer allocator as Debian ships it: the library's file name and its package."""
    name: str
    soname: str
    package: str


PEERS = {peer.name: peer for peer in (
    Peer("jemalloc", "libjemalloc.so.2", "libjemalloc2"),
    Peer("mimalloc", "libmimalloc.so.2", "libmimalloc2.0"),
    Peer("tcmalloc", "libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
)}

# Debian's multiarch triplet for each machine name, for when gcc is not there to ask.
_MULTIARCH = {"x86_64": "x86_64-linux-gnu", "amd64": "x86_64-linux-gnu",
              "aarch64": "aarch64-linux-gnu", "arm64": "aarch64-linux-gnu",
              "armv7l": "arm-linux-gnueabihf", "i386": "i386-linux-gnu",
              "i686": "i386-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
              "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu",
              "loongarch64": "loongarch64-linux-gnu", "mips64": "mips64el-linux-gnuabi64"}


# ---- errors ---------------------------------------------------------------------------------

class LibraryMissing(FileNotFoundError):
    """An allocator's shared library is not where it should be.

    ``allocator`` names it, ``searched`` lists the paths looked at and ``hint`` says
    how to get it.
    """

    def __init__(self, message, allocator, searched=(), hint=""):
        self.allocator = allocator
        self.searched = list(searched)
        self.hint = hint
        super().__init__(message)


class PeerMissing(LibraryMissing):
    """A peer allocator (jemalloc, mimalloc, tcmalloc, or a library given by path) is
    not installed."""


# ---- finding the libraries ------------------------------------------------------------------

def library_path():
    """The path of our LD_PRELOAD library, ``_preload`` + an extension suffix of this
    interpreter, in the package's directory (the source tree for an editable install,
    site-packages for a wheel). Raises LibraryMissing (a FileNotFoundError)."""
    directories = _package_directories()
    names = [_PRELOAD_STEM + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    searched = [os.path.join(directory, name) for directory in directories for name in names]
    for path in searched:
        if os.path.isfile(path):
            return path
    hint = ("build it with `make build` (an editable install), or reinstall the package "
            "(pip install .)")
    raise LibraryMissing(
        f"pymalloc_real's preload library is not built: no {' or '.join(names)} in "
        f"{', '.join(directories)}; {hint}", OURS, searched, hint)


def _package_directories():
    """Where the library is installed: beside the top-level package's modules (the
    extension modules' place), not in this wing's folder."""
    package = importlib.import_module(__package__.partition(".")[0])
    return list(dict.fromkeys(os.path.abspath(path) for path in package.__path__))


@functools.lru_cache(maxsize=None)
def library_directories():
    """Where shared libraries are installed, this machine's multiarch directories
    first (Debian's /usr/lib/<triplet>), then /usr/lib64, /usr/local/lib, /usr/lib."""
    directories = []
    for triplet in _multiarch_triplets():
        directories += [f"/usr/lib/{triplet}", f"/lib/{triplet}"]
    directories += ["/usr/lib64", "/lib64", "/usr/local/lib", "/usr/lib"]
    return tuple(dict.fromkeys(directories))


def _multiarch_triplets():
    triplets = [_MULTIARCH.get(platform.machine())]
    if triplets[0] is None:         # an unusual machine: ask the compiler
        triplets.append(_gcc_multiarch())
    triplets.append(sysconfig.get_config_var("MULTIARCH"))
    return [t for t in dict.fromkeys(triplets) if t]


def _gcc_multiarch():
    try:
        proc = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None


def peer_path(name):
    """The path of a peer allocator's library (``jemalloc``, ``mimalloc``,
    ``tcmalloc``). Raises PeerMissing naming the Debian package and `make peers`."""
    peer = PEERS[name]
    searched = [os.path.join(directory, peer.soname) for directory in library_directories()]
    for path in searched:
        if os.path.exists(path):
            return path
    hint = (f"install the Debian package {peer.package} (`make peers` installs "
            f"{', '.join(p.package for p in PEERS.values())})")
    raise PeerMissing(f"{name} is not installed: no {peer.soname} in "
                      f"{', '.join(library_directories())}; {hint}", name, searched, hint)


@readable
@dataclass(frozen=True)
class Allocator:
    """An allocator ready to run: its name as given, its library (None for glibc,
    which needs no preload) and whether it is ours (only ours takes options)."""
    name: str
    library: Optional[str]
    ours: bool


def resolve(allocator):
    """The Allocator for a name (see ALLOCATORS) or a path to a shared library. Raises
    LibraryMissing/PeerMissing when the library is not there, OptionError for an
    unknown name."""
    if allocator == GLIBC:
        return Allocator(GLIBC, None, False)
    if allocator == OURS:
        return Allocator(OURS, library_path(), True)
    if allocator in PEERS:
        return Allocator(allocator, peer_path(allocator), False)
    if _is_path(allocator):
        path = os.path.abspath(allocator)
        if not os.path.isfile(path):
            hint = ("give the path of an existing shared library, or a peer's name; "
                    "`make peers` installs jemalloc, mimalloc and tcmalloc")
            raise PeerMissing(f"no allocator library at {path}; {hint}", allocator,
                              [path], hint)
        if not _is_shared_library(path):
            raise OptionError(f"{path} is not a shared library (an ELF file of type "
                              f"ET_DYN), so LD_PRELOAD would ignore it: give a library's "
                              f"path or one of {', '.join(ALLOCATORS)}")
        return Allocator(allocator, path, is_ours(allocator))
    raise OptionError(f"unknown allocator {allocator!r}: use one of {', '.join(ALLOCATORS)} "
                      "or the path of a shared library")


def _is_shared_library(path):
    """Whether ``path`` starts like an ELF shared object: the magic, then e_type
    ET_DYN (3) in the file's own byte order."""
    try:
        with open(path, "rb") as f:
            header = f.read(18)
    except OSError:
        return False
    if len(header) < 18 or header[:4] != b"\x7fELF" or header[5] not in (1, 2):
        return False
    return int.from_bytes(header[16:18], "little" if header[5] == 1 else "big") == 3


def is_ours(allocator):
    """Whether the allocator is our library: its name, or a path to a file named
    like it (``_preload`` + a suffix), such as another build's."""
    if allocator == OURS:
        return True
    return _is_path(allocator) and os.path.basename(allocator).startswith(_PRELOAD_STEM)


def _is_path(allocator):
    return os.sep in allocator or allocator.endswith(".so") or ".so." in allocator
