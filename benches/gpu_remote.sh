#!/usr/bin/env bash
# The carry-and-run procedure of issue 11: measure triage on a lent GPU
# machine (NVIDIA H100/H200 through the `device` tool's `run`) in a few full
# commands. The machine is x86-64 with 16 cores, bare and offline: no Rust,
# no Vulkan loader. So everything is built here and carried.
#
#   benches/gpu_remote.sh prepare
#       HERE, in the checkout the device tool sends (the session's own
#       checkout). Downloads the Vulkan/EGL loader .debs into .gl/, builds
#       the release binary, the test binaries (`cargo test --no-run
#       --release`) and the bench binaries, strips them into .gpu-carry/,
#       checks that the tree plus the carry stay under 64 MiB, and prints
#       the exact `run` calls to make.
#
#   benches/gpu_remote.sh remote STAGE...     (STAGE: check throughput whole knn, or all)
#       THERE, in the repository root (the command of a `run` call).
#       Unpacks the loaders, puts the binaries where the tests expect them,
#       then per stage:
#         check       `triage run --backend auto` on a tiny synth set must
#                     pick the NVIDIA adapter (report.json names it), then
#                     every test binary with TRIAGE_REQUIRE_GPU=1;
#         throughput  benches/throughput: kernels vs device-to-device copy,
#                     upload vs host-to-device (`limit`/`ratio` lines);
#         whole       `triage synth` of 200 x 19 x 512 x 512 (f32), `cat` of
#                     probs.npy, whole `triage run --backend gpu` and
#                     `--backend cpu` (benches/whole_run.py), against the
#                     file read and the host-to-device bandwidth;
#         knn         benches/knn at 100000x512 and 1000000x128: GPU exact
#                     vs CPU exact and HNSW (each child killed after
#                     GPU_REMOTE_KNN_TIMEOUT_S).
#       Logs go to $OUT (at most 8 files: env.log check.log throughput.log
#       whole.log whole.json report-gpu.json knn.log summary.txt); the
#       summary (every limit/measure/ratio/goal line) is printed last.
#       Every step runs under `timeout`, and no step starts past
#       GPU_REMOTE_BUDGET_S (default 560 s) of the call.
#
#   GPU_REMOTE_DRY=1 benches/gpu_remote.sh remote all
#       The remote half here, on whatever adapter exists (lavapipe): no
#       dpkg/ldconfig, no TRIAGE_REQUIRE_GPU, small sizes. Tests the script.
#
# Environment (remote): OUT (default /tmp/gpu-remote-out), GPU_REMOTE_WORK
# (scratch, default /tmp/triage-gpu), GPU_REMOTE_ITEMS (segmentation items,
# default 200), GPU_REMOTE_REPS (whole-run repetitions, default 3),
# GPU_REMOTE_BATCH_VARIANTS (extra --batch-size values for the GPU whole run,
# default "256MiB"; "" for none), GPU_REMOTE_KNN_SIZES (default
# 100000x512,1000000x128), GPU_REMOTE_KNN_TIMEOUT_S (default 120),
# GPU_REMOTE_BUDGET_S (default 560).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CARRY=.gpu-carry
GL=.gl
LIMIT_MIB=64

die() {
    echo "gpu_remote: $*" >&2
    exit 1
}

# ----------------------------------------------------------------- prepare --

ensure_ignored() {
    local p=$1
    if ! git check-ignore -q "$p/probe"; then
        local ex
        ex=$(git rev-parse --git-path info/exclude)
        mkdir -p "$(dirname "$ex")"
        echo "/$p/" >>"$ex"
        echo "added /$p/ to $ex"
    fi
}

fetch_loaders() {
    if compgen -G "$GL/*.deb" >/dev/null; then
        echo "loaders: already in $GL/"
        return
    fi
    mkdir -p "$GL" /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update >/dev/null
    (cd "$GL" && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
}

# Executables from cargo's JSON messages on stdin, one "KIND NAME PATH" a line.
artifacts() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    kinds, name, test = m["target"]["kind"], m["target"]["name"], m["profile"]["test"]
    if "bench" in kinds:
        print("bench", name, m["executable"])
    elif test:
        # integration tests keep their name; unit tests of the lib/bin get a prefix
        print("test", name if "test" in kinds else "unit-" + kinds[0] + "-" + name, m["executable"])
    elif "bin" in kinds:
        print("bin", name, m["executable"])
'
}

