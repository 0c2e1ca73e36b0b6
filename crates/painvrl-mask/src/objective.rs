//! The invariance objectives both stages share: IRMv1's penalty (the two-half estimator from
//! closed-form per-interaction scale derivatives, plain or centred across environments), how
//! a penalty is weighed against the accuracy loss ([`Weighting`], [`Combination`]), and
//! PaInvRL's final training objective ([`InvariancePenalty`]).
//!
//! The final objective is our design, not taken from the paper: the mask alone does not keep a
//! final model that is trained for accuracy only from leaning on the variant dimensions again
//! (see `docs/method.md`).

use crate::solver::{pareto_pair, GradNormalization};
use painvrl_core::ops::{gather_rows, row_dots};
use painvrl_core::{Backbone, Batch, LossShape, Result, StepObjective};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// How the accuracy objective and the invariance penalty are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// MGDA: the minimum-norm point of the two gradients' hull, each step.
    Pareto,
    /// InvRL: L_ERM + `irm_weight` · L_IRM.
    Fixed,
}

/// Which invariance penalty the final training carries across environments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinalPenalty {
    /// IRMv1 ([`irmv1_two_half`]): every environment's risk is optimal at the same score scale.
    #[default]
    Irmv1,
    /// IRMv1 centred across environments ([`irmv1_centered_two_half`]): only the differences
    /// between the environments' optimal score scales.
    Irmv1Centered,
    /// V-REx (Krueger et al. 2021; [`risk_variance`]): the variance across environments of
    /// their mean risk — pulls the environments' risks together, whichever way that moves them.
    RiskVariance,
}

/// The form of the environments' risks, and so of IRMv1's scale derivatives, in mask learning
/// (`mask.risk`) and in the final training's penalty (`final_risk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskForm {
    /// The backbone's own loss form ([`Backbone::loss_shape`]): pairwise for the BPR backbones
    /// (LightGCN, VBPR), pointwise for UltraGCN.
    Backbone,
    /// Logistic loss of each score against its label, whatever the backbone.
    Pointwise,
    /// BPR on each positive against its negatives, whatever the backbone.
    Pairwise,
}

impl RiskForm {
    /// The loss shape this choice gives on a backbone whose own shape is `backbone`.
    pub fn shape(self, backbone: LossShape) -> LossShape {
        match self {
            RiskForm::Backbone => backbone,
            RiskForm::Pointwise => LossShape::Pointwise,
            RiskForm::Pairwise => LossShape::Pairwise,
        }
    }
}

/// A [`Weighting`] with what it needs: the gradient normalisation and preference of the Pareto
/// weighting, the penalty's weight of the fixed one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Combination {
    /// Pareto (min-norm) or fixed weights.
    pub weighting: Weighting,
    /// Scaling of each gradient before the min-norm combination.
    pub normalization: GradNormalization,
    /// Preference (accuracy, penalty) scaling each gradient before the combination; `[1, 1]`
    /// for none.
    pub preference: [f64; 2],
    /// The penalty's weight under fixed weighting (the loss's is 1).
    pub fixed_weight: f64,
}

impl Combination {
    /// The weights `[w_loss, w_penalty]` on the two objectives and the convex weight α on the
    /// loss (for the log), from the Gram entries of their gradients and their values. Under
    /// fixed weighting the gradients are not used: `[1, fixed_weight]`, α = 1 / (1 + weight).
    ///
    /// With L2 normalisation the min-norm point of two unit vectors is always α = ½: the step
    /// is then the sum of the two unit gradients, each scaled by ½ over its norm.
    pub fn weights(&self, g11: f64, g12: f64, g22: f64, losses: [f64; 2]) -> ([f64; 2], f64) {
        match self.weighting {
            Weighting::Fixed => ([1.0, self.fixed_weight], 1.0 / (1.0 + self.fixed_weight)),
            Weighting::Pareto => pareto_pair(g11, g12, g22, losses, self.normalization, self.preference),
        }
    }
}

/// The IRMv1 penalty across environments as a [`StepObjective`] of the final training.
pub struct InvariancePenalty<'a> {
    /// Environment of every training interaction (training-split order).
    pub labels: &'a [u32],
    /// Number of environments.
    pub n_envs: usize,
    /// Which penalty.
    pub kind: FinalPenalty,
    /// The form of the risk whose scale derivatives the IRMv1 penalties read, and whose mean
    /// V-REx compares.
    pub risk: RiskForm,
    /// How the penalty is weighed against the recommender's loss.
    pub combination: Combination,
}

