// The fused per-sample pass: reads every probability exactly once and feeds
// pixel_stats (scores), calibration (bins), confusion (counts) and softmin
// (weights). The host prepends the generated constants (WG, PARTIAL_WORDS,
// N_SAMPLE and the S_* index of each per-sample score of the score table
// (src/scores.rs), the REC_* record offsets, the ROW_* row offsets, BINS,
// CONF_SCALE) and
// appends pixel_stats.wgsl, calibration.wgsl, confusion.wgsl and
// softmin.wgsl (see src/backend/gpu/shaders.rs); the values are defined
// once, in src/backend/gpu/kernels/.
//
// One dispatch per tile: up to `P.count` samples of one item (or one block
// of classification rows), WG per workgroup, 2-D dispatch past 65535
// workgroups. Each workgroup writes one record of PARTIAL_WORDS words:
//   [REC_SCORES ..= REC_SOFTMIN_NM_WEIGHT] (REC_NSUM f32 sums): the
//            N_SAMPLE per-sample scores in table order (s.v),
//            softmin(sc) weighted & weight, softmin(nm) weighted & weight
//            (weights exp(-s/T); the host rescales by exp(1/T)),
//            tree-reduced in workgroup memory
//   [REC_PIXELS]       scored samples (valid, not ignored)
//   [REC_BIN_COUNT..+BINS) bin counts, [REC_BIN_CORRECT..+BINS) bin correct,
//   [REC_BIN_CONF..+BINS) bin confidence (CONF_SCALE fixed point)

struct Params {
    count: u32,          // samples in this tile
    class_stride: u32,   // elements between class k and k+1 of one sample
    sample_stride: u32,  // elements between consecutive samples
    data_base: u32,      // element index of sample 0, class 0
    label_base: u32,     // index into `labels` of sample 0
    pred_base: u32,      // index into `pred` of sample 0 (segmentation)
    partial_base: u32,   // record index of this dispatch's workgroup 0
    slot: u32,           // item slot (confusion matrix, first invalid)
    first_index: u32,    // item-relative index of sample 0 (first invalid)
    row_base: u32,       // index into `rows` of sample 0 (classification)
    groups_x: u32,       // workgroups per row of the 2-D dispatch
    n_groups: u32,       // workgroups in this dispatch
    classes: u32,
    ignore_index: u32,   // 0xffffffff when nothing is ignored
    is_f16: u32,
    logits: u32,
    rows_mode: u32,      // 1: write per-row scores, skip pred map and confusion
    sum_tolerance: f32,
    rounding_slack: f32,
    ln_classes: f32,
    softmin_inv_t: f32,  // 1/T of softmin.wgsl
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> pred_map: array<u32>;
@group(0) @binding(4) var<storage, read_write> partials: array<u32>;
@group(0) @binding(5) var<storage, read_write> confusion: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> first_invalid: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> rows: array<u32>;

var<workgroup> wg_sum: array<f32, REC_NSUM * WG>;
var<workgroup> wg_pixels: atomic<u32>;

@compute @workgroup_size(WG)
fn score_pixels(@builtin(workgroup_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wid = gid.x + gid.y * P.groups_x;
    // Uniform exit: every invocation of a workgroup shares `wid`.
    if (wid >= P.n_groups) { return; }
    bins_clear(lid);
    confusion_clear(lid);
    if (lid == 0u) { atomicStore(&wg_pixels, 0u); }
    workgroupBarrier();

    let j = wid * WG + lid;
    var acc: array<f32, REC_NSUM>;
    for (var f = 0u; f < REC_NSUM; f++) { acc[f] = 0.0; }
    if (j < P.count) {
        let raw_label = labels[P.label_base + j];
        // UNLABELLED (above every u16 annotation): an unlabelled item's
        // pixel, scored against its own prediction, so the self-confidence
        // is the top probability and the normalised-margin slot holds the
        // margin (the CPU reference's `pixels_scalar` does the same).
        let unlabelled = raw_label == UNLABELLED;
        let ignored = raw_label == P.ignore_index && !unlabelled;
        var s = score_sample(P.data_base + j * P.sample_stride, P.class_stride,
                             select(raw_label, 0u, ignored || unlabelled));
        if (unlabelled) {
            s.v[S_SELF_CONFIDENCE] = s.confidence;
            s.v[S_NORMALIZED_MARGIN] = s.v[S_MARGIN];
        }
        let label = select(select(raw_label, 0u, ignored), s.pred, unlabelled);
        if (s.invalid != INVALID_NONE) {
            atomicMin(&first_invalid[P.slot], P.first_index + j);
            if (P.rows_mode == 0u) { pred_map[P.pred_base + j] = 0u; }
        } else {
            if (P.rows_mode == 1u) {
                let r = (P.row_base + j) * ROW_WORDS;
                rows[r + ROW_PRED] = s.pred;
                rows[r + ROW_CONFIDENCE] = bitcast<u32>(s.confidence);
                for (var f = 0u; f < N_SAMPLE; f++) {
                    rows[r + ROW_SCORES + f] = bitcast<u32>(s.v[f]);
                }
            } else {
                pred_map[P.pred_base + j] = s.pred;
            }
            if (!ignored) {
                atomicAdd(&wg_pixels, 1u);
                for (var f = 0u; f < N_SAMPLE; f++) { acc[REC_SCORES + f] = s.v[f]; }
                let sc = s.v[S_SELF_CONFIDENCE];
                let nm = s.v[S_NORMALIZED_MARGIN];
                let w_sc = softmin_weight(sc, P.softmin_inv_t);
                let w_nm = softmin_weight(nm, P.softmin_inv_t);
                acc[REC_SOFTMIN_SC_WEIGHTED] = sc * w_sc;
                acc[REC_SOFTMIN_SC_WEIGHT] = w_sc;
                acc[REC_SOFTMIN_NM_WEIGHTED] = nm * w_nm;
                acc[REC_SOFTMIN_NM_WEIGHT] = w_nm;
                bins_add(s.confidence, s.pred == label);
                if (P.rows_mode == 0u) { confusion_add(P.slot, label, s.pred); }
            }
        }
    }
    for (var f = 0u; f < REC_NSUM; f++) { wg_sum[f * WG + lid] = acc[f]; }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            for (var f = 0u; f < REC_NSUM; f++) {
                wg_sum[f * WG + lid] += wg_sum[f * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    let rec = (P.partial_base + wid) * PARTIAL_WORDS;
    // The sums are words REC_SCORES + f, in the order of `acc`.
    if (lid < REC_NSUM) {
        partials[rec + REC_SCORES + lid] = bitcast<u32>(wg_sum[lid * WG]);
    }
    if (lid == 0u) { partials[rec + REC_PIXELS] = atomicLoad(&wg_pixels); }
    if (lid < BINS) {
        partials[rec + REC_BIN_COUNT + lid] = atomicLoad(&wg_bin_count[lid]);
        partials[rec + REC_BIN_CORRECT + lid] = atomicLoad(&wg_bin_correct[lid]);
        partials[rec + REC_BIN_CONF + lid] = atomicLoad(&wg_bin_conf[lid]);
    }
    if (P.rows_mode == 0u) { confusion_flush(P.slot, lid); }
}