travel_bytes() {
    # What a run call sends: tracked and untracked-not-ignored files, plus the carried paths.
    local tree carried
    tree=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
    carried=$(du -sb "$GL" "$CARRY" | awk '{s+=$1} END {print s+0}')
    echo "$tree $carried"
}

prepare() {
    [ "$(uname -m)" = x86_64 ] || die "this machine is $(uname -m); the GPU machine is x86-64: build there or cross-compile"
    ensure_ignored "$GL"
    ensure_ignored "$CARRY"
    echo "== loaders"
    fetch_loaders
    ls -l "$GL"

    echo "== build (release binary, test binaries, bench binaries)"
    local msgs
    msgs=$(mktemp)
    nice cargo build --release --locked --message-format=json-render-diagnostics >"$msgs"
    nice cargo test --release --locked --no-run --message-format=json-render-diagnostics >>"$msgs"
    nice cargo bench --locked --no-run --message-format=json-render-diagnostics >>"$msgs"
    local list
    list=$(artifacts <"$msgs" | sort -u)
    rm -f "$msgs"
    echo "$list" | awk '{print "  " $1 " " $2}'

    echo "== carry"
    rm -rf "$CARRY"
    mkdir -p "$CARRY/tests" "$CARRY/benches"
    local kind name path dst
    while read -r kind name path; do
        case $kind in
        bin) [ "$name" = triage ] && dst=$CARRY/triage || continue ;;
        test) dst=$CARRY/tests/$name ;;
        bench) dst=$CARRY/benches/$name ;;
        esac
        strip -o "$dst" "$path"
    done <<<"$list"
    [ -x "$CARRY/triage" ] || die "no triage binary among cargo's artifacts"
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    # The test binaries have CARGO_MANIFEST_DIR and CARGO_BIN_EXE_triage
    # compiled in as absolute paths; `remote` recreates them there.
    {
        echo "BUILD_ROOT=$ROOT"
        echo "TARGET_DIR=$target_dir"
        echo "GIT_REV=$(git rev-parse HEAD)$(git diff --quiet HEAD -- src shaders benches tests Cargo.toml Cargo.lock || echo -dirty)"
        echo "BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "RUSTC='$(rustc --version)'"
    } >"$CARRY/manifest.env"
    du -sh "$CARRY"/triage "$CARRY"/tests "$CARRY"/benches | sed 's/^/  /'
    local raw tree carried
    raw=$(du -sb "$CARRY" | cut -f1)
    read -r tree carried < <(travel_bytes)
    if [ $((tree + carried)) -gt $((LIMIT_MIB * 1024 * 1024 - 2 * 1024 * 1024)) ]; then
        echo "  $((raw / 1048576)) MiB of binaries: too much with the tree; packing them as one .tar.xz"
        tar -C "$CARRY" -cf - triage tests benches | xz -T0 -9e --lzma2=dict=64MiB >"$CARRY.bundle.tmp"
        rm -rf "${CARRY:?}"/triage "${CARRY:?}"/tests "${CARRY:?}"/benches
        mv "$CARRY.bundle.tmp" "$CARRY/bundle.tar.xz"
        read -r tree carried < <(travel_bytes)
    fi
    printf '  tree %.1f MiB + carried (%s, %s) %.1f MiB = %.1f MiB of %d MiB\n' \
        "$(echo "$tree / 1048576" | bc -l)" "$GL" "$CARRY" "$(echo "$carried / 1048576" | bc -l)" \
        "$(echo "($tree + $carried) / 1048576" | bc -l)" "$LIMIT_MIB"
    [ $((tree + carried)) -le $((LIMIT_MIB * 1024 * 1024)) ] || die "over the ${LIMIT_MIB} MiB a run call may send"

    cat <<EOF

== the run calls (device tool), in this order; each ends by printing its summary:
1. checks, throughput, whole runs (about 5-8 minutes):
   run(command="bash benches/gpu_remote.sh remote check throughput whole", carry=["$GL", "$CARRY"], timeout_s=600)
2. kNN (about 6-9 minutes):
   run(command="bash benches/gpu_remote.sh remote knn", carry=["$GL", "$CARRY"], timeout_s=600)
