//! Top-K ranking metrics on plain slices — the reference that the tensor evaluator is tested
//! against, and the arithmetic it shares.
//!
//! Conventions (the standard ones; InvRL's code differs and is wrong on two counts):
//! - NDCG@K divides DCG by the ideal DCG of `min(|relevant|, K)` hits, not of the number of hits.
//! - MAP@K = (1 / min(|relevant|, K)) · Σ_{k ≤ K} Precision@k · rel_k.
//! - Items the user has already seen are excluded from the ranking, never merely down-weighted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Metric names in report order.
pub const METRIC_NAMES: [&str; 5] = ["recall", "precision", "ndcg", "hit", "map"];

/// The five metrics of one user at one cut-off K, in [`METRIC_NAMES`] order.
pub fn user_metrics(hits: &[bool], n_relevant: usize, k: usize) -> [f64; 5] {
    if n_relevant == 0 || k == 0 {
        return [0.0; 5];
    }
    let cut = &hits[..hits.len().min(k)];
    let mut n_hits = 0usize;
    let mut dcg = 0.0;
    let mut ap = 0.0;
    for (rank, &h) in cut.iter().enumerate() {
        if h {
            n_hits += 1;
            dcg += 1.0 / ((rank + 2) as f64).log2();
            ap += n_hits as f64 / (rank + 1) as f64;
        }
    }
    let ideal = n_relevant.min(k);
    let idcg: f64 = (0..ideal).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    [
        n_hits as f64 / n_relevant as f64,
        n_hits as f64 / k as f64,
        dcg / idcg,
        if n_hits > 0 { 1.0 } else { 0.0 },
        ap / ideal as f64,
    ]
}

