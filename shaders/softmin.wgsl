// Softmin weights. Mirrors src/metrics/softmin.rs: the image score is
// softmin_T(s) = sum s_i e^{-s_i/T} / sum e^{-s_i/T} with T = 0.1
// (cleanlab's segmentation label-quality softmin). The shader accumulates
// the unshifted weights e^{-s/T} in f32; the host rescales the workgroup sums
// by e^{1/T} (`Softmin::from_unshifted`) to the reference's shifted weights.
//
// `inv_t` is 1/T as f32 (metrics::softmin::INV_TEMPERATURE_F32), passed at
// run time in the uniform block (`P.softmin_inv_t`): as a compile-time
// constant the driver may fold it into `exp`'s change of base and round the
// weights differently. Concatenated into score_pixels.

fn softmin_weight(s: f32, inv_t: f32) -> f32 {
    return exp(-s * inv_t);
}
