"""Named mappings: the library names its mmapped chunks and non-brk heap segments with
prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) (csrc/core/os.c), so /proc/PID/maps shows them
as ``[anon:pymalloc_real ...]`` where the kernel supports it (Linux 5.17 built with
CONFIG_ANON_VMA_NAME). This module asks the kernel the same question from Python, to
say why names are missing, and finds the named regions of a process.
"""
import ctypes
import mmap
import os

from .remote import libc as _libc, read_maps

__all__ = ["probe_naming", "named_regions", "kernel_config", "NAME_PREFIX"]

PR_SET_VMA = 0x53564D41
PR_SET_VMA_ANON_NAME = 0
NAME_PREFIX = "[anon:pymalloc_real"

_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def probe_naming(name=b"pymalloc_real probe"):
    """Name a fresh anonymous page of this process: 0 if the kernel did, else the errno
    it refused with (EINVAL: no CONFIG_ANON_VMA_NAME, or a kernel before 5.17)."""
    page = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        label = ctypes.create_string_buffer(name)
        rc = _libc.prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, address, mmap.PAGESIZE,
                         ctypes.addressof(label))
        return 0 if rc == 0 else ctypes.get_errno()
    finally:
        page.close()


def kernel_config(option="CONFIG_ANON_VMA_NAME"):
    """The kernel's build setting for `option` ("y", "not set"), or None when the
    kernel does not publish its configuration (/proc/config.gz or /boot/config-*)."""
    import gzip
    release = os.uname().release
    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{release}", open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith(f"{option}="):
                        return line.split("=", 1)[1].strip()
                    if line.startswith(f"# {option} is not set"):
                        return "not set"
            return "not set"
        except OSError:
            continue
    return None


def named_regions(pid):
    """[(start, end, name)] of the process's mappings the library named."""
    return [(start, end, path) for start, end, _, _, path in read_maps(pid)
            if path.startswith(NAME_PREFIX)]
