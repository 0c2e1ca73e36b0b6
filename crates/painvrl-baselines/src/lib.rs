//! Reference recommenders that every comparison in painvrl reports next to its own methods, as
//! [`BlockScorer`]s so that the one full-ranking evaluator ranks them:
//!
//! - [`Popularity`]: every user gets the items ranked by training popularity;
//! - [`ItemItem::ease`]: EASE, the closed-form item–item model of Steck (WWW 2019);
//! - [`ItemItem::item_knn`]: cosine item–item similarity keeping each item's top-k neighbours;
//! - [`PopularityAdjusted`]: post-hoc popularity adjustment of any scorer,
//!   `score − β·log(1 + training popularity)`;
//! - [`StandardizedBlend`]: two scorers' per-user standardized scores mixed by a weight, e.g. a
//!   trained model with EASE.
//!
//! None of them reads content features: they are the ID-only references a multimedia
//! recommender has to beat.

use painvrl_core::eval::BlockScorer;
use painvrl_core::{Error, Result, UserItems};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Training popularity of each item: the number of users whose history holds it.
pub fn item_popularity(train: &UserItems, n_items: usize) -> Vec<u32> {
    let mut pop = vec![0u32; n_items];
    for u in 0..train.n_users() {
        for &i in train.items_of(u) {
            pop[i as usize] += 1;
        }
    }
    pop
}

/// Ranks every user's catalogue by training popularity (the most-popular baseline).
pub struct Popularity {
    scores: Tensor,
}

impl Popularity {
    /// Popularity scores from the training histories, on `device`.
    pub fn fit(train: &UserItems, n_items: usize, device: Device) -> Self {
        let pop: Vec<f32> = item_popularity(train, n_items).into_iter().map(|c| c as f32).collect();
        Popularity { scores: Tensor::from_slice(&pop).to_device(device).unsqueeze(0) }
    }
}

impl BlockScorer for Popularity {
    fn score_block(&self, users: &Tensor) -> Tensor {
        self.scores.repeat([users.size()[0], 1])
    }
    fn n_items(&self) -> usize {
        self.scores.size()[1] as usize
    }
    fn device(&self) -> Device {
        self.scores.device()
    }
}

/// Bytes of f32 item–item work the closed-form models hold at their peak: the co-occurrence
/// matrix, its inverse (or the similarity) and libtorch's workspace, `4 · n_items²` floats.
pub fn item_item_bytes(n_items: usize) -> u64 {
    4 * 4 * (n_items as u64) * (n_items as u64)
}

fn check_memory(model: &str, n_items: usize, limit_bytes: Option<u64>) -> Result<()> {
    let need = item_item_bytes(n_items);
    match limit_bytes {
        Some(limit) if need > limit => Err(Error::config(
            "method",
            format!(
                "{model} needs about {:.0} MiB for its {n_items} × {n_items} item–item matrices but {:.0} MiB are available; use a model with embeddings (erm, pd) on this catalogue, or raise max_memory_mb if more memory is free",
                need as f64 / (1u64 << 20) as f64,
                limit as f64 / (1u64 << 20) as f64
            ),
        )),
        _ => Ok(()),
    }
}

/// Dense item co-occurrence counts `XᵀX` (`[n_items, n_items]`, row-major) of the binary
/// user × item matrix X of `train`. Costs Σ_u |I_u|², never a dense X.
pub fn cooccurrence(train: &UserItems, n_items: usize) -> Vec<f32> {
    let mut g = vec![0f32; n_items * n_items];
    for u in 0..train.n_users() {
        let items = train.items_of(u);
        for &i in items {
            let row = &mut g[i as usize * n_items..(i as usize + 1) * n_items];
            for &j in items {
                row[j as usize] += 1.0;
            }
        }
    }
    g
}

