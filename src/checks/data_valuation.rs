//! How much each item helps its neighbours' labels ([`DataValuation`]):
//! KNN-Shapley values (Jia et al. 2019, "Efficient task-specific data
//! valuation for nearest neighbor algorithms") on the run's one kNN graph,
//! as cleanlab's Datalab computes them
//! (`cleanlab/data_valuation.py::_knn_shapley_score`, cleanlab 2.9).

use super::{Check, Explained, Inputs, Need, Threshold};
use crate::config::Task;
use crate::index::KnnGraph;
use crate::schema::{CheckDetails, DataValuationSummary};

/// Every labelled item `α` is a test point over its own `k` nearest
/// neighbours `n_0, …, n_{k−1}` (nearest first; fewer when the graph has
/// fewer): with `m_j = 1` when `n_j` carries `α`'s label, Datalab's
/// recursion gives neighbour `n_j` the value `m_j − m_{k−1}` (every other
/// item 0). An item's value `v` is the sum over the test points divided by
/// `k·N` (`N` the labelled items); Datalab's score is `q = (v + 1)/2`,
/// below 0.5 (harmful on balance) flagged. The score here is `1 − q =
/// (1 − v)/2`, flagged above 0.5. An unlabelled neighbour never carries
/// the label. Off unless `--checks` names it, as in Datalab. Needs
/// classification and embeddings.
#[derive(Default)]
pub struct DataValuation {
    /// The mean value over the items given, from `scores` for `explain`.
    mean_value: std::sync::Mutex<Option<f64>>,
}

/// The items' values `v` by row, from the labels by row (`None`:
/// unlabelled).
pub fn values(graph: &KnnGraph, labels: &[Option<u32>]) -> Vec<f64> {
    let rows = labels.len();
    let mut v = vec![0.0f64; rows];
    let tests = labels.iter().flatten().count();
    if tests == 0 {
        return v;
    }
    let k = graph.k;
    for (a, la) in labels.iter().enumerate() {
        let Some(la) = la else { continue };
        if (a + 1) * k > graph.ids.len() {
            break;
        }
        let row: Vec<usize> = graph.neighbours(a).map(|(j, _)| j).collect();
        let same = |j: usize| f64::from(u8::from(labels.get(j).copied().flatten() == Some(*la)));
        let Some(&last) = row.last() else { continue };
        let m_last = same(last);
        for &j in &row {
            if let Some(slot) = v.get_mut(j) {
                *slot += same(j) - m_last;
            }
        }
    }
    let scale = (k * tests) as f64;
    v.iter_mut().for_each(|x| *x /= scale);
    v
}

impl Check for DataValuation {
    fn name(&self) -> &'static str {
        "data_valuation"
    }
    fn raises_priority(&self) -> bool {
        true
    }
    fn needs(&self) -> &'static [Need] {
        &[Need::Classification, Need::Embeddings]
    }
    fn by_default(&self) -> bool {
        false
    }
    fn score_text(&self, _: Task) -> &'static str {
        "(1 - v)/2, v the item's KNN-Shapley value over the kNN graph (cleanlab Datalab's data \
         valuation score q = (v + 1)/2, as 1 - q)"
    }
    fn threshold(&self, _: Task) -> Threshold {
        Threshold::above(0.5)
            .because("a negative KNN-Shapley value: the item misleads its neighbours' labels")
    }
    fn scores(&self, inputs: &Inputs<'_>) -> Vec<Option<f64>> {
        let Some(result) = inputs.neighbors else {
            return vec![None; inputs.items.len()];
        };
        let v = values(&result.graph, &labels(inputs));
        let given: Vec<f64> = inputs
            .items
            .iter()
            .filter_map(|it| v.get(it.index).copied())
            .collect();
        if let Ok(mut m) = self.mean_value.lock() {
            *m = Some(given.iter().sum::<f64>() / given.len().max(1) as f64);
        }
        inputs
            .items
            .iter()
            .map(|it| v.get(it.index).map(|v| (1.0 - v) / 2.0))
            .collect()
    }
    fn explain(&self, inputs: &Inputs<'_>, _flags: &[bool]) -> Explained {
        let Some(result) = inputs.neighbors else {
            return Explained::default();
        };
        let Some(mean_value) = self.mean_value.lock().ok().and_then(|m| *m) else {
            return Explained::default();
        };
        Explained {
            reasons: Vec::new(),
            summary: Some(CheckDetails::DataValuation(DataValuationSummary {
                valuation_k: result.graph.k,
                mean_value,
                score: (1.0 - mean_value) / 2.0,
            })),
            drift: None,
        }
    }
}

/// The annotated class by row (`None`: no labelled item there).
fn labels(inputs: &Inputs<'_>) -> Vec<Option<u32>> {
    let mut out = vec![None; inputs.manifest.len()];
    for it in inputs.items {
        if let (Some(slot), Some(f)) = (out.get_mut(it.index), &it.row) {
            *slot = Some(f.label);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_values() {
        // Three items, k = 2. Labels a, a, b.
        // Item 0: neighbours 1 (a, m=1), 2 (b, m=0): 1 gets 1 − 0 = 1, 2 gets 0.
        // Item 1: neighbours 0 (a, 1), 2 (b, 0): 0 gets 1, 2 gets 0.
        // Item 2: neighbours 0 (a, 0), 1 (a, 0): both 0.
        // v = (1, 1, 0) / (k·N = 6).
        let graph = KnnGraph {
            k: 2,
            ids: vec![1, 2, 0, 2, 0, 1],
            dist: vec![0.1, 0.2, 0.1, 0.3, 0.2, 0.3],
            method: "exact",
            loaded: 0,
        };
        let v = values(&graph, &[Some(0), Some(0), Some(1)]);
        assert_eq!(v, vec![1.0 / 6.0, 1.0 / 6.0, 0.0]);
        // Item 2 unlabelled: two test points, and it never matches.
        let v = values(&graph, &[Some(0), Some(0), None]);
        assert_eq!(v, vec![0.25, 0.25, 0.0]);
    }
}