Files come back from \$OUT (summary.txt, the logs, whole.json, report-gpu.json).
The device tool sends the checkout the session started in: run 'prepare' there.
EOF
}

# ------------------------------------------------------------------ remote --

DRY=${GPU_REMOTE_DRY:-0}
OUT=${OUT:-/tmp/gpu-remote-out}
WORK=${GPU_REMOTE_WORK:-/tmp/triage-gpu}
BUDGET=${GPU_REMOTE_BUDGET_S:-560}
STEPS=$WORK/steps.txt

left() { echo $((BUDGET - SECONDS)); }

# step LOG NAME SECONDS CMD...: run CMD under `timeout` (at most SECONDS, and
# never past the budget), appending to $OUT/LOG; record its status.
step() {
    local log=$OUT/$1 name=$2 limit=$3
    shift 3
    local rest
    rest=$(left)
    if [ "$rest" -lt 15 ]; then
        echo "step $name: SKIPPED (budget of ${BUDGET} s spent)" | tee -a "$log" "$STEPS"
        return 0
    fi
    [ "$limit" -le "$rest" ] || limit=$rest
    local t0=$SECONDS rc=0
    echo "== $name (limit ${limit} s) $(date -u +%H:%M:%S)" | tee -a "$log"
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
    local what=ok
    [ "$rc" -eq 0 ] || what="FAILED rc=$rc"
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || what="TIMED OUT after ${limit} s"
    echo "step $name: $what ($((SECONDS - t0)) s)" | tee -a "$log" "$STEPS"
    return 0
}

