#!/usr/bin/env bash
# Submit a sharded triage job to Slurm: an array of SHARDS shard tasks, then
# the merge, which starts only if every shard succeeded (afterok).
#
#   scale/slurm/submit.sh DATASET PARTS OUT SHARDS [-- triage options]
#
# PARTS and OUT must be on a file system every node sees. Options after `--`
# go to every shard and to the merge (queue, neighbour and --deterministic
# options apply there; the merge takes the score options from the partials).
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 DATASET PARTS OUT SHARDS [-- triage options]" >&2
    exit 2
fi
dataset=$1 parts=$2 out=$3 shards=$4
shift 4
if [ "${1:-}" = "--" ]; then shift; fi
here=$(cd "$(dirname "$0")/.." && pwd)
env="ALL,DATASET=$dataset,PARTS=$parts,OUT=$out,SHARDS=$shards,TRIAGE_SCALE=$here,TRIAGE_OPTS=$*"
array=$(sbatch --parsable --array="0-$((shards - 1))" --export="$env" "$here/slurm/triage-array.sbatch")
merge=$(sbatch --parsable --dependency="afterok:$array" --export="$env" "$here/slurm/triage-merge.sbatch")
echo "shards: job $array (array 0-$((shards - 1))); merge: job $merge (after all succeed)"