/// The `[b, n_items]` binary history rows of `users` (int64) on `device`.
fn history_rows(train: &UserItems, users: &Tensor, n_items: usize, device: Device) -> Tensor {
    // int64 on the CPU, so the conversion cannot fail
    let ids: Vec<i64> =
        Vec::<i64>::try_from(users.to_kind(Kind::Int64).to_device(Device::Cpu).reshape([-1])).unwrap_or_default();
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    for (r, &u) in ids.iter().enumerate() {
        if (u as usize) < train.n_users() {
            for &i in train.items_of(u as usize) {
                rows.push(r as i64);
                cols.push(i as i64);
            }
        }
    }
    let x = Tensor::zeros([ids.len() as i64, n_items as i64], (Kind::Float, device));
    if rows.is_empty() {
        return x;
    }
    let idx = [Some(Tensor::from_slice(&rows).to_device(device)), Some(Tensor::from_slice(&cols).to_device(device))];
    x.index_put(&idx, &Tensor::from(1f32).to_device(device), false)
}

/// A model that scores a user's catalogue as `x_u · W`, with `x_u` the user's binary training
/// history and `W` an `[n_items, n_items]` item–item weight matrix (EASE, ItemKNN).
pub struct ItemItem {
    train: UserItems,
    weights: Tensor,
}

impl ItemItem {
    /// EASE (Steck, WWW 2019): `P = (XᵀX + λI)⁻¹`, `W = I − P · diag(1 / diag(P))`, so that
    /// `W_jj = 0` and `W_ij = −P_ij / P_jj`. Refuses with the memory it would need when
    /// [`item_item_bytes`] exceeds `memory_limit_bytes`.
    pub fn ease(
        train: &UserItems,
        n_items: usize,
        lambda: f64,
        device: Device,
        memory_limit_bytes: Option<u64>,
    ) -> Result<Self> {
        if !(lambda.is_finite() && lambda > 0.0) {
            return Err(Error::config("baselines.ease_lambda", format!("{lambda} is not a positive number")));
        }
        check_memory("ease", n_items, memory_limit_bytes)?;
        let n = n_items as i64;
        let weights = tch::no_grad(|| -> Result<Tensor> {
            // the inverse in f64: G is singular up to λ and f32 loses the small entries
            let g = Tensor::from_slice(&cooccurrence(train, n_items)).reshape([n, n]).to_device(device);
            let g = g.to_kind(Kind::Double) + Tensor::eye(n, (Kind::Double, device)) * lambda;
            let p = Tensor::f_linalg_inv(&g)?;
            let mut w = -(&p / p.diagonal(0, 0, 1).unsqueeze(0));
            let _ = w.fill_diagonal_(0.0, false);
            Ok(w.to_kind(Kind::Float))
        })?;
        Ok(ItemItem { train: train.clone(), weights })
    }

    /// ItemKNN: cosine similarity of the items' user sets, `s_ij = c_ij / √(d_i d_j)` (`c` the
    /// co-occurrence, `d` the popularity), zero on the diagonal, keeping for each item `j` only
    /// its `k` most similar items `i` (the neighbours that vote for it).
    pub fn item_knn(
        train: &UserItems,
        n_items: usize,
        k: usize,
        device: Device,
        memory_limit_bytes: Option<u64>,
    ) -> Result<Self> {
        if k == 0 {
            return Err(Error::config("baselines.knn_k", "must be ≥ 1"));
        }
        check_memory("itemknn", n_items, memory_limit_bytes)?;
        let n = n_items as i64;
        let weights = tch::no_grad(|| -> Result<Tensor> {
            let c = Tensor::from_slice(&cooccurrence(train, n_items)).reshape([n, n]).to_device(device);
            let norm = c.diagonal(0, 0, 1).sqrt().clamp_min(1e-12);
            let mut s = &c / norm.unsqueeze(1) / norm.unsqueeze(0);
            let _ = s.fill_diagonal_(0.0, false);
            let keep = (k as i64).min(n);
            // top-k along the neighbour axis (rows) of each column j
            let (vals, idx) = s.f_topk(keep, 0, true, false)?;
            let sparse = Tensor::zeros([n, n], (Kind::Float, device)).f_scatter(0, &idx, &vals)?;
            Ok(sparse)
        })?;
        Ok(ItemItem { train: train.clone(), weights })
    }

    /// The `[n_items, n_items]` item–item weights.
    pub fn weights(&self) -> &Tensor {
        &self.weights
    }

