"""The interpreter's own allocator: glibc's malloc, which shares the program break
with our core (see README, "Sharing the break")."""
import ctypes

__all__ = ["reserve_glibc_slack"]

_GLIBC_M_TOP_PAD = -2


def reserve_glibc_slack(pad=1024 * 1024):
    """Give glibc's malloc ``pad`` bytes of slack at the top of its heap, so that the
    interpreter's own allocations do not move the break, and land between our heap's
    segments, while an experiment watches the break. Changes glibc's M_TOP_PAD for the
    rest of the process."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(_GLIBC_M_TOP_PAD, pad)
    # Grow glibc's heap past its current top, then free: glibc trims back to the pad.
    blocks = [libc.malloc(64 * 1024) for _ in range(pad // (64 * 1024) + 8)]
    for block in blocks:
        libc.free(block)
