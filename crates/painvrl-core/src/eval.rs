//! Full-ranking evaluation on any device: one matrix product, −∞ on seen items and one `topk`
//! per block of users; the metric arithmetic is [`crate::metrics`].

use crate::dataset::UserItems;
use crate::metrics::{hit_vector, MetricAccumulator, SplitMetrics};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Options of the full-ranking evaluator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Cut-offs K; the default is 10, 20 and 50.
    pub ks: Vec<usize>,
    /// Users per block; `None` derives it from `memory_budget_mb`.
    pub block_users: Option<usize>,
    /// Memory allowed for one block's score matrix and its temporaries, in MiB.
    pub memory_budget_mb: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { ks: vec![10, 20, 50], block_users: None, memory_budget_mb: 512 }
    }
}

impl EvalConfig {
    /// Checks the cut-offs and block size against a catalogue of `n_items`.
    pub fn validate(&self, n_items: usize) -> Result<()> {
        if self.ks.is_empty() || self.ks.contains(&0) {
            return Err(Error::config("eval.ks", "give at least one cut-off, each ≥ 1"));
        }
        if let Some(&k) = self.ks.iter().find(|&&k| k > n_items) {
            return Err(Error::config("eval.ks", format!("K = {k} exceeds the catalogue of {n_items} items")));
        }
        if self.block_users == Some(0) {
            return Err(Error::config("eval.block_users", "must be ≥ 1"));
        }
        if self.memory_budget_mb == 0 {
            return Err(Error::config("eval.memory_budget_mb", "must be ≥ 1"));
        }
        Ok(())
    }

    /// Users per block for a catalogue of `n_items`: the override, or as many score rows (f32
    /// plus a same-sized temporary) as fit in the budget.
    pub fn block_size(&self, n_items: usize, n_users: usize) -> usize {
        let auto = (self.memory_budget_mb << 20) / (n_items.max(1) * 8);
        self.block_users.unwrap_or(auto).clamp(1, n_users.max(1))
    }
}

/// Anything that scores a block of users against the whole catalogue.
pub trait BlockScorer {
    /// Scores `[users.len(), n_items]` (float) for the int64 user ids `users`, on the scorer's device.
    fn score_block(&self, users: &Tensor) -> Tensor;
    /// Catalogue size.
    fn n_items(&self) -> usize;
    /// Device the scores live on.
    fn device(&self) -> Device;
}

/// Dot-product scoring from user and item embedding matrices: `scores = U[users] · Iᵀ`.
pub struct EmbeddingScorer {
    /// `[n_users, d]` user embeddings.
    pub users: Tensor,
    /// `[n_items, d]` item embeddings.
    pub items: Tensor,
}

impl BlockScorer for EmbeddingScorer {
    fn score_block(&self, users: &Tensor) -> Tensor {
        self.users.index_select(0, users).matmul(&self.items.tr())
    }
    fn n_items(&self) -> usize {
        self.items.size()[0] as usize
    }
    fn device(&self) -> Device {
        self.items.device()
    }
}

/// Ranks the whole catalogue for every user with relevant items and averages the metrics.
///
/// ```
/// use painvrl_core::{evaluate, EmbeddingScorer, EvalConfig, Interactions, UserItems};
/// use tch::Tensor;
/// // one user, three items scored 3, 2, 1; item 0 was seen in training, item 1 is relevant
/// let scorer = EmbeddingScorer {
///     users: Tensor::from_slice(&[1.0f32]).reshape([1, 1]),
///     items: Tensor::from_slice(&[3.0f32, 2.0, 1.0]).reshape([3, 1]),
/// };
/// let train = UserItems::build(1, &[&Interactions::from_pairs([(0, 0)])]);
/// let test = UserItems::build(1, &[&Interactions::from_pairs([(0, 1)])]);
/// let cfg = EvalConfig { ks: vec![1], ..Default::default() };
/// let m = evaluate(&scorer, &test, &[&train], &cfg)?;
/// assert_eq!(m.get("recall", 1), Some(1.0)); // the seen item 0 is excluded
/// # Ok::<(), painvrl_core::Error>(())
/// ```
///
/// `relevant` holds the split's items per user; `seen` the splits whose items are excluded
/// (train for validation; train + val for test; train + val + test for OOD test). A user with
/// no training history (`seen[0]` empty) or whose relevant items were all seen is skipped and
/// counted. Memory stays O(block × items).
pub fn evaluate(
    scorer: &dyn BlockScorer,
    relevant: &UserItems,
    seen: &[&UserItems],
    config: &EvalConfig,
) -> Result<SplitMetrics> {
    Ok(evaluate_with_list_popularity(scorer, relevant, seen, config, None)?.0)
}

