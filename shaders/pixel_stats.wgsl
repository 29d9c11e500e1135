// Per-sample scores: validation, normalisation, then every per-sample score
// of the score table (src/scores.rs) into `s.v`: entropy, margin, least
// confidence, self-confidence, normalised margin and Brier score. Mirrors
// src/metrics/pixel_stats.rs (the CPU reference) operation for operation:
// the same f32 summation order, the same renormalisation rule and the same
// argmax tie-break (first maximum wins).
//
// Concatenated in front of score_pixels.wgsl, which declares `input` and `P`.

// Why a sample is invalid (0 = valid).
const INVALID_NONE: u32 = 0u;
const INVALID_NONFINITE: u32 = 1u;
const INVALID_NEGATIVE: u32 = 2u;
const INVALID_SUM: u32 = 3u;

// Raw bits of element `idx` as f32 bits; float16 elements are widened with
// `unpack2x16float`, so no shader-f16 feature is needed.
fn load(idx: u32) -> f32 {
    if (P.is_f16 == 1u) {
        let v = unpack2x16float(input[idx >> 1u]);
        return select(v.x, v.y, (idx & 1u) == 1u);
    }
    return bitcast<f32>(input[idx]);
}

// Validity from the stored bits, never from float compares (WGSL lets
// implementations assume that NaN and infinity do not occur).
fn classify_bits(idx: u32) -> u32 {
    if (P.is_f16 == 1u) {
        let word = input[idx >> 1u];
        let h = select(word & 0xffffu, word >> 16u, (idx & 1u) == 1u);
        if ((h & 0x7c00u) == 0x7c00u) { return INVALID_NONFINITE; }
        if (P.logits == 0u && (h & 0x8000u) != 0u && (h & 0x7fffu) != 0u) { return INVALID_NEGATIVE; }
        return INVALID_NONE;
    }
    let b = input[idx];
    if ((b & 0x7f800000u) == 0x7f800000u) { return INVALID_NONFINITE; }
    if (P.logits == 0u && (b & 0x80000000u) != 0u && (b & 0x7fffffffu) != 0u) { return INVALID_NEGATIVE; }
    return INVALID_NONE;
}

struct SampleScores {
    invalid: u32,
    pred: u32,
    confidence: f32,
    // The per-sample scores of the score table (src/scores.rs), indexed by
    // the generated S_* constants.
    v: array<f32, N_SAMPLE>,
}

// Score the sample whose class k lives at element `base + k * stride`.
fn score_sample(base: u32, stride: u32, label: u32) -> SampleScores {
    var s: SampleScores;
    s.invalid = INVALID_NONE;
    let c = P.classes;
    // Pass 1: validate; the sum (or the max and the sum of exponentials).
    var mx = -3.4028235e38;
    for (var k = 0u; k < c; k++) {
        let why = classify_bits(base + k * stride);
        if (why != INVALID_NONE) { s.invalid = why; return s; }
        mx = max(mx, load(base + k * stride));
    }
    var sum = 0.0;
    for (var k = 0u; k < c; k++) {
        let x = load(base + k * stride);
        if (P.logits == 1u) { sum += exp(x - mx); } else { sum += x; }
    }
    var keep = false;
    if (P.logits == 0u) {
        if (abs(sum - 1.0) > P.sum_tolerance) { s.invalid = INVALID_SUM; return s; }
        keep = abs(sum - 1.0) <= P.rounding_slack;
    }
    // Pass 2: normalised values, scored on the fly.
    var top1 = -3.4028235e38;
    var top2 = -3.4028235e38;
    var pred = 0u;
    var plogp = 0.0;
    var sumsq = 0.0;
    var py = 0.0;
    for (var k = 0u; k < c; k++) {
        let x = load(base + k * stride);
        var q: f32;
        if (P.logits == 1u) { q = exp(x - mx) / sum; } else if (keep) { q = x; } else { q = x / sum; }
        if (q > 0.0) { plogp += q * log(q); }
        sumsq += q * q;
        if (q > top1) {
            top2 = top1;
            top1 = q;
            pred = k;
        } else if (q > top2) {
            top2 = q;
        }
        if (k == label) { py = q; }
    }
    let other = select(top1, top2, pred == label);
    s.pred = pred;
    s.confidence = top1;
    s.v[S_ENTROPY] = max(-plogp / P.ln_classes, 0.0);
    s.v[S_MARGIN] = top1 - top2;
    s.v[S_LEAST_CONFIDENCE] = 1.0 - top1;
    s.v[S_SELF_CONFIDENCE] = py;
    s.v[S_NORMALIZED_MARGIN] = (py - other + 1.0) * 0.5;
    s.v[S_BRIER] = max(sumsq - 2.0 * py + 1.0, 0.0);
    return s;
}
