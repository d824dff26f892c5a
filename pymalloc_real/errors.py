"""Exceptions raised by pymalloc_real.

Every misuse a C program could commit against malloc has a Python exception here,
so a mistake made from Python is reported and the interpreter goes on.
"""


class PymallocError(Exception):
    """Base class of every pymalloc_real error."""


class HeapCorruption(PymallocError):
    """The allocator found its own structures damaged.

    ``check`` names the check that failed (glibc's wording where glibc has the same
    check), ``detail`` says what was found and ``pointer`` is the address involved
    (0 if none). The arena concerned refuses further work after this.
    """

    def __init__(self, check, detail="", pointer=0):
        self.check = check
        self.detail = detail
        self.pointer = pointer
        message = check if not detail else f"{check}: {detail}"
        if pointer:
            message += f" (ptr {pointer:#x})"
        super().__init__(message)


class InvalidFree(PymallocError, ValueError):
    """free() or realloc() of something malloc did not return (or no longer owns)."""


class DoubleFree(InvalidFree):
    """The block was already freed."""


class UseAfterFree(PymallocError, ValueError):
    """A freed block was read, written, touched or resized."""


class OutOfBounds(PymallocError, IndexError):
    """A read or write would leave the bounds of the block."""
