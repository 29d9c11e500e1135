//! What `shaders/calibration.wgsl` contributes to the `score_pixels`
//! partial record: [`BINS`] bins per table (`crate::metrics::calibration`'s),
//! and confidence sums in fixed point, `round(confidence × CONF_SCALE)` per
//! sample as a `u32` (256 samples of 1.0 still fit), decoded in `f64` by
//! [`confidence_sum`] (an absolute error of at most 2⁻²⁴ per sample).

pub use crate::metrics::calibration::BINS;

/// The fixed-point scale of the bins' confidence sums, 2²³.
pub const CONF_SCALE: f32 = 8_388_608.0;

/// The confidence sum a fixed-point word stands for.
pub fn confidence_sum(word: u32) -> f64 {
    f64::from(word) / f64::from(CONF_SCALE)
}

/// The WGSL constants of `calibration.wgsl`.
pub fn wgsl_constants() -> Vec<(&'static str, String)> {
    vec![
        ("BINS", format!("u32 = {BINS}u")),
        ("CONF_SCALE", format!("f32 = {CONF_SCALE:?}")),
    ]
}
