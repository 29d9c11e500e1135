//! Confusion counts, and the per-class mask IoU and Dice that follow from them.
//!
//! For class `c`, `G_c = {label == c}` and `P_c = {ŷ == c}`, with pixels whose
//! label is `ignore_index` removed from both. Then
//! `IoU_c = |G_c ∩ P_c| / |G_c ∪ P_c|` and
//! `Dice_c = 2|G_c ∩ P_c| / (|G_c| + |P_c|)`.
//! A class absent from both sides is undefined and left out of an item's mean.
//! Dataset-level values pool the counts (sums of intersections over sums of
//! unions), which is what summing [`Confusion`] tables gives.

/// A `C × C` table of counts: row = annotated label, column = prediction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Confusion {
    classes: usize,
    counts: Vec<u64>,
}

impl Confusion {
    /// A table from row-major `label × pred` counts (`classes²` of them).
    ///
    /// # Panics
    /// If `counts.len() != classes²`.
    pub fn from_counts(classes: usize, counts: Vec<u64>) -> Self {
        assert_eq!(counts.len(), classes * classes, "counts is not classes²");
        Confusion { classes, counts }
    }

    /// An all-zero table for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Check a table read from a file against a run of `classes` classes:
    /// its class count, and `classes²` counts (a shortened or padded
    /// array is refused, not read as far as it goes).
    pub fn check(&self, classes: usize) -> Result<(), String> {
        if self.classes != classes {
            return Err(format!(
                "a table of {} classes, but the run has {classes}",
                self.classes
            ));
        }
        let want = classes
            .checked_mul(classes)
            .ok_or_else(|| format!("{classes} classes: too many"))?;
        if self.counts.len() != want {
            return Err(format!(
                "{} counts, expected {want} ({classes} classes squared)",
                self.counts.len()
            ));
        }
        Ok(())
    }

    /// [`Confusion::add_count`], saturating instead of overflowing (for
    /// counts read from a file, whose totals are checked beforehand).
    pub fn add_count_saturating(&mut self, label: usize, pred: usize, n: u64) {
        if label < self.classes
            && pred < self.classes
            && let Some(x) = self.counts.get_mut(label * self.classes + pred)
        {
            *x = x.saturating_add(n);
        }
    }

    /// Count one sample (`label`, `pred` both `< classes`).
    #[inline]
    pub fn add(&mut self, label: usize, pred: usize) {
        self.counts[label * self.classes + pred] += 1;
    }

    /// Add another table of the same size.
    pub fn merge(&mut self, other: &Confusion) {
        debug_assert_eq!(self.classes, other.classes);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Count `n` samples at (`label`, `pred`).
    pub fn add_count(&mut self, label: usize, pred: usize, n: u64) {
        self.counts[label * self.classes + pred] += n;
    }

    /// The non-zero cells, `(label, pred, count)` in row-major order.
    pub fn nonzero(&self) -> Vec<(u32, u32, u64)> {
        let c = self.classes.max(1);
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| ((i / c) as u32, (i % c) as u32, n))
            .collect()
    }

    /// The count of samples labelled `label` and predicted `pred`.
    pub fn get(&self, label: usize, pred: usize) -> u64 {
        self.counts[label * self.classes + pred]
    }

    /// The table as rows (label) of columns (prediction).
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    /// `|G_c ∩ P_c|`.
    pub fn intersection(&self, c: usize) -> u64 {
        self.get(c, c)
    }

    /// `|G_c|`, the class's support.
    pub fn label_count(&self, c: usize) -> u64 {
        (0..self.classes).map(|k| self.get(c, k)).sum()
    }

    /// `|P_c|`.
    pub fn pred_count(&self, c: usize) -> u64 {
        (0..self.classes).map(|k| self.get(k, c)).sum()
    }