    /// The binary training histories `[users.len(), n_items]` of the int64 user ids `users`:
    /// the left factor of the scores, `score_block(users) = histories(users) · weights()`.
    pub fn histories(&self, users: &Tensor) -> Tensor {
        history_rows(&self.train, users, self.n_items(), self.device())
    }
}

impl BlockScorer for ItemItem {
    fn score_block(&self, users: &Tensor) -> Tensor {
        self.histories(users).matmul(&self.weights)
    }
    fn n_items(&self) -> usize {
        self.weights.size()[0] as usize
    }
    fn device(&self) -> Device {
        self.weights.device()
    }
}

/// Post-hoc popularity adjustment of any scorer: `score(u, i) − β·log(1 + pop_i)`, with `pop_i`
/// the item's training popularity. β = 0 leaves the ranking unchanged; larger β favours
/// less popular items.
pub struct PopularityAdjusted<'a> {
    inner: &'a dyn BlockScorer,
    penalty: Tensor,
    beta: f64,
}

impl<'a> PopularityAdjusted<'a> {
    /// Wraps `inner` with strength `beta` (finite, ≥ 0).
    pub fn new(inner: &'a dyn BlockScorer, popularity: &[u32], beta: f64) -> Result<Self> {
        if !(beta.is_finite() && beta >= 0.0) {
            return Err(Error::config("baselines.posthoc_beta", format!("{beta} is not a finite number ≥ 0")));
        }
        if popularity.len() != inner.n_items() {
            return Err(Error::InvalidData(format!(
                "popularity has {} items but the scorer ranks {}",
                popularity.len(),
                inner.n_items()
            )));
        }
        let logs: Vec<f32> = popularity.iter().map(|&p| (1.0 + p as f32).ln()).collect();
        let penalty = Tensor::from_slice(&logs).to_device(inner.device()).unsqueeze(0);
        Ok(PopularityAdjusted { inner, penalty, beta })
    }

    /// The adjustment's strength β.
    pub fn beta(&self) -> f64 {
        self.beta
    }
}

impl BlockScorer for PopularityAdjusted<'_> {
    fn score_block(&self, users: &Tensor) -> Tensor {
        self.inner.score_block(users) - &self.penalty * self.beta
    }
    fn n_items(&self) -> usize {
        self.inner.n_items()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
}

/// Each row of `scores` (`[users, items]`) as its mean and population standard deviation over
/// the items, both `[users, 1]`; a constant row gets a deviation of 1 so that it standardizes to
/// zeros instead of NaN.
pub fn row_moments(scores: &Tensor) -> (Tensor, Tensor) {
    let mean = scores.mean_dim(1, true, Kind::Float);
    let sd = scores.std_dim(1, false, true);
    let sd = sd.where_self(&sd.gt(1e-12), &sd.ones_like());
    (mean, sd)
}

/// Two scorers mixed on a common scale: `(1 − w)·z_a(u, i) + w·z_b(u, i)`, where `z_x(u, ·)` is
/// scorer `x`'s row for user `u` standardized over the whole catalogue ([`row_moments`]). The
/// standardization makes the weight mean the same thing whatever the scorers' units (a dot
/// product, a sum of item–item weights); `w = 0` ranks as `a`, `w = 1` as `b`.
pub struct StandardizedBlend<'a> {
    a: &'a dyn BlockScorer,
    b: &'a dyn BlockScorer,
    weight: f64,
}

impl<'a> StandardizedBlend<'a> {
    /// Mixes `a` and `b` with weight `weight ∈ [0, 1]` on `b`; both must rank the same catalogue
    /// on the same device.
    pub fn new(a: &'a dyn BlockScorer, b: &'a dyn BlockScorer, weight: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&weight) {
            return Err(Error::config("blend weight", format!("{weight} is not in [0, 1]")));
        }
        if a.n_items() != b.n_items() {
            return Err(Error::InvalidData(format!(
                "the blended scorers rank {} and {} items; they must rank the same catalogue",
                a.n_items(),
                b.n_items()
            )));
        }
        if a.device() != b.device() {
            return Err(Error::InvalidData(format!(
                "the blended scorers live on {:?} and {:?}; put them on one device",
                a.device(),
                b.device()
            )));
        }
        Ok(StandardizedBlend { a, b, weight })
    }

    /// The weight on the second scorer.
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

