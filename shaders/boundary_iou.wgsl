// Boundary IoU bands of the label map and the prediction map, and the
// per-class band intersection and sizes. Mirrors src/metrics/boundary_iou.rs.
//
// A pixel is interior iff its (2d+1)^2 window lies inside the image and holds
// only its own value; otherwise it is in the band of its class. Separable:
// `row_uniform` marks pixels whose row window is inside the image and uniform
// (bit 0: label map, bit 1: prediction map); `band_count` then requires the
// column window to be inside the image with every pixel row-uniform and equal
// in value. Ignored label pixels shape the bands but are not counted.
// One dispatch per item; 2-D dispatch past 65535 workgroups.

struct Params {
    height: u32,
    width: u32,
    d: u32,
    classes: u32,
    ignore_index: u32,
    label_base: u32,
    pred_base: u32,
    flag_base: u32,
    slot: u32,
    groups_x: u32,
    n_groups: u32,
    // 1: two annotators' maps (`pred_map` is the second annotator's): a
    // pixel either map ignores counts in neither band.
    pair: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> pred_map: array<u32>;
@group(0) @binding(3) var<storage, read_write> flags: array<u32>;
@group(0) @binding(4) var<storage, read_write> bands: array<atomic<u32>>;

const WG: u32 = 256u;
const PRIVATE_CLASSES: u32 = 1024u;

var<workgroup> wg_gt: array<atomic<u32>, 1024>;
var<workgroup> wg_pred: array<atomic<u32>, 1024>;
var<workgroup> wg_inter: array<atomic<u32>, 1024>;

fn row_uniform_in(base: u32, y: u32, x: u32, is_label: bool) -> bool {
    let w = P.width;
    let d = P.d;
    if (x < d || x + d >= w) { return false; }
    let row = base + y * w;
    var v: u32;
    if (is_label) { v = labels[row + x]; } else { v = pred_map[row + x]; }
    for (var k = 1u; k <= d; k++) {
        var a: u32;
        var b: u32;
        if (is_label) { a = labels[row + x - k]; b = labels[row + x + k]; }
        else { a = pred_map[row + x - k]; b = pred_map[row + x + k]; }
        if (a != v || b != v) { return false; }
    }
    return true;
}

@compute @workgroup_size(256)
fn row_uniform(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = gid.x + gid.y * P.groups_x;
    if (wid >= P.n_groups) { return; }
    let px = wid * WG + lid;
    if (px >= P.height * P.width) { return; }
    let y = px / P.width;
    let x = px % P.width;
    var f = 0u;
    if (row_uniform_in(P.label_base, y, x, true)) { f |= 1u; }
    if (row_uniform_in(P.pred_base, y, x, false)) { f |= 2u; }
    flags[P.flag_base + px] = f;
}

fn interior(y: u32, x: u32, bit: u32, is_label: bool) -> bool {
    let w = P.width;
    let d = P.d;
    if (y < d || y + d >= P.height) { return false; }
    let px = y * w + x;
    if ((flags[P.flag_base + px] & bit) == 0u) { return false; }
    var v: u32;
    if (is_label) { v = labels[P.label_base + px]; } else { v = pred_map[P.pred_base + px]; }
    for (var k = 1u; k <= d; k++) {
        let up = px - k * w;
        let dn = px + k * w;
        if ((flags[P.flag_base + up] & bit) == 0u || (flags[P.flag_base + dn] & bit) == 0u) { return false; }
        var a: u32;
        var b: u32;
        if (is_label) { a = labels[P.label_base + up]; b = labels[P.label_base + dn]; }
        else { a = pred_map[P.pred_base + up]; b = pred_map[P.pred_base + dn]; }
        if (a != v || b != v) { return false; }
    }
    return true;
}

@compute @workgroup_size(256)
fn band_count(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = gid.x + gid.y * P.groups_x;
    if (wid >= P.n_groups) { return; }
    for (var c = lid; c < PRIVATE_CLASSES; c += WG) {
        atomicStore(&wg_gt[c], 0u);
        atomicStore(&wg_pred[c], 0u);
        atomicStore(&wg_inter[c], 0u);
    }
    workgroupBarrier();
    let px = wid * WG + lid;
    let c = P.classes;
    let base = P.slot * 3u * c;
    if (px < P.height * P.width) {
        let l = labels[P.label_base + px];
        let p = pred_map[P.pred_base + px];
        if (l != P.ignore_index && (P.pair == 0u || p != P.ignore_index)) {
            let y = px / P.width;
            let x = px % P.width;
            let in_g = l < c && !interior(y, x, 1u, true);
            let in_p = !interior(y, x, 2u, false);
            let both = in_g && in_p && l == p;
            if (c <= PRIVATE_CLASSES) {
                if (in_g) { atomicAdd(&wg_gt[l], 1u); }
                if (in_p) { atomicAdd(&wg_pred[p], 1u); }
                if (both) { atomicAdd(&wg_inter[p], 1u); }
            } else {
                if (in_g) { atomicAdd(&bands[base + c + l], 1u); }
                if (in_p) { atomicAdd(&bands[base + 2u * c + p], 1u); }
                if (both) { atomicAdd(&bands[base + p], 1u); }
            }
        }
    }
    workgroupBarrier();
    if (c <= PRIVATE_CLASSES) {
        for (var k = lid; k < c; k += WG) {
            let i = atomicLoad(&wg_inter[k]);
            let g = atomicLoad(&wg_gt[k]);
            let q = atomicLoad(&wg_pred[k]);
            if (i > 0u) { atomicAdd(&bands[base + k], i); }
            if (g > 0u) { atomicAdd(&bands[base + c + k], g); }
            if (q > 0u) { atomicAdd(&bands[base + 2u * c + k], q); }
        }
    }
}
