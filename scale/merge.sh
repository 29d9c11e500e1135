#!/usr/bin/env bash
# Merge every shard's partial under PARTS into OUT (what one `triage run` writes).
#
#   scale/merge.sh PARTS SHARDS OUT [-- extra `triage merge` options]
#
# Names the SHARDS expected partials explicitly (PARTS/part-0 ... part-(SHARDS-1)),
# so a shard that never ran is reported missing instead of silently left out.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 PARTS SHARDS OUT [-- triage merge options]" >&2
    exit 2
fi
parts=$1 shards=$2 out=$3
shift 3
if [ "${1:-}" = "--" ]; then shift; fi
list=()
for ((i = 0; i < shards; i++)); do list+=("$parts/part-$i"); done
exec "${TRIAGE_BIN:-triage}" merge "${list[@]}" --out "$out" "$@"