/// How popular the recommended items are: the mean over the users [`evaluate`] ranks (the same
/// users, the same exclusions) of the mean ln(1 + `popularity[i]`) of the items i in their top
/// `k`. `popularity` holds one count per item, usually the training split's
/// ([`crate::Interactions::item_degrees`]); against a test drawn against popularity, the lower
/// this is, the more such a test rewards the lists. `None` when no user is ranked.
///
/// ```
/// use painvrl_core::{eval::list_popularity, EmbeddingScorer, EvalConfig, Interactions, UserItems};
/// use tch::Tensor;
/// // one user, items scored 3, 2, 1; item 0 was seen; the top 1 is item 1, clicked 3 times
/// let scorer = EmbeddingScorer {
///     users: Tensor::from_slice(&[1.0f32]).reshape([1, 1]),
///     items: Tensor::from_slice(&[3.0f32, 2.0, 1.0]).reshape([3, 1]),
/// };
/// let train = UserItems::build(1, &[&Interactions::from_pairs([(0, 0)])]);
/// let test = UserItems::build(1, &[&Interactions::from_pairs([(0, 2)])]);
/// let p = list_popularity(&scorer, &test, &[&train], &[7, 3, 0], 1, &EvalConfig::default())?;
/// assert_eq!(p, Some(4f64.ln()));
/// # Ok::<(), painvrl_core::Error>(())
/// ```
pub fn list_popularity(
    scorer: &dyn BlockScorer,
    relevant: &UserItems,
    seen: &[&UserItems],
    popularity: &[u32],
    k: usize,
    config: &EvalConfig,
) -> Result<Option<f64>> {
    let at_k = EvalConfig { ks: vec![k], ..config.clone() };
    Ok(evaluate_with_list_popularity(scorer, relevant, seen, &at_k, Some((popularity, k)))?.1)
}

/// [`evaluate`] and, given `(popularity, k)`, [`list_popularity`] from the same ranking: one
/// pass over the catalogue for both.
pub fn evaluate_with_list_popularity(
    scorer: &dyn BlockScorer,
    relevant: &UserItems,
    seen: &[&UserItems],
    config: &EvalConfig,
    popularity: Option<(&[u32], usize)>,
) -> Result<(SplitMetrics, Option<f64>)> {
    let n_items = scorer.n_items();
    config.validate(n_items)?;
    let mut depth = *config.ks.iter().max().expect("validated non-empty");
    if let Some((counts, k)) = popularity {
        EvalConfig { ks: vec![k], ..config.clone() }.validate(n_items)?;
        if counts.len() != n_items {
            return Err(Error::config(
                "popularity",
                format!("{} counts for a catalogue of {n_items} items; give one per item", counts.len()),
            ));
        }
        depth = depth.max(k);
    }
    let mut acc = MetricAccumulator::new(&config.ks);
    let (targets, skipped) = ranking_targets(relevant, seen);
    (0..skipped).for_each(|_| acc.skip_user());
    let (mut popularity_sum, mut listed_users) = (0.0, 0usize);
    for_each_top_k(scorer, &targets, seen, depth, config, |(_, rel), ranked| {
        acc.add_user(&hit_vector(ranked, rel), rel.len());
        if let Some((counts, k)) = popularity {
            let top = &ranked[..ranked.len().min(k)];
            if !top.is_empty() {
                let logs: f64 = top.iter().map(|&i| f64::from(counts[i as usize]).ln_1p()).sum();
                popularity_sum += logs / top.len() as f64;
                listed_users += 1;
            }
        }
    })?;
    Ok((acc.finish(), (listed_users > 0).then(|| popularity_sum / listed_users as f64)))
}

