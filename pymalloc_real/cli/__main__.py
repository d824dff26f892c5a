"""``python -m pymalloc_real.cli``, as ``python -m pymalloc_real``: the command line."""
import sys

from . import main

sys.exit(main())
