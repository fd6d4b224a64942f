#!/usr/bin/env bash
# Builds every libFuzzer target and runs each for SECONDS (default 20).
# New corpus entries go to a scratch directory; the seeds under corpus/
# stay as committed. Crash reproducers are left in the scratch directory.
#
#   t/fuzz/run.sh [SECONDS] [TARGET...]     e.g. t/fuzz/run.sh 60 prefer
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_EACH=${1:-20}
[ $# -gt 0 ] && shift
OUT=${FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/async-fuzz.XXXXXX")}
CXX=${CXX:-clang++}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$ROOT"/t/fuzz/fuzz_*.cpp; do
        name=$(basename "$f" .cpp)
        targets+=("${name#fuzz_}")
    done
fi

failed=0
for t in "${targets[@]}"; do
    bin=$OUT/fuzz_$t
    "$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -I"$ROOT/src" "$ROOT/t/fuzz/fuzz_$t.cpp" \
        "$ROOT"/src/core/*.cpp -lsimdjson -o "$bin"
    mkdir -p "$OUT/corpus/$t"
    printf '==> fuzz_%s for %ss\n' "$t" "$SECONDS_EACH" >&2
    if ! (cd "$OUT" && "$bin" -max_total_time="$SECONDS_EACH" \
            "$OUT/corpus/$t" "$ROOT/t/fuzz/corpus/$t" \
            >"$OUT/$t.log" 2>&1); then
        printf 'fuzz_%s FAILED, see %s/%s.log\n' "$t" "$OUT" "$t" >&2
        failed=1
    fi
done
printf 'fuzz output in %s\n' "$OUT" >&2
exit $failed