    /// Class `c`'s largest confusion: the largest off-diagonal cell in row
    /// `c` (samples annotated `c`, predicted another class) or column `c`
    /// (annotated another class, predicted `c`), as `(annotated,
    /// predicted, count)`; ties go to the row, then to the lower other
    /// class. `None` when every such cell is 0 (or `c` is not a class).
    pub fn largest_confusion(&self, c: usize) -> Option<(usize, usize, u64)> {
        if c >= self.classes {
            return None;
        }
        let row = (0..self.classes).map(|k| (c, k));
        let col = (0..self.classes).map(|k| (k, c));
        let mut best: Option<(usize, usize, u64)> = None;
        for (l, p) in row.chain(col).filter(|(l, p)| l != p) {
            let n = self.get(l, p);
            if n > 0 && best.is_none_or(|b| n > b.2) {
                best = Some((l, p, n));
            }
        }
        best
    }

    /// Total number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Number of samples on the diagonal.
    pub fn correct(&self) -> u64 {
        (0..self.classes).map(|c| self.get(c, c)).sum()
    }

    /// `IoU_c`, or `None` when the class is absent from both sides.
    pub fn iou(&self, c: usize) -> Option<f64> {
        let (g, p, i) = (
            self.label_count(c),
            self.pred_count(c),
            self.intersection(c),
        );
        let union = g + p - i;
        (union > 0).then(|| i as f64 / union as f64)
    }

    /// `Dice_c`, or `None` when the class is absent from both sides.
    pub fn dice(&self, c: usize) -> Option<f64> {
        let (g, p, i) = (
            self.label_count(c),
            self.pred_count(c),
            self.intersection(c),
        );
        (g + p > 0).then(|| 2.0 * i as f64 / (g + p) as f64)
    }

    /// Mean of the defined per-class IoUs.
    pub fn mean_iou(&self) -> Option<f64> {
        mean_defined((0..self.classes).map(|c| self.iou(c)))
    }

    /// Mean of the defined per-class Dice scores.
    pub fn mean_dice(&self) -> Option<f64> {
        mean_defined((0..self.classes).map(|c| self.dice(c)))
    }
}

/// The mean of the `Some` values, or `None` if there are none.
pub fn mean_defined(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The median of the values (mean of the middle two for an even count).
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_iou_and_dice() {
        // labels: 0 0 1 1 1 ; preds: 0 1 1 1 2  (3 classes)
        let mut t = Confusion::new(4);
        for (l, p) in [(0, 0), (0, 1), (1, 1), (1, 1), (1, 2)] {
            t.add(l, p);
        }
        // class 0: I=1, G=2, P=1 -> IoU 1/2, Dice 2/3
        assert_eq!(t.iou(0), Some(0.5));
        assert!((t.dice(0).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // class 1: I=2, G=3, P=3 -> IoU 2/4, Dice 4/6
        assert_eq!(t.iou(1), Some(0.5));
        // class 2: I=0, G=0, P=1 -> IoU 0, Dice 0
        assert_eq!(t.iou(2), Some(0.0));
        assert_eq!(t.dice(2), Some(0.0));
        // class 3 absent from both: undefined, left out of the mean.
        assert_eq!(t.iou(3), None);
        assert!((t.mean_iou().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(t.correct(), 3);
        assert_eq!(t.total(), 5);
    }

    #[test]
    fn largest_confusion_looks_in_the_class_row_and_column() {
        // Rows annotated, columns predicted (3 classes):
        //   [5, 2, 0]
        //   [7, 4, 2]
        //   [0, 2, 9]
        let t = Confusion::from_counts(3, vec![5, 2, 0, 7, 4, 2, 0, 2, 9]);
        // Class 0: row (0→1: 2), column (1→0: 7): annotated 1, seen as 0.
        assert_eq!(t.largest_confusion(0), Some((1, 0, 7)));
        // Class 1: row 1→0 (7) beats column 0→1 (2).
        assert_eq!(t.largest_confusion(1), Some((1, 0, 7)));
        // Class 2: row 2→1 (2) ties column 1→2 (2): the row wins.
        assert_eq!(t.largest_confusion(2), Some((2, 1, 2)));
        // A class never annotated: only its column; no confusion at all.
        let t = Confusion::from_counts(2, vec![3, 4, 0, 0]);
        assert_eq!(t.largest_confusion(1), Some((0, 1, 4)));
        assert_eq!(
            Confusion::from_counts(2, vec![3, 0, 0, 1]).largest_confusion(0),
            None
        );
        assert_eq!(t.largest_confusion(2), None);
    }
}
