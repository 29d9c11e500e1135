#!/usr/bin/env bash
# The hostile-input fuzz harness (tests/fuzz) run long: the same test binary
# as CI, with many more cases per file kind and a random seed, then the
# counts per kind and in all.
#
#   benches/fuzz.sh                 # 5000 cases per kind, a random seed
#   benches/fuzz.sh 20000           # more cases
#   benches/fuzz.sh 5000 0x1234     # a given seed (to reproduce a run)
#   benches/fuzz.sh 5000 "" npy png # only some kinds (test name filters)
#
# Every failing class is shrunk and saved under target/fuzz-failures/<kind>/
# (case directory, mutated input, README with the command and how to
# reproduce it: TRIAGE_FUZZ_SEED=... TRIAGE_FUZZ_CASE=...). The other knobs
# (TRIAGE_FUZZ_TIMEOUT_S, _RSS_MIB, _DATA_MIB, _SHRINK) pass through.
# Exit status: 0 when no property broke.
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${1:-${TRIAGE_FUZZ_CASES:-5000}}"
seed="${2:-}"
if [ -z "$seed" ]; then
    seed="${TRIAGE_FUZZ_SEED:-0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')}"
fi
shift $(( $# < 2 ? $# : 2 ))
filters=("$@")

export TRIAGE_FUZZ_CASES="$cases" TRIAGE_FUZZ_SEED="$seed" RUST_BACKTRACE=1
mkdir -p target/fuzz-failures
log="target/fuzz-failures/bench-$seed.log"
echo "fuzz: $cases cases per kind, seed $seed (log: $log)"
start=$(date +%s)
set +e
# The fuzz tests only (the harness's own unit tests are in the same binary).
cargo test --locked --test fuzz -- --nocapture "${filters[@]}" 2>&1 | tee "$log" | grep -E '^fuzz [a-z_]+: '
status=${PIPESTATUS[0]}
set -e
end=$(date +%s)
echo
grep -E '^fuzz [a-z_]+: seed .* cases in ' "$log" | awk -v secs=$((end - start)) '
    { for (i = 1; i <= NF; i++) {
        if ($(i + 1) == "cases") n += $i;
        if ($(i + 1) == "exit" && $(i + 2) == "0,") ok += $i;
        if ($(i + 1) == "exit" && $(i + 2) == "2,") refused += $i;
        if ($(i + 1) == "broke") broke += $i;
        if ($(i + 1) ~ /^classes\)/) classes += substr($i, 2);
      } kinds++ }
    END { printf "fuzz total: %d kinds, %d cases in %d s: %d exit 0, %d exit 2, %d broke a property (%d classes)\n",
          kinds, n, secs, ok, refused, broke, classes }'
if [ "$status" -ne 0 ]; then
    echo "fuzz: properties broke; see target/fuzz-failures/ (seed $seed)"
fi
exit "$status"