/// Per-interaction derivative, at w = 1, of the interaction's risk under a dummy scale w on
/// the scores: `BCE(w·s⁺, 1) + mean_j BCE(w·s⁻_j, 0)` differentiates to
/// `(σ(s⁺) − 1)·s⁺ + mean_j σ(s⁻_j)·s⁻_j`. `pos` is `[b]`, `neg` is `[b, k]`.
pub fn scale_derivatives(pos: &Tensor, neg: &Tensor) -> Tensor {
    (pos.sigmoid() - 1.0) * pos + (neg.sigmoid() * neg).mean_dim([1i64].as_slice(), false, Kind::Float)
}

/// Per-interaction derivative, at w = 1, of the pairwise (BPR) risk under a dummy scale w on
/// the scores: `mean_j −log σ(w·(s⁺ − s⁻_j))` differentiates to `mean_j (σ(Δ_j) − 1)·Δ_j` with
/// `Δ_j = s⁺ − s⁻_j`. It depends on the differences only, so a level every score of a user
/// shares, which a pairwise loss leaves free, does not move it. `pos` is `[b]`, `neg` `[b, k]`.
pub fn pairwise_scale_derivatives(pos: &Tensor, neg: &Tensor) -> Tensor {
    let diff = pos.unsqueeze(1) - neg;
    ((diff.sigmoid() - 1.0) * diff).mean_dim([1i64].as_slice(), false, Kind::Float)
}

/// The scale derivatives of a batch's interactions in the risk of the given shape
/// ([`scale_derivatives`] or [`pairwise_scale_derivatives`]).
pub fn shaped_scale_derivatives(shape: LossShape, pos: &Tensor, neg: &Tensor) -> Tensor {
    match shape {
        LossShape::Pointwise => scale_derivatives(pos, neg),
        LossShape::Pairwise => pairwise_scale_derivatives(pos, neg),
    }
}

/// IRMv1's unbiased two-half estimator from per-interaction derivatives `d` `[b]` and their
/// environments: for every environment with at least two interactions in the batch, the mean
/// derivative over its even-indexed rows times that over its odd-indexed rows; averaged over
/// those environments (0 when there is none).
pub fn irmv1_two_half(d: &Tensor, envs: &[u32], n_envs: usize) -> Tensor {
    match HalfMeans::of(d, envs, n_envs, true) {
        // half 0 already carries the 1 / n_valid of the average
        Some(h) => (h.means.get(0) * h.means.get(1)).sum(Kind::Float),
        None => Tensor::zeros([], (Kind::Float, d.device())),
    }
}

/// IRMv1 centred across environments: the two-half estimator of the spread of the
/// environments' scale derivatives around their mean, `mean_e (g_e − ḡ)²`, where
/// [`irmv1_two_half`] estimates `mean_e g_e²`. The two differ by `ḡ²`, the part every
/// environment shares: a model whose scores are all too timid (or too bold) for a logistic risk
/// has a large `ḡ²` whatever its environments, and plain IRMv1 then mostly asks for a larger
/// (smaller) score scale — through the dimensions that carry the most signal, invariant or
/// not. Centred, the penalty is what IRMv1 reads at the score scale that is optimal on the
/// pooled batch (to first order), and only differences between environments remain.
/// Unbiased for the same reason as the plain one: the two halves are independent.
pub fn irmv1_centered_two_half(d: &Tensor, envs: &[u32], n_envs: usize) -> Tensor {
    match HalfMeans::of(d, envs, n_envs, false) {
        Some(h) => {
            let valid = painvrl_core::to_device_async(&Tensor::from_slice(&h.valid), d.device());
            let centred = |half: Tensor| {
                let mean = (&half * &valid).sum(Kind::Float) / h.n_valid as f64;
                (half - mean) * &valid
            };
            (centred(h.means.get(0)) * centred(h.means.get(1))).sum(Kind::Float) / h.n_valid as f64
        }
        None => Tensor::zeros([], (Kind::Float, d.device())),
    }
}