impl BlockScorer for StandardizedBlend<'_> {
    fn score_block(&self, users: &Tensor) -> Tensor {
        let z = |scores: Tensor| {
            let (mean, sd) = row_moments(&scores);
            (scores - mean) / sd
        };
        z(self.a.score_block(users)) * (1.0 - self.weight) + z(self.b.score_block(users)) * self.weight
    }
    fn n_items(&self) -> usize {
        self.a.n_items()
    }
    fn device(&self) -> Device {
        self.a.device()
    }
}

/// Hyperparameters of the reference models, each read by the method that uses it. A list is a
/// grid: the value with the best validation score is chosen (never the test score).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// EASE's L2 strength λ; several values: chosen on validation.
    pub ease_lambda: Vec<f64>,
    /// ItemKNN's neighbours per item; several values: chosen on validation.
    pub knn_k: Vec<usize>,
    /// Post-hoc adjustment strengths β tried on validation (0 keeps the model as it is), and
    /// the grid along which `painvrl pareto` adjusts every model. The default steps at most
    /// ×2.5 and densely over 0.1–1, where the adjustment turns from a small re-ranking into
    /// one that gives up most of the IID recall (docs/method.md).
    pub posthoc_beta: Vec<f64>,
    /// PD's popularity exponent γ (method `pd`; the paper's range is about 0.02–0.25).
    pub pd_gamma: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            // half-decade grids, wide enough for catalogues from 10³ to 10⁵ items
            ease_lambda: vec![10.0, 30.0, 100.0, 300.0, 1000.0],
            knn_k: vec![20, 50, 100, 200],
            posthoc_beta: vec![0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 3.0],
            pd_gamma: 0.1,
        }
    }
}

