"""The directory a process on the library publishes (csrc/core/publish.c): found by its
exported symbol ``pymalloc_real_live``, it gives the addresses of the allocator's state,
the kernel layer's counters and the shim's call counters, and a table of the layout of
every structure the live view reads (name, offset, size), so nothing here hard-codes a
C struct beyond the directory's own header.
"""
import struct
from dataclasses import dataclass
from typing import Dict, Tuple

from .remote import LiveViewError, UnmappedRead, command_name, find_symbol

__all__ = ["Directory", "SYMBOL", "find_directory"]

SYMBOL = "pymalloc_real_live"
MAGIC = b"pymalloc_real live view"
VERSION = 1
# struct prm_live_directory: magic[24], version, field_size, field_count,
# report_field_count, then five pointers (fields, state, os_counters, report,
# report_fields).
_HEADER = struct.Struct("<24sIIII5Q")
_FIELD_NAME = 44


@dataclass(frozen=True)
class Directory:
    """Where the allocator of a process is, and how its structures are laid out."""
    library: str                        # the mapped file that exports the directory
    address: int
    state: int                          # prmi_state
    os_counters: int
    report: int                         # the shim's counters, 0 without the shim
    fields: Dict[str, Tuple[int, int]]  # "struct.member" -> (offset, size)

    def offset(self, name):
        return self.fields[name][0]

    def size(self, name):
        """sizeof a struct ("prm_arena") or of a member ("prm_arena.bins")."""
        return self.fields[name][1]

    def constant(self, name):
        return self.fields[f"const.{name}"][0]

    @property
    def preload(self):
        """True for the LD_PRELOAD library, False for the Python extension."""
        return not self.constant("PRM_RECOVERABLE")

    def call_names(self):
        """The shim's call counters in the order of its calls[] array."""
        calls = [(offset, name[5:]) for name, (offset, size) in self.fields.items()
                 if name.startswith("call.")]
        return [name for _, name in sorted(calls)]


def _parse_fields(raw, count, size):
    out = {}
    for i in range(count):
        name, offset, width = struct.unpack_from(f"<{_FIELD_NAME}sII", raw, i * size)
        out[name.split(b"\0", 1)[0].decode("ascii")] = (offset, width)
    return out


def find_directory(memory, pid) -> Directory:
    """The directory of process `pid` (read through a RemoteMemory), or a LiveViewError
    saying the process does not use the library."""
    found = find_symbol(pid, SYMBOL)
    if not found:
        raise LiveViewError(
            f"process {pid} ({command_name(pid)}) does not use pymalloc_real: no mapped "
            f"library exports {SYMBOL} (start it with LD_PRELOAD=pymalloc_real.preload."
            "library_path())")
    # The LD_PRELOAD library serves the process's malloc; the Python extension's
    # allocator is only a second one beside glibc's.
    directories, errors = [], []
    for library, address in found:
        try:
            directories.append(_read_directory(memory, library, address))
        except (UnmappedRead, LiveViewError) as error:
            errors.append(f"{library}: {error or 'not mapped'}")
    if not directories:
        raise LiveViewError(f"process {pid}: no readable pymalloc_real directory "
                            f"({'; '.join(errors)})")
    return max(directories, key=lambda directory: directory.preload)


def _read_directory(memory, library, address) -> Directory:
    raw = memory.read(address, _HEADER.size)
    (magic, version, field_size, field_count, report_count,
     fields, state, os_counters, report, report_fields) = _HEADER.unpack(raw)
    if magic.rstrip(b"\0") != MAGIC:
        raise LiveViewError(f"the symbol {SYMBOL} does not hold a pymalloc_real directory")
    if version != VERSION:
        raise LiveViewError(f"the library publishes directory version {version}; this "
                            f"pymalloc_real reads version {VERSION}")
    table = _parse_fields(memory.read(fields, field_count * field_size), field_count, field_size)
    if report and report_fields and report_count:
        table.update(_parse_fields(memory.read(report_fields, report_count * field_size),
                                   report_count, field_size))
    if not os_counters:
        raise LiveViewError("the library has not finished loading yet: try again")
    return Directory(library, address, state, os_counters, report, table)
