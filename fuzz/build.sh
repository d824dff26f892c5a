#!/bin/sh
# Build the libFuzzer target over the checked core (see fuzz_core.c): clang with
# libFuzzer, ASan and UBSan. Usage: fuzz/build.sh [OUTPUT]  (default fuzz/bin/fuzz_core)
set -e
cd "$(dirname "$0")/.."
out=${1:-fuzz/bin/fuzz_core}
mkdir -p "$(dirname "$out")"
sources=$(python3 -c "
import sys; sys.path.insert(0, 'pymalloc_real')
from _build import CORE_SOURCES
print(' '.join('csrc/' + s for s in CORE_SOURCES if s.startswith('core/')))")
exec clang -g -O1 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -DPRM_RECOVERABLE=1 -D_GNU_SOURCE -Icsrc/core -Ifuzz \
    $sources fuzz/fuzz_core.c fuzz/fuzz_reset.c -o "$out"
