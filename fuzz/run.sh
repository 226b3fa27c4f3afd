#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each: fuzz/run.sh [SECONDS] [TARGET...]
# (default 60 s, every target). Starts from the committed seeds
# (fuzz/seeds/TARGET) and grows fuzz/corpus/TARGET, which git ignores.
# A crash stops the run and fails it; the input lands in fuzz/artifacts/TARGET/.
# Needs the nightly toolchain and cargo-fuzz (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
for t in "${targets[@]}"; do
    echo "--- fuzzing $t for ${seconds}s"
    mkdir -p "fuzz/corpus/$t"
    # -timeout: one input taking this long counts as a hang (a failure);
    # generous, since CI machines are shared and sanitizers are slow.
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=60 -max_len=65536 -print_final_stats=1
done