/// Per-environment means of `d` over the even- and odd-ranked rows of each environment.
struct HalfMeans {
    /// `[2, E]`: half 0 (even ranks) and half 1 (odd ranks); 0 where an environment is invalid.
    /// With `fold_average`, half 0 is also divided by `n_valid`.
    means: Tensor,
    /// Per environment: 1 with at least two rows in the batch, 0 otherwise (on the host: only
    /// the centred estimator reads it).
    valid: Vec<f32>,
    /// How many environments are valid (at least 1).
    n_valid: usize,
}

impl HalfMeans {
    /// `None` when no environment has two rows. `fold_average` divides half 0 by the number of
    /// valid environments, so that the sum of the halves' products is their average.
    fn of(d: &Tensor, envs: &[u32], n_envs: usize, fold_average: bool) -> Option<HalfMeans> {
        let device = d.device();
        let b = envs.len();
        // rank of each row within its environment (0-based), and each environment's size
        let mut size = vec![0usize; n_envs];
        let rank: Vec<usize> = envs
            .iter()
            .map(|&e| {
                size[e as usize] += 1;
                size[e as usize] - 1
            })
            .collect();
        let n_valid = size.iter().filter(|&&n| n >= 2).count();
        if n_valid == 0 {
            return None;
        }
        // averaging weights of the two halves, [2, b, E]: row r of environment e (rank k)
        // weighs 1/|half| in half k mod 2 (and half 0 also 1/n_valid when folding)
        let (mut w, plane) = (vec![0f32; 2 * b * n_envs], b * n_envs);
        for (r, (&e, &k)) in envs.iter().zip(&rank).enumerate() {
            let n = size[e as usize];
            if n < 2 {
                continue;
            }
            let (half, count) = if k % 2 == 0 { (0, n.div_ceil(2)) } else { (1, n / 2) };
            let scale = if half == 0 && fold_average { (count * n_valid) as f32 } else { count as f32 };
            w[half * plane + r * n_envs + e as usize] = 1.0 / scale;
        }
        let w = painvrl_core::to_device_async(&Tensor::from_slice(&w).reshape([2, b as i64, n_envs as i64]), device);
        let valid = size.iter().map(|&n| if n >= 2 { 1.0 } else { 0.0 }).collect();
        let means = d.to_kind(Kind::Float).reshape([1, 1, b as i64]).matmul(&w).reshape([2, n_envs as i64]);
        Some(HalfMeans { means, valid, n_valid })
    }
}

/// Per-interaction risk `BCE(s⁺, 1) + mean_j BCE(s⁻_j, 0)` (the risk [`scale_derivatives`]
/// differentiates). `pos` is `[b]`, `neg` is `[b, k]`.
pub fn interaction_risks(pos: &Tensor, neg: &Tensor) -> Tensor {
    (-pos).softplus() + neg.softplus().mean_dim([1i64].as_slice(), false, Kind::Float)
}

/// Per-interaction pairwise risk `mean_j −log σ(s⁺ − s⁻_j)` (the risk
/// [`pairwise_scale_derivatives`] differentiates). `pos` is `[b]`, `neg` is `[b, k]`.
pub fn pairwise_interaction_risks(pos: &Tensor, neg: &Tensor) -> Tensor {
    (neg - pos.unsqueeze(1)).softplus().mean_dim([1i64].as_slice(), false, Kind::Float)
}

/// V-REx's penalty from per-interaction risks `r` `[b]` and their environments: the population
/// variance, across the environments present in the batch, of each one's mean risk (0 with
/// fewer than two present).
pub fn risk_variance(r: &Tensor, envs: &[u32], n_envs: usize) -> Tensor {
    let device = r.device();
    let mut size = vec![0usize; n_envs];
    for &e in envs {
        size[e as usize] += 1;
    }
    let present: Vec<i64> = (0..n_envs).filter(|&e| size[e] > 0).map(|e| e as i64).collect();
    if present.len() < 2 {
        return Tensor::zeros([], (Kind::Float, device));
    }
    // [b, E] averaging weights: row r weighs 1/|e| in its environment's column
    let (b, e_all) = (envs.len(), n_envs);
    let mut w = vec![0f32; b * e_all];
    for (row, &e) in envs.iter().enumerate() {
        w[row * e_all + e as usize] = 1.0 / size[e as usize] as f32;
    }
    let w = painvrl_core::to_device_async(&Tensor::from_slice(&w).reshape([b as i64, e_all as i64]), device);
    let present = painvrl_core::to_device_async(&Tensor::from_slice(&present), device);
    let means =
        r.to_kind(Kind::Float).reshape([1, b as i64]).matmul(&w).reshape([e_all as i64]).index_select(0, &present);
    (&means - means.mean(Kind::Float)).square().mean(Kind::Float)
}