/// The users of `relevant` to rank, each with its relevant items minus anything already seen,
/// and how many users were skipped: those with no training history (`seen[0]` empty) or whose
/// relevant items were all seen.
fn ranking_targets(relevant: &UserItems, seen: &[&UserItems]) -> (Vec<(usize, Vec<u32>)>, usize) {
    let mut targets = Vec::new();
    let mut skipped = 0;
    for u in 0..relevant.n_users() {
        let rel = relevant.items_of(u);
        if rel.is_empty() {
            continue;
        }
        let known = seen.first().is_none_or(|s| u < s.n_users() && !s.items_of(u).is_empty());
        let fresh: Vec<u32> =
            rel.iter().copied().filter(|&i| !seen.iter().any(|s| u < s.n_users() && s.contains(u, i))).collect();
        if !known || fresh.is_empty() {
            skipped += 1;
        } else {
            targets.push((u, fresh));
        }
    }
    (targets, skipped)
}

/// Ranks the catalogue for every target, one block of users at a time (−∞ on seen items, one
/// `topk`), and calls `visit` with the target and its unseen items among the top `k`, best
/// first. Memory stays O(block × items).
fn for_each_top_k(
    scorer: &dyn BlockScorer,
    targets: &[(usize, Vec<u32>)],
    seen: &[&UserItems],
    k: usize,
    config: &EvalConfig,
    mut visit: impl FnMut(&(usize, Vec<u32>), &[u32]),
) -> Result<()> {
    let n_items = scorer.n_items();
    let device = scorer.device();
    let block = config.block_size(n_items, targets.len());
    tch::no_grad(|| -> Result<()> {
        for chunk in targets.chunks(block) {
            let ids: Vec<i64> = chunk.iter().map(|(u, _)| *u as i64).collect();
            let users = Tensor::from_slice(&ids).to_device(device);
            // contiguous: a scorer may return an expanded view, whose rows share storage
            let mut scores = scorer.score_block(&users).to_kind(Kind::Float).contiguous();
            let (mut rows, mut cols) = (Vec::new(), Vec::new());
            for (r, (u, _)) in chunk.iter().enumerate() {
                for s in seen {
                    if *u < s.n_users() {
                        for &i in s.items_of(*u) {
                            rows.push(r as i64);
                            cols.push(i as i64);
                        }
                    }
                }
            }
            if !rows.is_empty() {
                let idx = [
                    Some(Tensor::from_slice(&rows).to_device(device)),
                    Some(Tensor::from_slice(&cols).to_device(device)),
                ];
                let neg_inf = Tensor::from(f32::NEG_INFINITY).to_device(device);
                scores = scores.f_index_put_(&idx, &neg_inf, false)?;
            }
            let (_, top) = scores.f_topk(k.min(n_items) as i64, 1, true, true)?;
            let top: Vec<i64> = Vec::<i64>::try_from(top.to_device(Device::Cpu).reshape([-1]))?;
            let width = top.len() / chunk.len();
            for (r, target) in chunk.iter().enumerate() {
                // a seen item only reaches the top-K when fewer unseen items than K exist; drop it
                let ranked: Vec<u32> = top[r * width..(r + 1) * width]
                    .iter()
                    .map(|&i| i as u32)
                    .filter(|&i| !seen.iter().any(|s| target.0 < s.n_users() && s.contains(target.0, i)))
                    .collect();
                visit(target, &ranked);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Interactions;
    use crate::metrics::rank_top_k;
    use approx::assert_abs_diff_eq;
    use proptest::prelude::*;

    fn scorer(u: &[f32], i: &[f32], d: i64) -> EmbeddingScorer {
        let nu = u.len() as i64 / d;
        let ni = i.len() as i64 / d;
        EmbeddingScorer { users: Tensor::from_slice(u).reshape([nu, d]), items: Tensor::from_slice(i).reshape([ni, d]) }
    }

    #[test]
    fn golden_two_users_with_seen_item_on_top() {
        // 1-d embeddings: user 0 = 1, user 1 = -1; items 0..5 = [5, 4, 3, 2, 1]
        // user 0 scores [5,4,3,2,1]; seen {0}; relevant {2} → ranking 1,2,3,4 → hit at rank 2
        //   recall@2 = 1, ndcg@2 = (1/log2 3) / 1 = 0.6309298
        // user 1 scores [-5..-1]; seen {4}; relevant {0, 3} → ranking 3,2,1,0 → hit at rank 1
        //   recall@2 = 1/2, ndcg@2 = 1 / (1 + 1/log2 3) = 1 / 1.6309298 = 0.6131472
        // means: recall@2 = 0.75, ndcg@2 = 0.6220385
        let s = scorer(&[1.0, -1.0], &[5.0, 4.0, 3.0, 2.0, 1.0], 1);
        let train = UserItems::build(2, &[&Interactions::from_pairs([(0, 0), (1, 4)])]);
        let test = UserItems::build(2, &[&Interactions::from_pairs([(0, 2), (1, 0), (1, 3)])]);
        let cfg = EvalConfig { ks: vec![2], block_users: Some(1), ..Default::default() };
        let m = evaluate(&s, &test, &[&train], &cfg).unwrap();
        assert_eq!(m.users_evaluated, 2);
        assert_abs_diff_eq!(m.get("recall", 2).unwrap(), 0.75, epsilon = 1e-9);
        assert_abs_diff_eq!(m.get("ndcg", 2).unwrap(), 0.622_038_5, epsilon = 1e-6);
    }

    #[test]
    fn users_without_history_or_fresh_items_are_skipped() {
        let s = scorer(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 1);
        let train = UserItems::build(3, &[&Interactions::from_pairs([(0, 0), (1, 1)])]);
        // user 1's only test item is already in train; user 2 has no training history
        let test = UserItems::build(3, &[&Interactions::from_pairs([(0, 2), (1, 1), (2, 0)])]);
        let cfg = EvalConfig { ks: vec![1], ..Default::default() };
        let m = evaluate(&s, &test, &[&train], &cfg).unwrap();
        assert_eq!((m.users_evaluated, m.users_skipped), (1, 2));
        assert_abs_diff_eq!(m.get("recall", 1).unwrap(), 1.0, epsilon = 1e-12);
    }

    #[test]
    fn golden_list_popularity_of_two_users() {
        // the users and rankings of golden_two_users_with_seen_item_on_top, popularity
        // [9, 3, 0, 1, 7]: user 0's top 2 is items 1, 2 → (ln 4 + ln 1) / 2 = 0.6931472;
        // user 1's is items 3, 2 → (ln 2 + ln 1) / 2 = 0.3465736; mean 0.5198604
        let s = scorer(&[1.0, -1.0], &[5.0, 4.0, 3.0, 2.0, 1.0], 1);
        let train = UserItems::build(2, &[&Interactions::from_pairs([(0, 0), (1, 4)])]);
        let test = UserItems::build(2, &[&Interactions::from_pairs([(0, 2), (1, 0), (1, 3)])]);
        let cfg = EvalConfig { block_users: Some(1), ..Default::default() };
        let p = list_popularity(&s, &test, &[&train], &[9, 3, 0, 1, 7], 2, &cfg).unwrap();
        assert_abs_diff_eq!(p.unwrap(), 0.519_860_4, epsilon = 1e-6);
        // no user to rank: no value
        let none = UserItems::build(2, &[&Interactions::from_pairs([(0, 0)])]);
        assert_eq!(list_popularity(&s, &none, &[&train], &[9, 3, 0, 1, 7], 2, &cfg).unwrap(), None);
    }

    #[test]
    fn list_popularity_refuses_a_wrong_count_or_cutoff() {
        let s = scorer(&[1.0], &[1.0, 2.0, 3.0], 1);
        let t = UserItems::build(1, &[&Interactions::from_pairs([(0, 1)])]);
        let cfg = EvalConfig::default();
        let e = list_popularity(&s, &t, &[], &[1, 2], 1, &cfg).unwrap_err().to_string();
        assert!(e.contains("popularity") && e.contains("2 counts") && e.contains("3 items"), "{e}");
        for k in [0, 4] {
            assert!(list_popularity(&s, &t, &[], &[1, 2, 3], k, &cfg).unwrap_err().to_string().contains("eval.ks"));
        }
    }

    #[test]
    fn nonsense_cutoffs_are_rejected() {
        let s = scorer(&[1.0], &[1.0, 2.0], 1);
        let t = UserItems::build(1, &[&Interactions::from_pairs([(0, 1)])]);
        for ks in [vec![], vec![0], vec![3]] {
            let cfg = EvalConfig { ks, ..Default::default() };
            assert!(evaluate(&s, &t, &[], &cfg).unwrap_err().to_string().contains("eval.ks"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn tensor_path_equals_reference(seed in 0u64..1000, n_users in 1usize..12, n_items in 5usize..40, block in 1usize..6) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let d = 3;
            // distinct random scores: ties are measure-zero with continuous draws
            let u: Vec<f32> = (0..n_users * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let i: Vec<f32> = (0..n_items * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let mut tr = Interactions::default();
            let mut te = Interactions::default();
            for uu in 0..n_users as u32 {
                for ii in 0..n_items as u32 {
                    match rng.gen_range(0..10) { 0 | 1 => tr.push(uu, ii), 2 => te.push(uu, ii), _ => {} }
                }
            }
            let train = UserItems::build(n_users, &[&tr]);
            let test = UserItems::build(n_users, &[&te]);
            let ks = vec![1, 3, 5];
            let cfg = EvalConfig { ks: ks.clone(), block_users: Some(block), ..Default::default() };
            let got = evaluate(&scorer(&u, &i, d as i64), &test, &[&train], &cfg).unwrap();
            // reference: pure Rust scoring, sorting, metrics and list popularity at K = 3
            let popularity: Vec<u32> = (0..n_items).map(|_| rng.gen_range(0..50)).collect();
            let mut lists: Vec<f64> = Vec::new();
            let mut acc = MetricAccumulator::new(&ks);
            for uu in 0..n_users {
                let rel: Vec<u32> = test.items_of(uu).iter().copied().filter(|&x| !train.contains(uu, x)).collect();
                if test.items_of(uu).is_empty() { continue; }
                if train.items_of(uu).is_empty() || rel.is_empty() { acc.skip_user(); continue; }
                let scores: Vec<f32> = (0..n_items).map(|it| (0..d).map(|k| u[uu * d + k] * i[it * d + k]).sum()).collect();
                let ranked = rank_top_k(&scores, train.items_of(uu), 5);
                acc.add_user(&hit_vector(&ranked, &rel), rel.len());
                let top3 = &ranked[..ranked.len().min(3)];
                lists.push(top3.iter().map(|&x| f64::from(popularity[x as usize]).ln_1p()).sum::<f64>() / top3.len() as f64);
            }
            let want = acc.finish();
            let got_pop = list_popularity(&scorer(&u, &i, d as i64), &test, &[&train], &popularity, 3, &cfg).unwrap();
            let want_pop = (!lists.is_empty()).then(|| lists.iter().sum::<f64>() / lists.len() as f64);
            match (got_pop, want_pop) {
                (Some(g), Some(w)) => prop_assert!((g - w).abs() < 1e-9, "list popularity {} vs {}", g, w),
                (g, w) => prop_assert_eq!(g, w),
            }
            prop_assert_eq!(got.users_evaluated, want.users_evaluated);
            prop_assert_eq!(got.users_skipped, want.users_skipped);
            for (k, v) in &want.values {
                prop_assert!((got.values[k] - v).abs() < 1e-6, "{} {} vs {}", k, got.values[k], v);
            }
        }
    }
}
