"""Reading another process without stopping it: its memory with process_vm_readv
(through ctypes: the os module has no binding), which of its pages are present
(/proc/PID/pagemap, so that reading never faults a page into it), its counters from
/proc (RSS, page faults), and where a symbol of a mapped library is (its ELF dynamic
symbol table plus /proc/PID/maps). Every failure becomes a LiveViewError that says
what went wrong and what would make it work.
"""
import ctypes
import errno as errno_codes
import os
import re
import struct

from ..errors import PymallocError

__all__ = ["LiveViewError", "RemoteMemory", "find_symbol", "rss_and_faults", "command_name"]

IOV_MAX = 1024


class LiveViewError(PymallocError):
    """Another process cannot be looked at: gone, not on the library, or not ours to
    read."""


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


libc = ctypes.CDLL(None, use_errno=True)     # this process's C library, errno kept
_process_vm_readv = libc.process_vm_readv
_process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                              ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong]
_process_vm_readv.restype = ctypes.c_ssize_t


def permission_hint():
    """Why reading another process may be refused, for the error message."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="ascii") as f:
            scope = f.read().strip()
        yama = f"; kernel.yama.ptrace_scope is {scope}" + \
            (" (only a parent may read its children: run as root or with CAP_SYS_PTRACE)"
             if scope != "0" else "")
    except OSError:
        yama = ""
    return ("reading another process's memory needs the same user (and a process that "
            f"is not setuid) or CAP_SYS_PTRACE{yama}")


def no_permission(pid):
    return LiveViewError(f"no permission to read process {pid}: {permission_hint()}")


def no_process(pid):
    return LiveViewError(f"no process {pid}")


class UnmappedRead(Exception):
    """An address the process does not map (now): the structures moved while we read."""


class RemoteMemory:
    """Copies of another process's memory. Reads never fault a page into it:
    ``read_pages`` skips the pages pagemap says are absent (they read as zeros)."""

    def __init__(self, pid):
        self.pid = int(pid)
        self.page = os.sysconf("SC_PAGE_SIZE")
        try:
            self._pagemap = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise no_process(self.pid) from None
        except PermissionError:
            raise no_permission(self.pid) from None

    def close(self):
        if self._pagemap is not None:
            os.close(self._pagemap)
            self._pagemap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read_many(self, ranges):
        """[bytes] for each (address, length), in one system call per 1024 ranges.
        Raises UnmappedRead when a range is not (or no longer) mapped."""
        out = []
        for first in range(0, len(ranges), IOV_MAX):
            out += self._readv(ranges[first:first + IOV_MAX])
        return out

    def read(self, address, length):
        return self.read_many([(address, length)])[0]

    def u64(self, address):
        return struct.unpack("<Q", self.read(address, 8))[0]

    def _readv(self, ranges):
        buffer = bytearray(sum(length for _, length in ranges))
        self._readv_into(ranges, buffer, self._offsets(ranges))
        out, offset = [], 0
        for _, length in ranges:
            out.append(bytes(buffer[offset:offset + length]))
            offset += length
        return out

    @staticmethod
    def _offsets(ranges):
        offsets, offset = [], 0
        for _, length in ranges:
            offsets.append(offset)
            offset += length
        return offsets

    def _readv_into(self, ranges, buffer, offsets):
        """Copy each (address, length) of `ranges` into `buffer` at the matching offset,
        in one system call (at most IOV_MAX ranges)."""
        if not ranges:
            return
        total = sum(length for _, length in ranges)
        local = (_IoVec * len(ranges))()
        remote = (_IoVec * len(ranges))()
        holder = (ctypes.c_char * len(buffer)).from_buffer(buffer) if buffer else None
        base = ctypes.addressof(holder) if holder is not None else 0
        for i, ((address, length), offset) in enumerate(zip(ranges, offsets)):
            local[i].iov_base, local[i].iov_len = base + offset, length
            remote[i].iov_base, remote[i].iov_len = address, length
        done = _process_vm_readv(self.pid, local, len(ranges), remote, len(ranges), 0)
        del holder
        if done < 0:
            error = ctypes.get_errno()
            if error == errno_codes.EPERM:
                raise no_permission(self.pid)
            if error == errno_codes.ESRCH:
                raise LiveViewError(f"process {self.pid} ended")
            if error == errno_codes.EFAULT:
                raise UnmappedRead()
            raise LiveViewError(f"process_vm_readv of process {self.pid}: {os.strerror(error)}")
        if done != total:
            raise UnmappedRead()     # a partial copy stops at the first unmapped range

    def present_pages(self, start, end):
        """One byte per page of [start, end): 1 if present in RAM or in swap (so it
        holds data); absent pages were never touched or were given back, and read as
        zero."""
        first, last = start // self.page, (end + self.page - 1) // self.page
        try:
            raw = os.pread(self._pagemap, (last - first) * 8, first * 8)
        except PermissionError:
            raise no_permission(self.pid) from None
        except OSError as error:
            raise LiveViewError(f"/proc/{self.pid}/pagemap: {error.strerror}") from None
        # The two flag bits are the top bits of each little-endian entry's last byte.
        return bytes(1 if b & 0xC0 else 0 for b in raw[7::8])

    def read_pages(self, start, end):
        """[start, end) as a bytearray, copying only the pages that hold data (the
        others are zeros), and the page presence bytes (the ledger's residency)."""
        present = self.present_pages(start, end)
        data = bytearray(end - start)
        base = start - start % self.page
        runs = []
        for run in re.finditer(b"\x01+", present):
            lo = max(start, base + run.start() * self.page)
            hi = min(end, base + run.end() * self.page)
            runs.append((lo, hi - lo))
        for first in range(0, len(runs), IOV_MAX):
            part = runs[first:first + IOV_MAX]
            self._readv_into(part, data, [address - start for address, _ in part])
        return data, present


# ---- /proc ---------------------------------------------------------------------------------

def read_maps(pid):
    """[(start, end, perms, offset, path)] of /proc/PID/maps."""
    try:
        with open(f"/proc/{int(pid)}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise no_process(pid) from None
    except PermissionError:
        raise no_permission(pid) from None
    out = []
    for line in lines:
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        out.append((start, end, fields[1], int(fields[2], 16), fields[5] if len(fields) > 5 else ""))
    return out


def rss_and_faults(pid):
    """(RSS bytes, minor faults, major faults) of the process, from /proc."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        with open(f"/proc/{int(pid)}/statm", encoding="ascii") as f:
            resident_pages = int(f.read().split()[1])
    except FileNotFoundError:
        raise LiveViewError(f"process {pid} ended") from None
    fields = stat[stat.rindex(")") + 2:].split()
    # After the command: state(0) ppid pgrp session tty tpgid flags minflt(7) cminflt majflt(9)
    return resident_pages * os.sysconf("SC_PAGE_SIZE"), int(fields[7]), int(fields[9])


def command_name(pid):
    try:
        with open(f"/proc/{int(pid)}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


# ---- ELF: where a library's exported symbol is in the process -----------------------------

def _dynamic_symbol(path, name):
    """The st_value of `name` in the ELF file's .dynsym, or None (not ELF, not there)."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None     # only 64-bit little-endian objects are ours
            shoff, = struct.unpack_from("<Q", header, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
            wanted = name.encode()
            for _, kind, _, _, offset, size, link, _, _, entsize in sections:
                if kind != 11 or entsize != 24:      # SHT_DYNSYM
                    continue
                f.seek(sections[link][4])
                strings = f.read(sections[link][5])
                f.seek(offset)
                symbols = f.read(size)
                for i in range(0, len(symbols), 24):
                    st_name, _, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", symbols, i)
                    if shndx != 0 and strings[st_name:strings.index(b"\0", st_name)] == wanted:
                        return value
    except (OSError, struct.error, IndexError, ValueError):
        return None
    return None


def find_symbol(pid, name, prefer=("_preload", "pymalloc", "_core.")):
    """[(library path, address)] of the mapped libraries exporting `name`, in the order
    of the `prefer` word their file name holds (the others are read only when none of
    those exports it); [] when none does."""
    maps = read_maps(pid)
    bases = {}
    for start, _, _, offset, path in maps:
        if path.startswith("/") and offset == 0 and path not in bases:
            bases[path] = start      # shared objects link at 0: the load bias
    def rank(path):             # the first `prefer` word the name holds, others last
        return next((i for i, word in enumerate(prefer) if word in os.path.basename(path)),
                    len(prefer))

    found = []
    for path in sorted(bases, key=rank):
        if found and rank(path) == len(prefer):
            break               # found among the likely ones: the rest need no reading
        root = f"/proc/{int(pid)}/root{path}"
        value = _dynamic_symbol(root if os.path.exists(root) else path, name)
        if value is not None:
            found.append((path, bases[path] + value))
    return found
