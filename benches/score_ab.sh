#!/bin/bash
# A/B of two triage binaries on one dataset: interleaved runs on the CPU
# backend, the score stage and the whole run from `--timings`, medians.
# Usage: benches/score_ab.sh BIN_A BIN_B DATASET [RUNS=9]
# Used for the cost of a new score (BENCHMARKS.md, "A new per-sample score").
set -euo pipefail
A=$1; B=$2; D=$3; N=${4:-9}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
for _ in $(seq "$N"); do
    for side in A B; do
        bin=$A; [ "$side" = B ] && bin=$B
        line=$("$bin" run "$D" --out "$OUT/$side" --backend cpu --timings 2>&1 | grep "timings:")
        score=$(echo "$line" | sed -E 's/.*score ([0-9.]+) s.*/\1/')
        total=$(echo "$line" | sed -E 's/.*total ([0-9.]+) s.*/\1/')
        echo "$side $score $total" >> "$OUT/times"
    done
done
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
for side in A B; do
    s=$(grep "^$side " "$OUT/times" | awk '{print $2}' | median)
    t=$(grep "^$side " "$OUT/times" | awk '{print $3}' | median)
    echo "$side: score stage median $s s, whole run median $t s ($N runs)"
done
