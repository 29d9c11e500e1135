// Label x label counts between two same-size annotation maps (the mask IoU of
// a near-duplicate pair). Mirrors src/metrics/mask_iou.rs.
//
// Maps are u16 labels packed two per u32 word. Pixels where either map holds
// the ignore label are skipped. Agreeing pixels (the common case) are counted
// in workgroup memory and flushed once per workgroup; disagreements go to the
// global matrix directly.

struct MaskParams {
    n: u32,        // pixels
    classes: u32,
    ignore: u32,
    grid_x: u32,   // workgroups per grid row (2-D dispatch)
}

const WG_DIAG: u32 = 256u;

@group(0) @binding(0) var<uniform> M: MaskParams;
@group(0) @binding(1) var<storage, read> map_a: array<u32>;
@group(0) @binding(2) var<storage, read> map_b: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts: array<atomic<u32>>;

var<workgroup> diag: array<atomic<u32>, 256>;

fn unpack_label(word: u32, i: u32) -> u32 {
    return (word >> ((i & 1u) * 16u)) & 0xffffu;
}

@compute @workgroup_size(256)
fn mask_iou(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    atomicStore(&diag[lid], 0u);
    workgroupBarrier();
    let i = (wg.y * M.grid_x + wg.x) * 256u + lid;
    if (i < M.n) {
        let a = unpack_label(map_a[i >> 1u], i);
        let b = unpack_label(map_b[i >> 1u], i);
        if (a != M.ignore && b != M.ignore && a < M.classes && b < M.classes) {
            if (a == b && a < WG_DIAG) {
                atomicAdd(&diag[a], 1u);
            } else {
                atomicAdd(&counts[a * M.classes + b], 1u);
            }
        }
    }
    workgroupBarrier();
    if (lid < M.classes) {
        let v = atomicLoad(&diag[lid]);
        if (v > 0u) { atomicAdd(&counts[lid * M.classes + lid], v); }
    }
}
