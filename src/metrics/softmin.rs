//! Softmin aggregation of per-pixel scores into one per-image score: a
//! smooth minimum that the image's worst pixels dominate.
//!
//! For scores `s_i` in [0, 1] and temperature `T` ([`TEMPERATURE`] = 0.1):
//!
//! ```text
//! softmin_T(s) = Σ s_i e^{-s_i/T} / Σ e^{-s_i/T}
//! ```
//!
//! This is cleanlab's segmentation label-quality score
//! (`cleanlab.segmentation.rank._get_label_quality_per_image`, method
//! `"softmin"`, `temperature=0.1`), which calls
//! `cleanlab.internal.multilabel_scorer.softmin`: `Σ s_i · softmax((1 − s)/T)_i`.
//! Like cleanlab, the running sums here use the weights shifted by the
//! constant factor `e^{1/T}`,
//!
//! ```text
//! w_i = e^{(1 − s_i)/T} = e^{1/T} · e^{-s_i/T}      (weight)
//! ```
//!
//! which cancels in the ratio and keeps every weight in `[1, e^{1/T}]` for
//! scores in [0, 1], so nothing underflows however many pixels an image has.
//!
//! The GPU (`shaders/softmin.wgsl`) computes the unshifted f32 weight
//! `e^{-s·(1/T)}` ([`device_weight`], the reciprocal temperature
//! [`INV_TEMPERATURE_F32`] passed in the shader's uniform block); the host rescales the
//! workgroup sums by [`shift`] ([`Softmin::from_unshifted`]) so that both
//! backends' sums mean the same thing.

/// The temperature `T` of the softmin aggregations (cleanlab's default).
pub const TEMPERATURE: f64 = 0.1;

/// `1/T` in `f64`, as the SIMD kernels multiply by it.
pub const INV_TEMPERATURE: f64 = 1.0 / TEMPERATURE;

/// `1/T` as the shader uses it (`f32`).
pub const INV_TEMPERATURE_F32: f32 = (1.0 / TEMPERATURE) as f32;

/// The shift `e^{1/T}` between the unshifted weight `e^{-s/T}` and the
/// weight [`weight`] the sums hold.
pub fn shift() -> f64 {
    (1.0 / TEMPERATURE).exp()
}

/// The (shifted) weight `w = e^{(1 − s)/T}` of a score `s`, in `f64`: the
/// CPU reference's definition, bit for bit.
#[inline]
pub fn weight(s: f32) -> f64 {
    ((1.0 - s as f64) / TEMPERATURE).exp()
}

/// The unshifted weight `e^{-s·(1/T)}` in `f32`, as `shaders/softmin.wgsl`
/// computes it (up to the device's `exp`).
#[inline]
pub fn device_weight(s: f32) -> f32 {
    (-s * INV_TEMPERATURE_F32).exp()
}

/// Running sums of a softmin: `weighted = Σ s_i w_i` and `weight = Σ w_i`
/// with the shifted weights `w_i` of [`weight`]. Sums of disjoint sets of
/// scores [`merge`](Softmin::merge); [`value`](Softmin::value) is the ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Softmin {
    pub weighted: f64,
    pub weight: f64,
}

impl Softmin {
    /// Add one score in [0, 1].
    #[inline]
    pub fn add(&mut self, s: f32) {
        self.add_weighted(s, weight(s));
    }

    /// The weight `w = e^{(1 − s)/T}` of a score `s` (see [`weight`]).
    #[inline]
    pub fn weight_of(s: f32) -> f64 {
        weight(s)
    }

    /// Add a score whose weight was computed elsewhere (the SIMD kernel
    /// keeps its own vectorised weights, within a few ulp of [`weight`]).
    #[inline]
    pub fn add_weighted(&mut self, s: f32, w: f64) {
        self.weighted += s as f64 * w;
        self.weight += w;
    }

    /// Sums made with the unshifted weights `e^{-s/T}` (the GPU's),
    /// rescaled by [`shift`] to the shifted weights.
    pub fn from_unshifted(weighted: f64, weight: f64) -> Self {
        let scale = shift();
        Softmin {
            weighted: weighted * scale,
            weight: weight * scale,
        }
    }

    /// Add other sums.
    pub fn merge(&mut self, o: &Softmin) {
        self.weighted += o.weighted;
        self.weight += o.weight;
    }

    /// `softmin_T` of the scores added, `None` without any.
    pub fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.weighted / self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula as written, unshifted, for a handful of scores.
    fn direct(s: &[f32]) -> f64 {
        let w: Vec<f64> = s
            .iter()
            .map(|&x| (-(x as f64) / TEMPERATURE).exp())
            .collect();
        s.iter().zip(&w).map(|(&x, w)| x as f64 * w).sum::<f64>() / w.iter().sum::<f64>()
    }

    #[test]
    fn shifted_sums_give_the_formula() {
        let s = [0.0f32, 0.25, 0.5, 0.9, 1.0, 0.01];
        let mut m = Softmin::default();
        s.iter().for_each(|&x| m.add(x));
        let v = m.value().unwrap_or(f64::NAN);
        assert!((v - direct(&s)).abs() < 1e-14, "{v} vs {}", direct(&s));
        // Hand-worked: two scores 0 and 1 give e^{-10} / (1 + e^{-10}).
        let mut m = Softmin::default();
        m.add(0.0);
        m.add(1.0);
        let want = (-10f64).exp() / (1.0 + (-10f64).exp());
        assert!((m.value().unwrap_or(f64::NAN) - want).abs() < 1e-15);
        assert_eq!(Softmin::default().value(), None);
    }

    #[test]
    fn merge_and_unshifted_sums_agree() {
        let s = [0.3f32, 0.7, 0.05, 0.95];
        let (mut a, mut b, mut all) = (Softmin::default(), Softmin::default(), Softmin::default());
        s[..2].iter().for_each(|&x| a.add(x));
        s[2..].iter().for_each(|&x| b.add(x));
        s.iter().for_each(|&x| all.add(x));
        a.merge(&b);
        assert!((a.value().unwrap_or(f64::NAN) - all.value().unwrap_or(0.0)).abs() < 1e-15);
        let (wd, w) = s.iter().fold((0.0, 0.0), |(wd, w), &x| {
            let d = f64::from(device_weight(x));
            (wd + x as f64 * d, w + d)
        });
        let g = Softmin::from_unshifted(wd, w);
        assert!((g.value().unwrap_or(f64::NAN) - all.value().unwrap_or(0.0)).abs() < 1e-6);
        assert!((g.weight / all.weight - 1.0).abs() < 1e-5);
    }
}