impl StepObjective for InvariancePenalty<'_> {
    fn backward(
        &self,
        vs: &VarStore,
        backbone: &dyn Backbone,
        content: &Tensor,
        batch: &Batch,
        positions: &[usize],
        loss: &Tensor,
    ) -> Result<Option<f64>> {
        let (users, items) = backbone.embeddings(content);
        let u = users.index_select(0, &batch.users);
        let pos = (&u * items.index_select(0, &batch.pos_items)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let neg = row_dots(&gather_rows(&items, &batch.neg_items), &u);
        let envs: Vec<u32> = positions.iter().map(|&p| self.labels[p]).collect();
        let shape = self.risk.shape(backbone.loss_shape());
        let penalty = match self.kind {
            FinalPenalty::Irmv1 => irmv1_two_half(&shaped_scale_derivatives(shape, &pos, &neg), &envs, self.n_envs),
            FinalPenalty::Irmv1Centered => {
                irmv1_centered_two_half(&shaped_scale_derivatives(shape, &pos, &neg), &envs, self.n_envs)
            }
            FinalPenalty::RiskVariance => {
                let risks = match shape {
                    LossShape::Pointwise => interaction_risks(&pos, &neg),
                    LossShape::Pairwise => pairwise_interaction_risks(&pos, &neg),
                };
                risk_variance(&risks, &envs, self.n_envs)
            }
        };
        if !penalty.requires_grad() {
            loss.backward();
            return Ok(Some(1.0));
        }
        match self.combination.weighting {
            Weighting::Fixed => {
                (loss + &penalty * self.combination.fixed_weight).backward();
                Ok(None)
            }
            Weighting::Pareto => {
                let vars = vs.trainable_variables();
                // the penalty's gradient first (keeping the shared graph), then the loss's on the variables
                let g2 = Tensor::run_backward(&[&penalty], &vars, true, false);
                loss.backward();
                // the Gram entries per variable and both losses, read back in one transfer
                let zero = || Tensor::zeros([], (Kind::Double, loss.device()));
                let mut parts: Vec<Tensor> = Vec::with_capacity(3 * vars.len() + 2);
                for (v, p) in vars.iter().zip(&g2) {
                    let g1 = v.grad();
                    let d1 = g1.defined();
                    parts.push(if d1 { g1.square().sum(Kind::Double) } else { zero() });
                    parts.push(if d1 && p.defined() { (&g1 * p).sum(Kind::Double) } else { zero() });
                    parts.push(if p.defined() { p.square().sum(Kind::Double) } else { zero() });
                }
                parts.push(loss.detach().to_kind(Kind::Double));
                parts.push(penalty.detach().to_kind(Kind::Double));
                let host = Vec::<f64>::try_from(Tensor::stack(&parts, 0).to_device(tch::Device::Cpu))?;
                let (mut g11, mut g12, mut g22) = (0.0, 0.0, 0.0);
                for c in host[..3 * vars.len()].chunks(3) {
                    g11 += c[0];
                    g12 += c[1];
                    g22 += c[2];
                }
                let losses = [host[3 * vars.len()], host[3 * vars.len() + 1]];
                let ([w1, w2], alpha) = self.combination.weights(g11, g12, g22, losses);
                tch::no_grad(|| {
                    for (v, p) in vars.iter().zip(&g2) {
                        let mut g1 = v.grad();
                        if g1.defined() {
                            let _ = g1.g_mul_scalar_(w1);
                            if p.defined() {
                                let _ = g1.g_add_(&(p * w2));
                            }
                        }
                    }
                });
                Ok(Some(alpha))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn fixed_and_pareto_weights() {
        let fixed = Combination {
            weighting: Weighting::Fixed,
            normalization: GradNormalization::None,
            preference: [1.0, 1.0],
            fixed_weight: 3.0,
        };
        assert_eq!(fixed.weights(1.0, 0.0, 1.0, [1.0, 1.0]), ([1.0, 3.0], 0.25));
        // orthogonal gradients of norms 1 and 2, raw: α = ‖g₂‖² / (‖g₁‖² + ‖g₂‖²) = 0.8
        let pareto = Combination { weighting: Weighting::Pareto, ..fixed };
        let ([w1, w2], a) = pareto.weights(1.0, 0.0, 4.0, [1.0, 1.0]);
        assert!((a - 0.8).abs() < 1e-12 && (w1 - 0.8).abs() < 1e-12 && (w2 - 0.2).abs() < 1e-12);
        // L2-normalised, any two gradients meet at α = ½
        let l2 = Combination { normalization: GradNormalization::L2, ..pareto };
        assert!((l2.weights(1.0, -0.3, 4.0, [1.0, 1.0]).1 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn scale_derivative_matches_autograd() {
        let pos = Tensor::from_slice(&[0.3f32, -1.2]);
        let neg = Tensor::from_slice(&[0.5f32, -0.4, 2.0, 0.1, -0.7, 1.1]).reshape([2, 3]);
        let w = Tensor::ones([], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let risk = |i: i64| {
            let p = (&w * pos.get(i)).unsqueeze(0);
            let n = &w * neg.get(i);
            p.binary_cross_entropy_with_logits::<&Tensor>(&p.ones_like(), None, None, tch::Reduction::Mean)
                + n.binary_cross_entropy_with_logits::<&Tensor>(&n.zeros_like(), None, None, tch::Reduction::Mean)
        };
        let d = scale_derivatives(&pos, &neg);
        for i in 0..2 {
            let g = Tensor::run_backward(&[risk(i)], &[&w], false, false);
            assert!((g[0].double_value(&[]) - d.double_value(&[i])).abs() < 1e-5);
        }
    }

    #[test]
    fn pairwise_scale_derivative_matches_autograd_and_ignores_a_shared_level() {
        let pos = Tensor::from_slice(&[0.3f32, -1.2]);
        let neg = Tensor::from_slice(&[0.5f32, -0.4, 2.0, 0.1, -0.7, 1.1]).reshape([2, 3]);
        let w = Tensor::ones([], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // mean_j −log σ(w (s⁺ − s⁻_j)), written out by hand
        let risk = |i: i64| (&w * (pos.get(i) - neg.get(i))).log_sigmoid().neg().mean(Kind::Float);
        let d = pairwise_scale_derivatives(&pos, &neg);
        for i in 0..2 {
            let g = Tensor::run_backward(&[risk(i)], &[&w], false, false);
            assert!((g[0].double_value(&[]) - d.double_value(&[i])).abs() < 1e-5);
        }
        // a level added to every score of a row moves the pointwise derivative, not the pairwise one
        let shift = Tensor::from_slice(&[3.0f32, -2.0]);
        let (pos2, neg2) = (&pos + &shift, &neg + shift.unsqueeze(1));
        let moved = (pairwise_scale_derivatives(&pos2, &neg2) - &d).abs().max().double_value(&[]);
        assert!(moved < 1e-5, "{moved}");
        let pointwise = (scale_derivatives(&pos2, &neg2) - scale_derivatives(&pos, &neg)).abs().max();
        assert!(pointwise.double_value(&[]) > 0.1);
        // the shaped dispatcher picks the one its shape names
        for (shape, want) in [(LossShape::Pointwise, scale_derivatives(&pos, &neg)), (LossShape::Pairwise, d)] {
            assert!(shaped_scale_derivatives(shape, &pos, &neg).allclose(&want, 0.0, 0.0, false));
        }
    }

    #[test]
    fn pairwise_interaction_risk_golden_values() {
        let pos = Tensor::from_slice(&[0.3f32, -1.2]);
        let neg = Tensor::from_slice(&[0.5f32, -0.4, 2.0, 0.1, -0.7, 1.1]).reshape([2, 3]);
        let r = pairwise_interaction_risks(&pos, &neg);
        let ln1p_exp = |x: f64| (1.0 + x.exp()).ln();
        for (i, (p, n)) in [(0.3, [0.5, -0.4, 2.0]), (-1.2, [0.1, -0.7, 1.1])].iter().enumerate() {
            let want = n.iter().map(|&x| ln1p_exp(x - p)).sum::<f64>() / 3.0;
            assert!((r.double_value(&[i as i64]) - want).abs() < 1e-5);
        }
    }

    #[test]
    fn two_half_penalty_golden_values() {
        // env 0 rows 0, 2, 4 → halves {0, 4} and {2}; env 1 rows 1, 3 → {1} and {3}
        let d = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -4.0, 5.0]);
        let p = irmv1_two_half(&d, &[0, 1, 0, 1, 0], 2).double_value(&[]);
        let want = ((1.0 + 5.0) / 2.0 * 3.0 + 2.0 * -4.0) / 2.0;
        assert!((p - want).abs() < 1e-6, "{p} vs {want}");
        // an environment with one row in the batch contributes nothing; none at all gives 0
        let single = irmv1_two_half(&d, &[0, 0, 0, 0, 1], 2).double_value(&[]);
        assert!((single - (1.0 + 3.0) / 2.0 * (2.0 - 4.0) / 2.0).abs() < 1e-6);
        assert_eq!(irmv1_two_half(&d.narrow(0, 0, 1), &[0], 2).double_value(&[]), 0.0);
    }

    #[test]
    fn centred_penalty_golden_values_and_the_shared_part_removed() {
        // halves per environment: env 0 {1, 5} | {3} → 3 | 3; env 1 {2} | {−4} → 2 | −4;
        // centred over the two environments: [0.5, −0.5] and [3.5, −3.5]
        let d = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -4.0, 5.0]);
        let envs = [0, 1, 0, 1, 0];
        let p = irmv1_centered_two_half(&d, &envs, 2).double_value(&[]);
        assert!((p - (0.5 * 3.5 + 0.5 * 3.5) / 2.0).abs() < 1e-6, "{p}");
        // a derivative every environment shares moves plain IRMv1, not the centred one
        let shifted = &d + 10.0;
        let plain = irmv1_two_half(&shifted, &envs, 2).double_value(&[]);
        assert!((plain - irmv1_two_half(&d, &envs, 2).double_value(&[])).abs() > 1.0);
        assert!((irmv1_centered_two_half(&shifted, &envs, 2).double_value(&[]) - p).abs() < 1e-4);
        // one valid environment has no spread; none at all gives 0
        assert!(irmv1_centered_two_half(&d, &[0, 0, 0, 0, 1], 2).double_value(&[]).abs() < 1e-7);
        assert_eq!(irmv1_centered_two_half(&d.narrow(0, 0, 1), &[0], 2).double_value(&[]), 0.0);
    }

    #[test]
    fn interaction_risk_matches_the_mean_bce() {
        let pos = Tensor::from_slice(&[0.3f32, -1.2]);
        let neg = Tensor::from_slice(&[0.5f32, -0.4, 2.0, 0.1, -0.7, 1.1]).reshape([2, 3]);
        let r = interaction_risks(&pos, &neg);
        let ln1p_exp = |x: f64| (1.0 + x.exp()).ln();
        for (i, (p, n)) in [(0.3, [0.5, -0.4, 2.0]), (-1.2, [0.1, -0.7, 1.1])].iter().enumerate() {
            let want = ln1p_exp(-p) + n.iter().map(|&x| ln1p_exp(x)).sum::<f64>() / 3.0;
            assert!((r.double_value(&[i as i64]) - want).abs() < 1e-5);
        }
    }

    #[test]
    fn risk_variance_golden_values() {
        // env 0 mean (1 + 3 + 5) / 3 = 3, env 2 mean (2 − 4) / 2 = −1, env 1 absent:
        // variance of {3, −1} = 4
        let r = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -4.0, 5.0]);
        assert!((risk_variance(&r, &[0, 2, 0, 2, 0], 3).double_value(&[]) - 4.0).abs() < 1e-6);
        // one environment present: nothing to compare
        assert_eq!(risk_variance(&r, &[1, 1, 1, 1, 1], 3).double_value(&[]), 0.0);
        // descending it lowers the high-risk environment's risks and raises the low-risk one's
        let rg = r.copy().set_requires_grad(true);
        let g = Tensor::run_backward(&[risk_variance(&rg, &[0, 2, 0, 2, 0], 3)], &[&rg], false, false);
        // ∂/∂r_i = 2 (m_e − m̄) / P / |e|: env 0 rows 2·2/2/3, env 2 rows 2·(−2)/2/2
        assert!((g[0].double_value(&[0]) - 2.0 / 3.0).abs() < 1e-6);
        assert!((g[0].double_value(&[1]) + 1.0).abs() < 1e-6);
    }
}
