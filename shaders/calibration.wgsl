// Reliability bins: 15 equal-width bins over the confidence, bin m holding
// [m/15, (m+1)/15) and the last bin closed (a confidence of exactly 1.0 goes
// to bin 14). Mirrors src/metrics/calibration.rs.
//
// Per workgroup: integer counts, integer correct counts and confidence sums
// in fixed point (conf * 2^23, so 256 samples of 1.0 still fit a u32; the
// host divides by 2^23 in f64, an absolute error of at most 2^-24 per sample).

const BINS: u32 = 15u;
const CONF_SCALE: f32 = 8388608.0;

var<workgroup> wg_bin_count: array<atomic<u32>, 15>;
var<workgroup> wg_bin_correct: array<atomic<u32>, 15>;
var<workgroup> wg_bin_conf: array<atomic<u32>, 15>;

fn bin_index(confidence: f32) -> u32 {
    let m = floor(confidence * f32(BINS));
    return min(u32(max(m, 0.0)), BINS - 1u);
}

fn bins_clear(lid: u32) {
    if (lid < BINS) {
        atomicStore(&wg_bin_count[lid], 0u);
        atomicStore(&wg_bin_correct[lid], 0u);
        atomicStore(&wg_bin_conf[lid], 0u);
    }
}

fn bins_add(confidence: f32, correct: bool) {
    let m = bin_index(confidence);
    atomicAdd(&wg_bin_count[m], 1u);
    if (correct) { atomicAdd(&wg_bin_correct[m], 1u); }
    atomicAdd(&wg_bin_conf[m], u32(round(confidence * CONF_SCALE)));
}