impl BaselineConfig {
    /// Checks every grid is non-empty and in its domain; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.ease_lambda.is_empty() || self.ease_lambda.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(Error::config("baselines.ease_lambda", "give one or more positive numbers"));
        }
        if self.knn_k.is_empty() || self.knn_k.contains(&0) {
            return Err(Error::config("baselines.knn_k", "give one or more neighbour counts ≥ 1"));
        }
        if self.posthoc_beta.is_empty() || self.posthoc_beta.iter().any(|b| !(b.is_finite() && *b >= 0.0)) {
            return Err(Error::config("baselines.posthoc_beta", "give one or more finite numbers ≥ 0"));
        }
        if !(self.pd_gamma.is_finite() && self.pd_gamma > 0.0) {
            return Err(Error::config("baselines.pd_gamma", format!("{} is not a positive number", self.pd_gamma)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use painvrl_core::Interactions;
    use proptest::prelude::*;

    /// 3 users × 4 items: u0 {0, 1}, u1 {1, 2}, u2 {0, 1, 3}.
    fn toy() -> UserItems {
        UserItems::build(3, &[&Interactions::from_pairs([(0, 0), (0, 1), (1, 1), (1, 2), (2, 0), (2, 1), (2, 3)])])
    }

    fn dense(t: &Tensor) -> Vec<Vec<f64>> {
        let n = t.size()[0];
        (0..n).map(|r| Vec::<f64>::try_from(t.get(r).to_kind(Kind::Double)).unwrap()).collect()
    }

    #[test]
    fn cooccurrence_counts_shared_users() {
        // by hand: item 0 ∈ {u0, u2}, 1 ∈ {u0, u1, u2}, 2 ∈ {u1}, 3 ∈ {u2}
        let g = cooccurrence(&toy(), 4);
        #[rustfmt::skip]
        let want = [2., 2., 0., 1.,
                    2., 3., 1., 1.,
                    0., 1., 1., 0.,
                    1., 1., 0., 1.];
        assert_eq!(g, want);
    }

    #[test]
    fn popularity_evaluates_per_user_exclusions() {
        // each user's own seen items are excluded, not the union of the block's: user 0 saw
        // {0, 1}, so its top item is 3 (popularity 1, ties broken by id) or 2; user 1 saw {1, 2}
        // and gets item 0 (popularity 2) first
        let p = Popularity::fit(&toy(), 4, Device::Cpu);
        let test = UserItems::build(2, &[&Interactions::from_pairs([(0, 2), (1, 0)])]);
        let cfg = painvrl_core::EvalConfig { ks: vec![1], block_users: Some(2), ..Default::default() };
        let m = painvrl_core::evaluate(&p, &test, &[&toy()], &cfg).unwrap();
        assert_eq!(m.users_evaluated, 2);
        assert!(m.get("recall", 1).unwrap() >= 0.5, "user 1's item 0 must be ranked first");
    }

    #[test]
    fn popularity_ranks_by_training_count() {
        let p = Popularity::fit(&toy(), 4, Device::Cpu);
        let s = p.score_block(&Tensor::from_slice(&[0i64, 2]));
        assert_eq!(s.size(), vec![2, 4]);
        assert_eq!(Vec::<f32>::try_from(s.get(1)).unwrap(), vec![2.0, 3.0, 1.0, 1.0]);
    }

    /// EASE against an independent computation: Gauss–Jordan inversion in f64 and the formula
    /// W = I − P diag(1/diag P), written out element by element.
    fn ease_reference(train: &UserItems, n: usize, lambda: f64) -> Vec<Vec<f64>> {
        let g = cooccurrence(train, n);
        let mut a: Vec<Vec<f64>> = (0..n)
            .map(|r| {
                let mut row: Vec<f64> =
                    (0..n).map(|c| g[r * n + c] as f64 + if r == c { lambda } else { 0.0 }).collect();
                row.extend((0..n).map(|c| if r == c { 1.0 } else { 0.0 }));
                row
            })
            .collect();
        for col in 0..n {
            let piv = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap();
            a.swap(col, piv);
            let d = a[col][col];
            a[col].iter_mut().for_each(|v| *v /= d);
            for r in 0..n {
                if r != col {
                    let f = a[r][col];
                    let pivot_row = a[col].clone();
                    a[r].iter_mut().zip(&pivot_row).for_each(|(v, p)| *v -= f * p);
                }
            }
        }
        let p: Vec<Vec<f64>> = a.iter().map(|row| row[n..].to_vec()).collect();
        (0..n).map(|i| (0..n).map(|j| if i == j { 0.0 } else { -p[i][j] / p[j][j] }).collect()).collect()
    }

    #[test]
    fn ease_matches_an_independent_inverse() {
        let m = ItemItem::ease(&toy(), 4, 0.5, Device::Cpu, None).unwrap();
        let got = dense(m.weights());
        let want = ease_reference(&toy(), 4, 0.5);
        for (gr, wr) in got.iter().zip(&want) {
            for (g, w) in gr.iter().zip(wr) {
                assert_abs_diff_eq!(g, w, epsilon = 1e-5);
            }
        }
        // scores are history rows times W: user 1's history {1, 2}
        let s = Vec::<f32>::try_from(m.score_block(&Tensor::from_slice(&[1i64])).reshape([-1])).unwrap();
        for j in 0..4 {
            assert_abs_diff_eq!(s[j] as f64, want[1][j] + want[2][j], epsilon = 1e-5);
        }
    }

    #[test]
    fn ease_refuses_what_does_not_fit_and_names_the_memory() {
        let e = ItemItem::ease(&toy(), 4, 1.0, Device::Cpu, Some(10)).err().unwrap().to_string();
        assert!(e.contains("ease needs about") && e.contains("MiB"), "{e}");
        let e = ItemItem::ease(&toy(), 4, -1.0, Device::Cpu, None).err().unwrap().to_string();
        assert!(e.contains("baselines.ease_lambda"), "{e}");
    }

    #[test]
    fn item_knn_by_hand() {
        // cosine: s_01 = 2/√(2·3) = 0.8165, s_03 = 1/√2 = 0.7071, s_12 = 1/√3 = 0.5774,
        // s_13 = 1/√3, s_02 = s_23 = 0. With k = 1, item 1's only voter is item 0 (0.8165);
        // item 0's is item 1 (0.8165); item 2's is item 1; item 3's is item 0 (0.7071).
        let m = ItemItem::item_knn(&toy(), 4, 1, Device::Cpu, None).unwrap();
        let w = dense(m.weights());
        let s01 = 2.0 / 6f64.sqrt();
        let want = [
            [0.0, s01, 0.0, 0.5f64.sqrt()],
            [s01, 0.0, 1.0 / 3f64.sqrt(), 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ];
        for (gr, wr) in w.iter().zip(&want) {
            for (g, v) in gr.iter().zip(wr) {
                assert_abs_diff_eq!(*g, *v, epsilon = 1e-6);
            }
        }
        // user 1 (history {1, 2}) scores item 0 with s_10 = 0.8165, item 2 with s_12
        let s = Vec::<f32>::try_from(m.score_block(&Tensor::from_slice(&[1i64])).reshape([-1])).unwrap();
        assert_abs_diff_eq!(s[0] as f64, s01, epsilon = 1e-6);
        assert_abs_diff_eq!(s[2] as f64, 1.0 / 3f64.sqrt(), epsilon = 1e-6);
        assert!(ItemItem::item_knn(&toy(), 4, 0, Device::Cpu, None).is_err());
    }

    #[test]
    fn posthoc_adjustment_subtracts_beta_log_popularity() {
        let base = Popularity::fit(&toy(), 4, Device::Cpu);
        let pop = item_popularity(&toy(), 4);
        let adj = PopularityAdjusted::new(&base, &pop, 2.0).unwrap();
        let s = Vec::<f32>::try_from(adj.score_block(&Tensor::from_slice(&[0i64])).reshape([-1])).unwrap();
        for (j, p) in [2.0f32, 3.0, 1.0, 1.0].iter().enumerate() {
            assert_abs_diff_eq!(s[j], p - 2.0 * (1.0 + p).ln(), epsilon = 1e-6);
        }
        assert!(PopularityAdjusted::new(&base, &pop, f64::NAN).is_err());
        assert!(PopularityAdjusted::new(&base, &pop[..3], 1.0).is_err());
    }

    /// A scorer with fixed rows, for the blend's tests.
    struct Fixed(Tensor);
    impl BlockScorer for Fixed {
        fn score_block(&self, users: &Tensor) -> Tensor {
            self.0.index_select(0, users)
        }
        fn n_items(&self) -> usize {
            self.0.size()[1] as usize
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let t = t.to_kind(Kind::Double);
        (0..t.size()[0]).map(|r| Vec::<f64>::try_from(t.get(r)).unwrap()).collect()
    }

    #[test]
    fn blend_mixes_standardized_rows_by_hand() {
        // a's row 0: 1, 2, 3, 6 → mean 3, population sd √3.5; b's row 0: 10, 0, 0, 10 → mean 5, sd 5
        let a = Fixed(Tensor::from_slice(&[1f32, 2., 3., 6., 4., 4., 4., 4.]).reshape([2, 4]));
        let b = Fixed(Tensor::from_slice(&[10f32, 0., 0., 10., 0., 1., 0., 0.]).reshape([2, 4]));
        let blend = StandardizedBlend::new(&a, &b, 0.25).unwrap();
        let s = rows(&blend.score_block(&Tensor::from_slice(&[0i64, 1])));
        let sd_a = 3.5f64.sqrt();
        for (j, (x, y)) in [(1.0, 10.0), (2.0, 0.0), (3.0, 0.0), (6.0, 10.0)].iter().enumerate() {
            assert_abs_diff_eq!(s[0][j], 0.75 * (x - 3.0) / sd_a + 0.25 * (y - 5.0) / 5.0, epsilon = 1e-5);
        }
        // a's second row is constant: it contributes zeros, not NaN; b's: 0, 1, 0, 0 → sd √3/4
        let sd_b = (3.0f64 / 16.0).sqrt();
        for (j, y) in [0.0, 1.0, 0.0, 0.0].iter().enumerate() {
            assert_abs_diff_eq!(s[1][j], 0.25 * (y - 0.25) / sd_b, epsilon = 1e-5);
        }
    }

    #[test]
    fn blend_refuses_weights_outside_the_unit_interval_and_mismatched_catalogues() {
        let a = Fixed(Tensor::ones([2, 4], (Kind::Float, Device::Cpu)));
        let b = Fixed(Tensor::ones([2, 3], (Kind::Float, Device::Cpu)));
        for w in [-0.1, 1.5, f64::NAN] {
            let e = StandardizedBlend::new(&a, &a, w).err().expect("refused").to_string();
            assert!(e.contains("blend weight"), "{e}");
        }
        let e = StandardizedBlend::new(&a, &b, 0.5).err().expect("refused").to_string();
        assert!(e.contains("4 and 3 items"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The blend reads each scorer only through its standardized rows: rescaling and shifting a
        /// user's row of either scorer (positive factor) leaves the blend's row unchanged, and the
        /// end weights rank exactly as the scorer they keep.
        #[test]
        fn blend_is_invariant_to_each_scorers_per_user_units(
            raw_a in proptest::collection::vec(-5.0f32..5.0, 12),
            raw_b in proptest::collection::vec(-5.0f32..5.0, 12),
            scale in 0.1f32..20.0, shift in -50.0f32..50.0, w in 0.0f64..=1.0,
        ) {
            let a = Fixed(Tensor::from_slice(&raw_a).reshape([2, 6]));
            let b = Fixed(Tensor::from_slice(&raw_b).reshape([2, 6]));
            // a different positive factor and shift for each user's row
            let factors = Tensor::from_slice(&[scale, 1.0 / scale]).unsqueeze(1);
            let shifts = Tensor::from_slice(&[shift, -shift]).unsqueeze(1);
            let a2 = Fixed(&a.0 * factors + shifts);
            let users = Tensor::from_slice(&[0i64, 1]);
            let s = rows(&StandardizedBlend::new(&a, &b, w).unwrap().score_block(&users));
            let s2 = rows(&StandardizedBlend::new(&a2, &b, w).unwrap().score_block(&users));
            for (r, r2) in s.iter().zip(&s2) {
                for (x, y) in r.iter().zip(r2) {
                    prop_assert!((x - y).abs() < 1e-3, "{x} vs {y}");
                }
            }
            for (weight, kept) in [(0.0, &a), (1.0, &b)] {
                let blended = rows(&StandardizedBlend::new(&a, &b, weight).unwrap().score_block(&users));
                let own = rows(&kept.score_block(&users));
                for (r, o) in blended.iter().zip(&own) {
                    for i in 0..6 {
                        for j in 0..6 {
                            if (o[i] - o[j]).abs() > 1e-3 {
                                prop_assert_eq!(r[i] > r[j], o[i] > o[j]);
                            }
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// EASE's defining property: W has a zero diagonal and, off it, solves the ridge
        /// normal equations (G + λI) W = G − diag(μ) for some diagonal μ.
        #[test]
        fn ease_solves_the_constrained_ridge_problem(seed in 0u64..500, n_items in 3usize..9, lambda in 0.1f64..20.0) {
            let mut pairs = vec![];
            for u in 0..7u32 {
                for i in 0..n_items as u32 {
                    if (seed.wrapping_mul(31).wrapping_add((u * 17 + i * 7) as u64)) % 3 == 0 { pairs.push((u, i)); }
                }
            }
            let train = UserItems::build(7, &[&Interactions::from_pairs(pairs)]);
            let m = ItemItem::ease(&train, n_items, lambda, Device::Cpu, None).unwrap();
            let w = dense(m.weights());
            let g = cooccurrence(&train, n_items);
            for j in 0..n_items {
                prop_assert!(w[j][j].abs() < 1e-9);
                for i in 0..n_items {
                    if i == j { continue; }
                    let lhs: f64 = (0..n_items).map(|k| (g[i * n_items + k] as f64 + if i == k { lambda } else { 0.0 }) * w[k][j]).sum();
                    prop_assert!((lhs - g[i * n_items + j] as f64).abs() < 1e-3, "({i},{j}): {lhs} vs {}", g[i * n_items + j]);
                }
            }
        }
    }
}
