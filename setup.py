# setuptools needs this file for cffi's `cffi_modules` keyword and for the one plain
# CPython extension; all other metadata lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["pymalloc_real/_build.py:ffibuilder"],
    ext_modules=[
        # The hot path of the Python API (Block, malloc, free); see its header comment.
        Extension("pymalloc_real._fastpath", sources=["pymalloc_real/_fastpath.c"],
                  extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror",
                                      "-Wno-missing-field-initializers",
                                      "-Wno-unused-parameter"]),
    ],
)