/// Ranks all items by descending score (ties: lower item id first), skipping `excluded`
/// (sorted), and returns the first `k` item ids.
pub fn rank_top_k(scores: &[f32], excluded: &[u32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).filter(|i| excluded.binary_search(i).is_err()).collect();
    order.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Marks which ranked items are relevant (`relevant` sorted).
pub fn hit_vector(ranked: &[u32], relevant: &[u32]) -> Vec<bool> {
    ranked.iter().map(|i| relevant.binary_search(i).is_ok()).collect()
}

/// ROC-AUC of `scores` for telling the `positive` entries from the others: the probability that
/// a random positive scores above a random negative, ties counting half (e.g. how well a learned
/// mask ranks known invariant dimensions). NaN without a positive or without a negative.
///
/// ```
/// use painvrl_core::metrics::roc_auc;
/// assert_eq!(roc_auc(&[0.9, 0.1, 0.8], &[true, false, false]), 1.0);
/// ```
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (a, &pa) in scores.iter().zip(positive) {
        for (b, &pb) in scores.iter().zip(positive) {
            if pa && !pb {
                pairs += 1.0;
                wins += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

/// Sums of per-user metrics for several cut-offs; averaged into a [`SplitMetrics`].
#[derive(Clone, Debug)]
pub struct MetricAccumulator {
    ks: Vec<usize>,
    sums: Vec<[f64; 5]>,
    users: usize,
    skipped: usize,
}

impl MetricAccumulator {
    /// An empty accumulator for the cut-offs `ks`.
    pub fn new(ks: &[usize]) -> Self {
        MetricAccumulator { ks: ks.to_vec(), sums: vec![[0.0; 5]; ks.len()], users: 0, skipped: 0 }
    }

    /// Adds one user's ranked hit vector (length ≥ max K, or the catalogue size if smaller).
    pub fn add_user(&mut self, hits: &[bool], n_relevant: usize) {
        for (j, &k) in self.ks.iter().enumerate() {
            let m = user_metrics(hits, n_relevant, k);
            for (s, v) in self.sums[j].iter_mut().zip(m) {
                *s += v;
            }
        }
        self.users += 1;
    }

    /// Counts a user that had relevant items but could not be evaluated.
    pub fn skip_user(&mut self) {
        self.skipped += 1;
    }

    /// Merges another accumulator with the same cut-offs.
    pub fn merge(&mut self, other: &MetricAccumulator) {
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.users += other.users;
        self.skipped += other.skipped;
    }

    /// Averages over evaluated users.
    pub fn finish(&self) -> SplitMetrics {
        let mut values = BTreeMap::new();
        for (j, &k) in self.ks.iter().enumerate() {
            for (name, s) in METRIC_NAMES.iter().zip(self.sums[j]) {
                let v = if self.users == 0 { 0.0 } else { s / self.users as f64 };
                values.insert(format!("{name}@{k}"), v);
            }
        }
        SplitMetrics { users_evaluated: self.users, users_skipped: self.skipped, values }
    }
}

/// Averaged metrics of one split: keys like `recall@20`, `ndcg@10`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// Users with at least one relevant item that were ranked.
    pub users_evaluated: usize,
    /// Users with relevant items that were left out (no training history, or every relevant
    /// item already seen).
    pub users_skipped: usize,
    /// Metric values by `name@K`.
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

impl SplitMetrics {
    /// The value of `name@k`, e.g. `get("recall", 20)`.
    pub fn get(&self, name: &str, k: usize) -> Option<f64> {
        self.values.get(&format!("{name}@{k}")).copied()
    }
}

/// Normalised mutual information between two labelings (arithmetic-mean normalisation).
pub fn nmi(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len() as f64;
    let ka = a.iter().max().map_or(0, |&m| m as usize + 1);
    let kb = b.iter().max().map_or(0, |&m| m as usize + 1);
    let mut joint = vec![vec![0f64; kb]; ka];
    for (&x, &y) in a.iter().zip(b) {
        joint[x as usize][y as usize] += 1.0;
    }
    let pa: Vec<f64> = joint.iter().map(|r| r.iter().sum::<f64>() / n).collect();
    let pb: Vec<f64> = (0..kb).map(|j| joint.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let h = |p: &[f64]| -p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>();
    let mut mi = 0.0;
    for i in 0..ka {
        for j in 0..kb {
            let pij = joint[i][j] / n;
            if pij > 0.0 {
                mi += pij * (pij / (pa[i] * pb[j])).ln();
            }
        }
    }
    let denom = (h(&pa) + h(&pb)) / 2.0;
    if denom <= 0.0 {
        0.0
    } else {
        mi / denom
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nmi_golden_values() {
        assert!((super::nmi(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
        // independent labelings have zero mutual information
        assert!(super::nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]).abs() < 1e-12);
        // by hand: joint p(0,0) = ½, p(1,0) = p(1,1) = ¼; marginals (½, ½) and (¾, ¼)
        let (a, b) = ([0u32, 0, 1, 1], [0u32, 0, 0, 1]);
        let mi = 0.5 * (0.5f64 / (0.5 * 0.75)).ln()
            + 0.25 * (0.25f64 / (0.5 * 0.75)).ln()
            + 0.25 * (0.25f64 / (0.5 * 0.25)).ln();
        let (ha, hb) = (2f64.ln(), -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln()));
        assert!((super::nmi(&a, &b) - mi / ((ha + hb) / 2.0)).abs() < 1e-12);
    }

    use super::*;
    use approx::assert_abs_diff_eq;
    use proptest::prelude::*;

    #[test]
    fn roc_auc_golden_values() {
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]), 1.0);
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), 0.5);
        assert!(roc_auc(&[0.5, 0.4], &[true, true]).is_nan());
    }

    #[test]
    fn golden_single_user() {
        // ranked hits: [1, 0, 1, 0], |relevant| = 3, K = 4
        // recall = 2/3, precision = 2/4
        // DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
        // IDCG over min(3, 4) = 3 hits = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.6309298 + 0.5 = 2.1309298
        // NDCG = 1.5 / 2.1309298 = 0.7039180
        // AP = (1/1 + 2/3) / min(3, 4) = 1.6666667 / 3 = 0.5555556
        let m = user_metrics(&[true, false, true, false], 3, 4);
        assert_abs_diff_eq!(m[0], 2.0 / 3.0, epsilon = 1e-9);
        assert_abs_diff_eq!(m[1], 0.5, epsilon = 1e-9);
        assert_abs_diff_eq!(m[2], 0.703_918_0, epsilon = 1e-6);
        assert_abs_diff_eq!(m[3], 1.0, epsilon = 1e-9);
        assert_abs_diff_eq!(m[4], 0.555_555_6, epsilon = 1e-6);
    }

    #[test]
    fn golden_more_relevant_than_k() {
        // 5 relevant, K = 2, ranked hits [0, 1]
        // recall = 1/5 = 0.2; precision = 1/2
        // DCG = 1/log2(3) = 0.6309298; IDCG over min(5,2)=2: 1 + 0.6309298 = 1.6309298
        // NDCG = 0.3868528; AP = (1/2) / 2 = 0.25
        let m = user_metrics(&[false, true, true], 5, 2);
        assert_abs_diff_eq!(m[0], 0.2, epsilon = 1e-9);
        assert_abs_diff_eq!(m[1], 0.5, epsilon = 1e-9);
        assert_abs_diff_eq!(m[2], 0.386_852_8, epsilon = 1e-6);
        assert_abs_diff_eq!(m[4], 0.25, epsilon = 1e-9);
    }

    #[test]
    fn seen_items_never_rank() {
        // item 0 has the top score but is excluded; ties (items 2 and 3 at 0.5) break by id
        let scores = [9.0, 0.1, 0.5, 0.5, 0.7];
        assert_eq!(rank_top_k(&scores, &[0], 3), vec![4, 2, 3]);
        // relevant {3}: hit at rank 3 → recall@3 = 1, NDCG@3 = (1/log2 4) / 1 = 0.5
        let hits = hit_vector(&rank_top_k(&scores, &[0], 3), &[3]);
        let m = user_metrics(&hits, 1, 3);
        assert_abs_diff_eq!(m[2], 0.5, epsilon = 1e-12);
    }

    #[test]
    fn accumulator_averages_and_counts() {
        let mut acc = MetricAccumulator::new(&[1, 2]);
        acc.add_user(&[true, false], 1);
        acc.add_user(&[false, false], 2);
        acc.skip_user();
        let r = acc.finish();
        assert_eq!((r.users_evaluated, r.users_skipped), (2, 1));
        assert_abs_diff_eq!(r.get("recall", 1).unwrap(), 0.5, epsilon = 1e-12);
        assert_abs_diff_eq!(r.get("hit", 2).unwrap(), 0.5, epsilon = 1e-12);
    }

    proptest! {
        #[test]
        fn metrics_bounded_and_recall_monotone(hits in proptest::collection::vec(any::<bool>(), 1..60), extra in 0usize..20) {
            let n_rel = hits.iter().filter(|&&h| h).count() + extra;
            prop_assume!(n_rel > 0);
            let mut last_recall = 0.0;
            for k in 1..=hits.len() {
                let m = user_metrics(&hits, n_rel, k);
                for v in m { prop_assert!((0.0..=1.0 + 1e-12).contains(&v)); }
                prop_assert!(m[0] + 1e-12 >= last_recall);
                last_recall = m[0];
            }
        }

        #[test]
        fn perfect_ranking_scores_one(n_rel in 1usize..30, k in 1usize..30) {
            let hits: Vec<bool> = (0..k.max(n_rel)).map(|r| r < n_rel).collect();
            let m = user_metrics(&hits, n_rel, k);
            prop_assert!((m[2] - 1.0).abs() < 1e-12);
            prop_assert!((m[3] - 1.0).abs() < 1e-12);
            prop_assert!((m[4] - 1.0).abs() < 1e-12);
            if n_rel <= k { prop_assert!((m[0] - 1.0).abs() < 1e-12); }
        }
    }
}
