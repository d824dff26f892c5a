# setuptools needs this file for cffi's `cffi_modules` keyword and for the two plain C
# builds; all other metadata lives in pyproject.toml.
import os
import sys

from setuptools import Extension, setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pymalloc_real"))
from _build import (PRELOAD_COMPILE_ARGS, PRELOAD_LINK_ARGS,  # noqa: E402  (the one list
                    PRELOAD_SOURCES, PRELOAD_WARNINGS)           # of the core's files)


setup(
    cffi_modules=["pymalloc_real/_build.py:ffibuilder"],
    ext_modules=[
        # The hot path of the Python API (Block, malloc, free); see its header comment.
        Extension("pymalloc_real._fastpath", sources=["pymalloc_real/_fastpath.c"],
                  extra_compile_args=["-std=gnu11", *PRELOAD_WARNINGS]),
        # The compact recording's decoder (trace/rawstream.py; see its header comment).
        Extension("pymalloc_real._rawdecode", sources=["pymalloc_real/_rawdecode.c"],
                  extra_compile_args=["-std=gnu11", "-O2", *PRELOAD_WARNINGS]),
        # The LD_PRELOAD library: the same core plus the shim exporting malloc & co.
        # Built as an extension only so that pip puts it in the package; it is a plain
        # shared library, never imported (pymalloc_real.preload.library_path finds it).
        Extension("pymalloc_real._preload",
                  sources=[os.path.join("csrc", name) for name in PRELOAD_SOURCES],
                  include_dirs=["csrc/core"],     # preload/ includes the core's headers
                  define_macros=[("_GNU_SOURCE", None)],
                  extra_compile_args=PRELOAD_COMPILE_ARGS,
                  extra_link_args=PRELOAD_LINK_ARGS),
    ],
)
