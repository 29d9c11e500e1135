// Exact k-nearest neighbours by cosine distance of unit rows: a tiled brute
// force. Mirrors src/neighbors/knn.rs (`exact`).
//
// One invocation per query row. A workgroup walks the candidate rows in tiles
// of TILE rows; each tile is staged in workgroup memory DCH dimensions at a
// time, so every candidate value is read from global memory once per
// workgroup rather than once per query. Each invocation keeps a sorted list
// of the best KK candidates `(1 - q.c, index)`, lowest first, ties to the
// lower index. The host re-scores these candidates with the CPU's dot
// product, so reported distances are the reference's bit for bit; KK exceeds
// k by a margin so that rounding differences cannot push a true neighbour out.
//
// One dispatch covers only `nc` candidates starting at row `c_off` of the
// candidate binding, and the list persists in `out_*` between dispatches
// (`first` = 1 starts it empty). The host sizes `nc` so one invocation runs
// at most ~60000 loop iterations: lavapipe (llvmpipe) silently stops loops
// after 65535 iterations per outermost loop, and shorter dispatches also keep
// clear of GPU watchdogs.

struct KnnParams {
    nq: u32,      // query rows in this dispatch
    nc: u32,      // candidate rows in this dispatch
    d: u32,       // dimensions
    kk: u32,      // candidates kept per query (<= MAXK)
    q_base: u32,  // global index of query row 0
    c_base: u32,  // global index of candidate row c_off
    c_off: u32,   // first candidate row in the candidate binding
    grid_x: u32,  // workgroups per grid row (2-D dispatch)
    first: u32,   // 1: start the lists empty; 0: continue from out_*
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

const TILE: u32 = 64u;
const DCH: u32 = 32u;
const MAXK: u32 = 64u;
const NONE: u32 = 0xffffffffu;
const FAR: f32 = 3.4e38;

@group(0) @binding(0) var<uniform> P: KnnParams;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> cands: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_dist: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_id: array<u32>;

// tile[t * 16 + j / 4][j % 4]: dimension d0 + t of candidate c0 + j.
var<workgroup> tile: array<vec4<f32>, 512>;

@compute @workgroup_size(64)
fn knn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let q = (wg.y * P.grid_x + wg.x) * TILE + lid;
    let live = q < P.nq;
    var best_d: array<f32, 64>;
    var best_i: array<u32, 64>;
    if (live && P.first == 0u) {
        for (var m = 0u; m < P.kk; m++) {
            best_d[m] = out_dist[q * P.kk + m];
            best_i[m] = out_id[q * P.kk + m];
        }
    } else {
        for (var m = 0u; m < P.kk; m++) {
            best_d[m] = FAR;
            best_i[m] = NONE;
        }
    }
    var acc: array<vec4<f32>, 16>;
    for (var c0 = 0u; c0 < P.nc; c0 += TILE) {
        for (var j = 0u; j < 16u; j++) { acc[j] = vec4<f32>(0.0); }
        for (var d0 = 0u; d0 < P.d; d0 += DCH) {
            workgroupBarrier();
            // Stage TILE x DCH values: invocation lid loads row c0 + lid.
            let c = c0 + lid;
            for (var t = 0u; t < DCH; t++) {
                var v = 0.0;
                if (c < P.nc && d0 + t < P.d) { v = cands[(P.c_off + c) * P.d + d0 + t]; }
                tile[t * 16u + lid / 4u][lid % 4u] = v;
            }
            workgroupBarrier();
            if (live) {
                let dn = min(DCH, P.d - d0);
                for (var t = 0u; t < dn; t++) {
                    let qv = vec4<f32>(queries[q * P.d + d0 + t]);
                    for (var j = 0u; j < 16u; j++) {
                        acc[j] = fma(qv, tile[t * 16u + j], acc[j]);
                    }
                }
            }
        }
        if (live) {
            let jn = min(TILE, P.nc - c0);
            for (var j = 0u; j < jn; j++) {
                let gid = P.c_base + c0 + j;
                if (gid == P.q_base + q) { continue; }
                let dist = 1.0 - acc[j / 4u][j % 4u];
                let last = P.kk - 1u;
                if (dist < best_d[last] || (dist == best_d[last] && gid < best_i[last])) {
                    // Insertion into the sorted list.
                    var pos = last;
                    while (pos > 0u && (dist < best_d[pos - 1u] ||
                           (dist == best_d[pos - 1u] && gid < best_i[pos - 1u]))) {
                        best_d[pos] = best_d[pos - 1u];
                        best_i[pos] = best_i[pos - 1u];
                        pos -= 1u;
                    }
                    best_d[pos] = dist;
                    best_i[pos] = gid;
                }
            }
        }
    }
    if (live) {
        for (var m = 0u; m < P.kk; m++) {
            out_dist[q * P.kk + m] = best_d[m];
            out_id[q * P.kk + m] = best_i[m];
        }
    }
}