setup() {
    mkdir -p "$OUT" "$WORK"
    : >"$STEPS"
    local env=$OUT/env.log
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)   dry: $DRY"
        echo "host: $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
        grep -m1 'model name' /proc/cpuinfo || true
        df -h "$WORK" | tail -1
        [ -f "$CARRY/manifest.env" ] && cat "$CARRY/manifest.env"
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,pcie.link.gen.current,pcie.link.width.current --format=csv || true
        fi
    } >"$env" 2>&1
    cat "$env"

    if [ "$DRY" != 1 ]; then
        compgen -G "$GL/*.deb" >/dev/null || die "no loader .debs in $GL/: name it in carry"
        for f in "$GL"/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    ldconfig -p | grep -E 'libvulkan|libEGL' | sed 's/^/  /' >>"$env" || echo "  no libvulkan in ldconfig -p" >>"$env"

    # The binaries: plain, or packed by `prepare` when they were too large.
    BIN=$CARRY
    if [ -f "$CARRY/bundle.tar.xz" ]; then
        BIN=$WORK/carry
        rm -rf "$BIN" && mkdir -p "$BIN"
        if command -v xz >/dev/null; then
            xz -dc "$CARRY/bundle.tar.xz" | tar -C "$BIN" -xf -
        else
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$CARRY/bundle.tar.xz" "$BIN"
        fi
    fi
    [ -x "$BIN/triage" ] || die "no $BIN/triage: run 'benches/gpu_remote.sh prepare' here and name $CARRY in carry"
    chmod +x "$BIN"/triage "$BIN"/tests/* "$BIN"/benches/* 2>/dev/null || true
    TRIAGE=$BIN/triage

    # Paths compiled into the test binaries: CARGO_MANIFEST_DIR (datasets/)
    # and CARGO_BIN_EXE_triage (TARGET_DIR/release/triage).
    local BUILD_ROOT="" TARGET_DIR=""
    # shellcheck disable=SC1090,SC1091
    [ -f "$CARRY/manifest.env" ] && . "$CARRY/manifest.env"
    if [ -n "$BUILD_ROOT" ] && ! [ "$BUILD_ROOT" -ef "$ROOT" ]; then
        if [ -e "$BUILD_ROOT" ]; then
            echo "warning: $BUILD_ROOT exists and is not this checkout; tests reading datasets/ may fail" >>"$env"
        else
            mkdir -p "$(dirname "$BUILD_ROOT")" && ln -s "$ROOT" "$BUILD_ROOT"
            echo "linked $BUILD_ROOT -> $ROOT (compiled into the tests)" >>"$env"
        fi
    fi
    if [ -n "$TARGET_DIR" ]; then
        mkdir -p "$TARGET_DIR/release"
        cmp -s "$TRIAGE" "$TARGET_DIR/release/triage" || cp "$TRIAGE" "$TARGET_DIR/release/triage"
    fi
    export RUST_BACKTRACE=1
    XDG_RUNTIME_DIR=$(mktemp -d)
    export XDG_RUNTIME_DIR
    chmod 700 "$XDG_RUNTIME_DIR"
}

# What `--backend auto` picked on a tiny synthetic set: "name|adapter|api|type".
auto_pick() {
    local ds=$WORK/tiny
    [ -f "$ds/triage.toml" ] || "$TRIAGE" synth --out "$ds" --items 8 --size 128 128 --classes 5 >/dev/null
    rm -rf "$WORK/tiny-auto"
    "$TRIAGE" run "$ds" --out "$WORK/tiny-auto" --backend auto >/dev/null 2>>"$OUT/check.log" || true
    python3 -c '
import json, sys
try:
    b = json.load(open(sys.argv[1]))["backend"]
except Exception as e:
    print("none|run failed: %s||" % e); sys.exit()
print("|".join(str(b.get(k, "")) for k in ("name", "adapter", "api", "device_type")))
' "$WORK/tiny-auto/report.json"
}

stage_check() {
    local log=$OUT/check.log
    local pick
    pick=$(auto_pick)
    echo "auto picked: $pick" | tee -a "$log"
    local nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ "$DRY" != 1 ] && [ "${pick%%|*}" != gpu ] && [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv" ]; then
        export VK_DRIVER_FILES=$nv
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
        echo "no hardware adapter without it: VK_DRIVER_FILES=$nv" | tee -a "$log" "$OUT/env.log"
        pick=$(auto_pick)
        echo "auto picked: $pick" | tee -a "$log"
    fi
    echo "check auto_backend: $pick" >>"$STEPS"
    case $pick in
    gpu\|*\|discrete | gpu\|*\|integrated) ;;
    *) [ "$DRY" = 1 ] || echo "check auto_backend: NOT a hardware GPU" | tee -a "$log" "$STEPS" ;;
    esac

    # Every test binary, the GPU parity suite first.
    local t name
    local tests=()
    for t in "$BIN"/tests/*gpu* "$BIN"/tests/*; do
        [ -x "$t" ] || continue
        case " ${tests[*]} " in *" $t "*) continue ;; esac
        tests+=("$t")
    done
    for t in "${tests[@]}"; do
        name=$(basename "$t")
        if [ "$DRY" = 1 ]; then
            step check.log "test $name" 300 "$t"
        else
            step check.log "test $name" 300 env TRIAGE_REQUIRE_GPU=1 "$t"
        fi
    done
    grep -E '^test result:|^test .* FAILED|panicked at' "$log" | sort | uniq -c | sed 's/^/  /' >>"$STEPS" || true
}

stage_throughput() {
    local envs=(CRITERION_HOME="$WORK/criterion")
    if [ "$DRY" = 1 ]; then
        envs+=(TRIAGE_BENCH_ITEMS=2 TRIAGE_BENCH_CRITERION=0 TRIAGE_BENCH_REPS=3)
    fi
    step throughput.log "bench throughput" 300 env "${envs[@]}" "$BIN/benches/throughput" --bench
    grep -m1 '^limit gpu_h2d_dma' "$OUT/throughput.log" | awk '{print $3}' >"$WORK/h2d_gbps" || true
}

stage_whole() {
    local log=$OUT/whole.log
    local n=${GPU_REMOTE_ITEMS:-200} reps=${GPU_REMOTE_REPS:-3}
    [ "$DRY" = 1 ] && n=${GPU_REMOTE_ITEMS:-4} && reps=${GPU_REMOTE_REPS:-2}
    local tag=-n$n
    [ "$n" = 32 ] && tag=""
    local ds=$WORK/seg-f32$tag
    if [ ! -f "$ds/triage.toml" ]; then
        step whole.log "synth ${n}x19x512x512 f32" 240 "$TRIAGE" synth --out "$ds" --items "$n" --size 512 512 --classes 19 --dtype f32
    fi
    [ -f "$ds/probs.npy" ] || {
        echo "step whole: no dataset" | tee -a "$STEPS"
        return 0
    }
    local bytes
    bytes=$(stat -c %s "$ds/probs.npy")
    local i t0 t1
    for i in 1 2 3; do
        t0=$(date +%s.%N)
        cat "$ds/probs.npy" >/dev/null
        t1=$(date +%s.%N)
        echo "cat probs.npy > /dev/null ($i): $(echo "$t1 - $t0" | bc -l | cut -c1-6) s, $(echo "$bytes / ($t1 - $t0) / 1000000000" | bc -l | cut -c1-6) GB/s" | tee -a "$log"
    done
    local h2d=() extra=()
    [ -s "$WORK/h2d_gbps" ] && h2d=(--h2d-gbps "$(cat "$WORK/h2d_gbps")")
    [ "$DRY" = 1 ] || true
    step whole.log "whole_run gpu,cpu (${reps} reps)" 400 python3 -u benches/whole_run.py --no-build --no-peer \
        --bin "$TRIAGE" --work "$WORK" --only seg --items "$n" --dtypes f32 --backends gpu,cpu \
        --reps "$reps" "${h2d[@]}" --json "$OUT/whole.json" "${extra[@]}"
    [ -f "$WORK/out-seg-f32$tag-gpu/report.json" ] && cp "$WORK/out-seg-f32$tag-gpu/report.json" "$OUT/report-gpu.json"
    # One GPU run with every stage's time on stderr.
    step whole.log "triage run --backend gpu --timings" 120 "$TRIAGE" run "$ds" --out "$WORK/out-timings" --backend gpu --timings
    local b
    for b in ${GPU_REMOTE_BATCH_VARIANTS-256MiB}; do
        step whole.log "whole_run gpu --batch-size $b" 200 python3 -u benches/whole_run.py --no-build --no-peer \
            --bin "$TRIAGE" --work "$WORK/batch-$b" --only seg --items "$n" --dtypes f32 --backends gpu \
            --reps 2 "${h2d[@]}" --run-args "--batch-size $b"
    done
}

stage_knn() {
    local sizes=${GPU_REMOTE_KNN_SIZES:-100000x512,1000000x128}
    local envs=(TRIAGE_KNN_EXACT_MAX=1000000 TRIAGE_KNN_METHODS=exact-gpu,exact-cpu,hnsw
        TRIAGE_KNN_TIMEOUT_S="${GPU_REMOTE_KNN_TIMEOUT_S:-120}")
    if [ "$DRY" = 1 ]; then
        sizes=${GPU_REMOTE_KNN_SIZES:-3000x64}
        envs+=(TRIAGE_KNN_GPU_MAX=100000)
    fi
    envs+=(TRIAGE_KNN_SIZES="$sizes")
    step knn.log "bench knn $sizes" 590 env "${envs[@]}" "$BIN/benches/knn"
}

# The datasets synthesised in the work folder are large; the work folder
# moves the working tree of a symlinked checkout.
summary() {
    local s=$OUT/summary.txt
    {
        echo "== summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECONDS} s; logs in \$OUT)"
        grep -h -E '^(gpu adapter|GPU adapter|adapter)' "$OUT"/*.log 2>/dev/null | sort -u || true
        cat "$STEPS"
        grep -h -E '^(limit|measure|ratio|goal) ' "$OUT"/*.log 2>/dev/null || true
        grep -h -E '^\{"method"' "$OUT/knn.log" 2>/dev/null || true
        grep -h -E 'read the file|triage run, f32|backend gpu:|cat probs' "$OUT/whole.log" 2>/dev/null || true
    } >"$s"
    cat "$s"
}

remote() {
    local stages=("$@")
    [ ${#stages[@]} -gt 0 ] || die "remote: name the stages (check throughput whole knn) or 'all'"
    [ "${stages[*]}" = all ] && stages=(check throughput whole knn)
    setup
    local st
    for st in "${stages[@]}"; do
        case $st in
        check) stage_check ;;
        throughput) stage_throughput ;;
        whole) stage_whole ;;
        knn) stage_knn ;;
        *) die "unknown stage $st" ;;
        esac
    done
    summary
}

case ${1:-} in
prepare) prepare ;;
remote)
    shift
    remote "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
