#!/usr/bin/env bash
# One shard of a triage job, for schedulers that number their tasks.
#
#   scale/shard.sh DATASET PARTS SHARDS [-- extra `triage run` options]
#
# Scores shard I of SHARDS of DATASET into PARTS/part-I (its partial.jsonl).
# I is $TRIAGE_SHARD, else $SLURM_ARRAY_TASK_ID (Slurm job arrays), else
# $JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs). The binary is $TRIAGE_BIN,
# else `triage` on PATH. A shard that fails exits with triage's code (2 on bad
# input), so the scheduler marks it failed and can retry it.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 DATASET PARTS SHARDS [-- triage run options]" >&2
    exit 2
fi
dataset=$1 parts=$2 shards=$3
shift 3
if [ "${1:-}" = "--" ]; then shift; fi
i=${TRIAGE_SHARD:-${SLURM_ARRAY_TASK_ID:-${JOB_COMPLETION_INDEX:-}}}
if [ -z "$i" ]; then
    echo "$0: no shard index: set SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or TRIAGE_SHARD" >&2
    exit 2
fi
mkdir -p "$parts"
exec "${TRIAGE_BIN:-triage}" run "$dataset" --out "$parts/part-$i" --shard "$i/$shards" "$@"
