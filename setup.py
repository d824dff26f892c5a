# setuptools needs this file only for cffi's `cffi_modules` keyword; all other
# metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["pymalloc_real/_build.py:ffibuilder"])
