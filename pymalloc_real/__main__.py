"""``python -m pymalloc_real``: the ``pymalloc-real`` command."""
import sys

from .cli import main

sys.exit(main())
