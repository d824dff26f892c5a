#!/bin/sh
# Build every workload (benchmarks/workloads/*.c) into benchmarks/bin/, or into the
# directory given as the only argument. CC and CFLAGS may be overridden, e.g. a
# sanitizer build:
#   CFLAGS="-O1 -g -pthread -fsanitize=address,undefined" benchmarks/workloads/build.sh /tmp/asan
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(dirname "$here")/bin}
cc=${CC:-gcc}
cflags=${CFLAGS:--O2 -g -pthread -Wall -Wextra -Werror}
mkdir -p "$out"
for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    # shellcheck disable=SC2086  # cflags is a list of words
    $cc -std=c11 $cflags "$src" -o "$out/$name"
    echo "built $out/$name"
done
