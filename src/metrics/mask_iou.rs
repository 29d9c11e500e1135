//! Mask IoU between two annotation maps of the same size: how much two
//! near-duplicate items' annotations agree (the segmentation conflict test of
//! [`crate::neighbors`]). Mirrored by `shaders/mask_iou.wgsl`.
//!
//! Contract: `a` and `b` hold `h × w` labels each (same length), every value
//! `< classes` or `== ignore`. A pixel counts when neither map ignores it.
//! The result is the `classes × classes` count matrix `M[a][b]`, from which
//! per-class `IoU_k = M[k][k] / (Σ_j M[k][j] + Σ_i M[i][k] − M[k][k])` and
//! the mean over classes present in either map ([`Confusion::mean_iou`]).

use crate::metrics::confusion::Confusion;

/// Label × label counts of two same-size maps, skipping pixels that either
/// map ignores (and, defensively, labels `≥ classes`).
pub fn pair_confusion(a: &[u16], b: &[u16], classes: usize, ignore: u16) -> Confusion {
    let mut conf = Confusion::new(classes);
    for (&x, &y) in a.iter().zip(b) {
        if x != ignore && y != ignore && (x as usize) < classes && (y as usize) < classes {
            conf.add(x as usize, y as usize);
        }
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_pair() {
        // a = 0 0 1 1 / 0 1 1 255,  b = 0 1 1 1 / 0 0 1 1  (ignore = 255)
        // Counted pixels: 7 (the last is ignored in a).
        // class 1: a has {2,3,5,6}, b has {1,2,3,6}; both: {2,3,6} → 3/5.
        // class 0: a has {0,1,4}, b has {0,4,5}; both: {0,4} → 2/4.
        let a = [0, 0, 1, 1, 0, 1, 1, 255];
        let b = [0, 1, 1, 1, 0, 0, 1, 1];
        let c = pair_confusion(&a, &b, 2, 255);
        assert_eq!(c.rows(), vec![vec![2, 1], vec![1, 3]]);
        assert_eq!(c.iou(1), Some(0.6));
        assert_eq!(c.iou(0), Some(0.5));
        assert_eq!(c.mean_iou(), Some(0.55));
    }
}
