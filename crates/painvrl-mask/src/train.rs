//! Learning the invariant feature mask: per-environment risks on masked features, an
//! invariance penalty (IRMv1 or InvRL's gradient variance), and either MGDA Pareto weights
//! (PaInvRL) or InvRL's fixed weights.

use crate::objective::{
    irmv1_centered_two_half, irmv1_two_half, pairwise_interaction_risks, shaped_scale_derivatives, Combination,
    RiskForm, Weighting,
};
use crate::solver::GradNormalization;
use painvrl_core::ops::{gather_rows, row_dots};
use painvrl_core::optim::{Adam, GroupHyper};
use painvrl_core::signal::StopHandle;
use painvrl_core::{
    signal, Backbone, Batch, Checked, EnvironmentAssignment, Error, Interactions, ItemFeatures, LossShape, Result,
    Validate,
};
use painvrl_data::{make_batch, NegativeSampler};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{nn, Kind, Reduction, Tensor};

/// How mask weights are parameterised by the logits μ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// InvRL's stochastic gate clamp(μ + 0.5 + σε, 0, 1); noise only in training.
    Gate,
    /// Attention-like sigmoid(μ).
    Sigmoid,
}

/// The invariance penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PenaltyKind {
    /// IRMv1: squared gradient of each environment's risk w.r.t. a dummy score scale, with the
    /// unbiased two-half-batch estimator.
    Irmv1,
    /// IRMv1 centred across environments ([`crate::irmv1_centered_two_half`]): the spread of
    /// those gradients around their mean, without the part every environment shares.
    #[serde(rename = "irmv1-centered")]
    Irmv1Centered,
    /// InvRL: variance across environments of ∂R_e/∂W (content projection), weighted by the mask.
    Variance,
}

/// Options of mask learning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskConfig {
    /// Mask parameterisation.
    pub kind: MaskKind,
    /// Gate noise σ.
    pub gate_sigma: f64,
    /// Invariance penalty: IRMv1 centred across environments by default (session 18: plain
    /// IRMv1's shared part, set by the pre-trained scores' calibration, decided the mask's
    /// ranking and inverted it on unseen data).
    pub penalty: PenaltyKind,
    /// The form of the environments' risks and of the penalty's scale derivatives: pointwise
    /// (logistic) by default; `Backbone` follows the backbone's loss, which makes the mask rank
    /// on the BPR backbones when the environments carry the shift (planted labels: LightGCN
    /// 1.00 against 0.52–0.69), at level validation elsewhere but lower test IID recall on two
    /// sets (docs/method.md, session 35).
    pub risk: RiskForm,
    /// Objective weighting.
    pub weighting: Weighting,
    /// Gradient normalisation before the Pareto solve.
    pub normalization: GradNormalization,
    /// Preference over (ERM, IRM): scales each gradient before the solve, steering the point
    /// reached on the front. `[1, 1]` is plain MGDA.
    pub preference: [f64; 2],
    /// Weight of L_IRM under fixed weighting (InvRL α_IRM).
    pub irm_weight: f64,
    /// λ of the regulariser λ‖μ‖² (InvRL).
    pub reg_lambda: f64,
    /// Epochs over the training interactions.
    pub epochs: usize,
    /// At least this many steps in total: on small datasets a few epochs are only a handful of
    /// steps, too few for the mask to move away from its initial ½ (epochs are added until the
    /// count is reached).
    pub min_steps: usize,
    /// Steps after the mask's own in which only the content projection trains, under the same
    /// objective, with the mask fixed (skipped when the projection does not train). The mask's
    /// ranking is decided in its first steps, while the projection has not yet absorbed it;
    /// training both longer loses that ranking, while stopping both early leaves the projection
    /// where the mask's arrival put it, below the pre-trained model in accuracy.
    pub projection_only_steps: usize,
    /// Interactions per environment per step.
    pub batch_size: usize,
    /// Keep the average of μ over the mask's steps (Polyak–Ruppert) instead of its last value,
    /// before the projection-only steps adapt the projection to it. With the projection
    /// training alongside, the mask's ranking is a transient: it forms in the first steps and
    /// decays as the projection absorbs it, at a speed set by the step's sample; the average
    /// keeps what the steps agreed on (docs/method.md, "The mask's transient — session 20").
    pub average_iterates: bool,
    /// While the mask trains, keep each row of the content projection (one per content
    /// dimension) at its pre-trained norm: the projection may turn a dimension's direction but
    /// not scale it, so a dimension's weight in the scores is the mask's alone and the
    /// projection cannot absorb it (docs/method.md, "A projection of fixed row norms —
    /// session 21"). The projection-only steps after the mask's are not constrained.
    pub fix_projection_row_norms: bool,
    /// When the mask's steps end, put the content projection back to its pre-trained value, so
    /// that the projection-only steps adapt the pre-trained projection to the learnt mask. With
    /// [`MaskConfig::fix_projection_row_norms`] the mask's ranking is the penalty's, but the
    /// rows the projection turned meanwhile cost validation accuracy (session 21); this keeps
    /// the mask and discards the turned rows.
    pub restore_projection_after_mask: bool,
    /// Ablation, an upper bound on what the mask can give the final model: when the mask's
    /// steps end, μ is replaced by the dataset's planted truth ([`MaskData::planted_invariant`],
    /// from `invariant_dims.json`), +`planted_logit` on its invariant dimensions and
    /// −`planted_logit` on the others (4: weights 0.982 / 0.018 with the sigmoid mask; the gate
    /// clamps any logit ≥ ½ to 1 / 0). Everything else runs as it
    /// would: the projection trains beside the learnt mask, then the projection-only steps adapt
    /// it to the planted one. 0, the default, keeps the learnt mask.
    pub planted_logit: f64,
    /// Negatives per positive in the environment risks.
    pub negatives: usize,
    /// Learning rate of μ (and of the content projection when it trains).
    pub lr: f64,
    /// Train the backbone's content projection together with μ. A soft mask followed by a
    /// trainable projection is over-parameterised (only the product m_d·W_d matters), so the
    /// projection absorbs what the mask would learn and λ‖μ‖² pulls μ back to 0; with the
    /// projection frozen at its pre-trained value the mask alone carries each dimension's weight.
    pub train_projection: bool,
}

impl Default for MaskConfig {
    fn default() -> Self {
        MaskConfig {
            kind: MaskKind::Sigmoid,
            gate_sigma: 0.01,
            penalty: PenaltyKind::Irmv1Centered,
            risk: RiskForm::Pointwise,
            weighting: Weighting::Pareto,
            normalization: GradNormalization::L2,
            preference: [1.0, 1.0],
            irm_weight: 1.0,
            reg_lambda: 0.1,
            epochs: 3,
            min_steps: 200,
            projection_only_steps: 200,
            batch_size: 1024,
            average_iterates: false,
            fix_projection_row_norms: false,
            restore_projection_after_mask: false,
            planted_logit: 0.0,
            negatives: 4,
            lr: 1e-2,
            train_projection: true,
        }
    }
}

impl MaskConfig {
    /// The weighting of mask learning with its parameters.
    pub fn combination(&self) -> Combination {
        Combination {
            weighting: self.weighting,
            normalization: self.normalization,
            preference: self.preference,
            fixed_weight: self.irm_weight,
        }
    }
}

/// The mask: one weight per feature dimension over all modalities, from logits `mask.mu`.
#[derive(Debug)]
pub struct Mask {
    /// Logits μ, `[dim]`, the only variable of the mask's own `VarStore`.
    pub mu: Tensor,
    kind: MaskKind,
    sigma: f64,
    _vs: VarStore,
}

impl Mask {
    /// Creates μ on `device` in a `VarStore` of its own (variable `mu`), initialised so every
    /// weight starts at ½. No model's variables are touched by creating or training it.
    pub fn new(device: tch::Device, dim: usize, kind: MaskKind, sigma: f64) -> Self {
        let vs = VarStore::new(device);
        let mu = vs.root().var("mu", &[dim as i64], nn::Init::Const(0.0));
        Mask { mu, kind, sigma, _vs: vs }
    }

    /// Mask weights in [0, 1]; the gate adds noise when `train`.
    pub fn values(&self, train: bool) -> Tensor {
        match self.kind {
            MaskKind::Sigmoid => self.mu.sigmoid(),
            MaskKind::Gate => {
                let noise = if train { self.mu.randn_like() * self.sigma } else { self.mu.zeros_like() };
                (&self.mu + 0.5 + noise).clamp(0.0, 1.0)
            }
        }
    }
}

/// Per-epoch record of mask learning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskEpochLog {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean weight α on the ERM gradient (1 − α on IRM).
    pub alpha: f64,
    /// Mean L_ERM.
    pub loss_erm: f64,
    /// Mean L_IRM.
    pub loss_irm: f64,
    /// Mean mask weight per modality.
    pub density: BTreeMap<String, f64>,
    /// Whether the mask was fixed in this epoch (only the content projection trained:
    /// [`MaskConfig::projection_only_steps`]).
    #[serde(default)]
    pub projection_only: bool,
}

/// Scores of a batch's positives `[b]` and negatives `[b, k]`.
fn batch_scores(users: &Tensor, items: &Tensor, b: &Batch) -> (Tensor, Tensor) {
    let pu = users.index_select(0, &b.users);
    let sp = (&pu * items.index_select(0, &b.pos_items)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let sn = row_dots(&gather_rows(items, &b.neg_items), &pu);
    (sp, sn)
}

/// An environment's risk: BCE of the positives against 1 and of the negatives against 0.
fn risk(sp: &Tensor, sn: &Tensor) -> Tensor {
    sp.binary_cross_entropy_with_logits::<&Tensor>(&sp.ones_like(), None, None, Reduction::Mean)
        + sn.binary_cross_entropy_with_logits::<&Tensor>(&sn.zeros_like(), None, None, Reduction::Mean)
}

/// The two objectives for one batch per environment, scored with `users` and `items`:
/// L_ERM = mean_e R_e and L_IRM (IRMv1 with the two-half estimator [`irmv1_two_half`], or InvRL's mask-weighted
/// variance across environments of ∂R_e/∂`proj`), each environment's risk R_e of the given
/// `shape`. Both keep their graphs for second-order use.
pub fn objectives(
    users: &Tensor,
    items: &Tensor,
    batches: &[Batch],
    (penalty, shape): (PenaltyKind, LossShape),
    mask: &Tensor,
    proj: &Tensor,
) -> (Tensor, Tensor) {
    let mut risks = Vec::new();
    let mut terms = Vec::new();
    for b in batches {
        let (sp, sn) = batch_scores(users, items, b);
        let r = match shape {
            LossShape::Pointwise => risk(&sp, &sn),
            LossShape::Pairwise => pairwise_interaction_risks(&sp, &sn).mean(Kind::Float),
        };
        terms.push(match penalty {
            PenaltyKind::Irmv1 | PenaltyKind::Irmv1Centered => shaped_scale_derivatives(shape, &sp, &sn),
            PenaltyKind::Variance => grad_of(&r, proj, true),
        });
        risks.push(r);
    }
    let l_erm = Tensor::stack(&risks, 0).mean(Kind::Float);
    let l_irm = match penalty {
        PenaltyKind::Irmv1 | PenaltyKind::Irmv1Centered => {
            // batch e holds environment e's rows: one estimate over all of them
            let labels: Vec<u32> = batches
                .iter()
                .enumerate()
                .flat_map(|(e, b)| std::iter::repeat_n(e as u32, b.users.size()[0] as usize))
                .collect();
            let estimate = if penalty == PenaltyKind::Irmv1 { irmv1_two_half } else { irmv1_centered_two_half };
            estimate(&Tensor::cat(&terms, 0), &labels, batches.len())
        }
        PenaltyKind::Variance => {
            // [E, d_in, c] → variance over E, summed over c, weighted by the mask per input dim
            let var = Tensor::stack(&terms, 0).var_dim([0i64].as_slice(), false, false);
            (var.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) * mask).sum(Kind::Float)
        }
    };
    (l_erm, l_irm)
}

fn grad_of(y: &Tensor, x: &Tensor, create_graph: bool) -> Tensor {
    Tensor::run_backward(&[y], &[x], true, create_graph).pop().expect("one input gives one gradient")
}

/// What mask learning trains on.
pub struct MaskData<'a> {
    /// Item content `[n_items, d]` on the model's device.
    pub features: &'a Tensor,
    /// The features' modality layout (the log's per-modality density).
    pub modalities: &'a ItemFeatures,
    /// Training interactions.
    pub train: &'a Interactions,
    /// Environment of every training interaction.
    pub envs: &'a EnvironmentAssignment,
    /// Negative sampler over the training interactions.
    pub sampler: &'a NegativeSampler,
    /// This run's stop flag (`None`: only the process-wide one stops it).
    pub stop: Option<&'a StopHandle>,
    /// The feature columns the dataset declares invariant (`invariant_dims.json`), if it ships
    /// them; only [`MaskConfig::planted_logit`] reads them.
    pub planted_invariant: Option<&'a [usize]>,
}

/// Trains the mask on the pre-trained `backbone`, whose variables stay fixed except its
/// [`Backbone::content_projection`], which trains with μ when `cfg.train_projection` (InvRL's
/// variance penalty needs that projection) and then alone for `cfg.projection_only_steps`.
/// Returns the per-epoch log; the mask lives on in `mask.mu`.
pub fn train_mask(
    backbone: &dyn Backbone,
    mask: &Mask,
    data: &MaskData,
    cfg: &Checked<MaskConfig>,
    seed: u64,
) -> Result<Vec<MaskEpochLog>> {
    let MaskData { features, modalities, train, envs, sampler, stop, planted_invariant } = *data;
    let device = features.device();
    let planted = planted_mask_logits(cfg.planted_logit, planted_invariant, mask.mu.size()[0] as usize)?;
    let proj = backbone.content_projection();
    let needs_projection = cfg.penalty == PenaltyKind::Variance;
    let proj = match proj {
        Some(p) => p,
        None if needs_projection => {
            return Err(Error::config(
                "mask.penalty",
                format!("the variance penalty needs a content projection; backbone '{}' has none", backbone.name()),
            ))
        }
        // only the mask trains; the penalty below never differentiates by the projection
        None => Tensor::zeros([0], (Kind::Float, device)),
    };
    let train_projection = cfg.train_projection && proj.numel() > 0;
    let shape = cfg.risk.shape(backbone.loss_shape());
    // μ and the projection in groups of their own, so that μ's rate can drop to 0 when only
    // the projection trains on (its Adam moments carry over)
    const MU_GROUP: usize = 0;
    let mut params = vec![("mask.mu".to_string(), mask.mu.shallow_clone(), MU_GROUP)];
    if train_projection {
        params.push(("projection".to_string(), proj.shallow_clone(), 1));
    }
    let hyper = GroupHyper { lr: cfg.lr, weight_decay: 0.0 };
    let mut opt = Adam::over_groups(params, vec![hyper, hyper]);
    let env_positions: Vec<Vec<usize>> = (0..envs.n_envs)
        .map(|e| envs.labels.iter().enumerate().filter(|(_, &l)| l as usize == e).map(|(p, _)| p).collect())
        .filter(|v: &Vec<usize>| v.len() >= 2)
        .collect();
    if env_positions.len() < 2 {
        return Err(Error::InvalidData(format!(
            "mask learning needs at least two environments with ≥ 2 interactions; got {}",
            env_positions.len()
        )));
    }
    let steps = (train.len() / (cfg.batch_size * env_positions.len())).max(1);
    let mask_steps = cfg.epochs.max(cfg.min_steps.div_ceil(steps)) * steps;
    let total_steps = mask_steps + if train_projection { cfg.projection_only_steps } else { 0 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let combination = cfg.combination();
    let mut logs = Vec::new();
    // the sum of μ's iterates, kept only when the mask ends as their average
    let mut mu_sum = cfg.average_iterates.then(|| mask.mu.zeros_like().detach());
    // the projection's pre-trained row norms `[d, 1]`, kept only when the mask's steps hold them
    let row_norms = (train_projection && cfg.fix_projection_row_norms).then(|| row_norms_of(&proj.detach()));
    let end_of_mask_steps = EndOfMaskSteps {
        steps: mask_steps,
        planted,
        // the pre-trained projection, kept only when the mask's steps end by restoring it
        pretrained_projection: (train_projection && cfg.restore_projection_after_mask).then(|| proj.detach().copy()),
    };
    for epoch in 0..total_steps.div_ceil(steps) {
        // the mask's steps are whole epochs, so an epoch is either the mask's or the projection's
        let projection_only = epoch * steps >= mask_steps;
        if epoch * steps == mask_steps {
            // the first projection-only epoch
            opt.set_lr(MU_GROUP, 0.0);
            end_of_mask_steps.apply(&mask.mu, &proj, mu_sum.as_ref());
        }
        let epoch_steps = steps.min(total_steps - epoch * steps);
        let (mut a_sum, mut le_sum, mut li_sum) = (0.0, 0.0, 0.0);
        for step in 0..epoch_steps {
            let m = mask.values(true);
            let content = features * &m;
            let (users, items) = backbone.embeddings(&content);
            let batches: Vec<Batch> = env_positions
                .iter()
                .map(|pos| {
                    let picks: Vec<usize> = (0..cfg.batch_size).map(|_| pos[rng.gen_range(0..pos.len())]).collect();
                    make_batch(train, &picks, sampler, cfg.negatives, rng.gen(), device)
                })
                .collect();
            let (l_erm, l_irm) = objectives(&users, &items, &batches, (cfg.penalty, shape), &m, &proj);
            let (le, li) = (l_erm.double_value(&[]), l_irm.double_value(&[]));
            if !le.is_finite() || !li.is_finite() {
                return Err(Error::Diverged {
                    module: "mask".into(),
                    epoch,
                    step,
                    what: if le.is_finite() { "L_IRM".into() } else { "L_ERM".into() },
                });
            }
            let ([w_erm, w_irm], alpha) = match cfg.weighting {
                Weighting::Fixed => combination.weights(0.0, 0.0, 0.0, [le, li]),
                Weighting::Pareto => {
                    let params: Vec<&Tensor> = match (projection_only, train_projection) {
                        (true, _) => vec![&proj],
                        (false, true) => vec![&mask.mu, &proj],
                        (false, false) => vec![&mask.mu],
                    };
                    let g1 = Tensor::run_backward(&[&l_erm], &params, true, false);
                    let g2 = Tensor::run_backward(&[&l_irm], &params, true, false);
                    let dot = |a: &[Tensor], b: &[Tensor]| {
                        a.iter().zip(b).map(|(x, y)| (x * y).sum(Kind::Double).double_value(&[])).sum::<f64>()
                    };
                    combination.weights(dot(&g1, &g1), dot(&g1, &g2), dot(&g2, &g2), [le, li])
                }
            };
            opt.zero_grad();
            let mut total = l_erm * w_erm + l_irm * w_irm;
            if !projection_only {
                total += mask.mu.square().sum(Kind::Float) * cfg.reg_lambda;
            }
            total.backward();
            opt.step();
            if !projection_only {
                if let Some(norms) = row_norms.as_ref() {
                    rescale_rows(&proj, norms);
                }
                if let Some(sum) = mu_sum.as_mut() {
                    tch::no_grad(|| *sum += mask.mu.detach());
                }
            }
            a_sum += alpha;
            le_sum += le;
            li_sum += li;
            if signal::should_stop(stop) {
                return Err(Error::Interrupted(format!("mask learning stopped at epoch {epoch}, step {step}")));
            }
        }
        let mv: Vec<f32> = Vec::<f32>::try_from(mask.values(false).to_device(tch::Device::Cpu)).map_err(Error::from)?;
        let density = modalities
            .modalities()
            .iter()
            .enumerate()
            .map(|(k, md)| {
                let r = modalities.modality_range(k);
                (md.name.clone(), mv[r.clone()].iter().map(|&x| x as f64).sum::<f64>() / r.len().max(1) as f64)
            })
            .collect();
        let n = epoch_steps as f64;
        logs.push(MaskEpochLog {
            epoch,
            alpha: a_sum / n,
            loss_erm: le_sum / n,
            loss_irm: li_sum / n,
            density,
            projection_only,
        });
    }
    if total_steps == mask_steps {
        // no projection-only epochs: the mask's steps were the last
        end_of_mask_steps.apply(&mask.mu, &proj, mu_sum.as_ref());
    }
    Ok(logs)
}

/// The Euclidean norm of each row of `w` `[d, c]`, as `[d, 1]`.
fn row_norms_of(w: &Tensor) -> Tensor {
    w.square().sum_dim_intlist([1i64].as_slice(), true, Kind::Float).sqrt()
}

/// Scales each row of the variable `w` `[d, c]` in place to the norm in `norms` `[d, 1]`; a row
/// that has become 0 stays 0.
fn rescale_rows(w: &Tensor, norms: &Tensor) {
    tch::no_grad(|| {
        let now = row_norms_of(w);
        let factor = norms / now.clamp_min(1e-12);
        let mut w = w.shallow_clone();
        let _ = w.g_mul_(&factor);
    });
}

/// What happens once when the mask's steps end, whether projection-only epochs follow or not.
struct EndOfMaskSteps {
    /// The mask's steps, over which an averaged μ is taken.
    steps: usize,
    /// The planted mask's logits that replace μ (the `planted_logit` ablation).
    planted: Option<Vec<f32>>,
    /// The projection to restore (`restore_projection_after_mask`).
    pretrained_projection: Option<Tensor>,
}

impl EndOfMaskSteps {
    /// Sets μ's final value ([`finish_mask`], from the sum of its iterates when kept) and the
    /// projection's ([`restore_projection`]).
    fn apply(&self, mu: &Tensor, proj: &Tensor, mu_sum: Option<&Tensor>) {
        finish_mask(mu, mu_sum, self.steps, self.planted.as_deref());
        restore_projection(proj, self.pretrained_projection.as_ref());
    }
}

/// Ends the mask's steps: μ becomes the `planted` logits when given; otherwise, given the sum
/// of its iterates after each of its `steps` steps, their average; otherwise it keeps its last
/// value.
fn finish_mask(mu: &Tensor, mu_sum: Option<&Tensor>, steps: usize, planted: Option<&[f32]>) {
    let end = match (planted, mu_sum) {
        (Some(logits), _) => Tensor::from_slice(logits).to_device(mu.device()),
        (None, Some(sum)) => sum / steps as f64,
        (None, None) => return,
    };
    tch::no_grad(|| {
        let mut mu = mu.shallow_clone();
        mu.copy_(&end);
    });
}

/// The logits of the planted mask over `dim` feature columns (+`logit` on the `invariant`
/// ones, −`logit` elsewhere) when `logit` > 0 ([`MaskConfig::planted_logit`]); an error when
/// the dataset declares no invariant columns or one outside the features. The pipeline calls
/// it once when it checks a configuration, so that a dataset without them fails before any
/// training.
pub fn planted_mask_logits(logit: f64, invariant: Option<&[usize]>, dim: usize) -> Result<Option<Vec<f32>>> {
    if logit == 0.0 {
        return Ok(None);
    }
    let invariant = invariant.ok_or_else(|| {
        Error::config("mask.planted_logit", "needs the dataset's planted invariant dimensions (invariant_dims.json)")
    })?;
    if let Some(&c) = invariant.iter().find(|&&c| c >= dim) {
        return Err(Error::InvalidData(format!(
            "invariant_dims.json: column {c} is outside the {dim} feature columns"
        )));
    }
    let mut logits = vec![-logit as f32; dim];
    for &c in invariant {
        logits[c] = logit as f32;
    }
    Ok(Some(logits))
}

/// Copies `pretrained` back into the variable `proj`, when given.
fn restore_projection(proj: &Tensor, pretrained: Option<&Tensor>) {
    if let Some(w) = pretrained {
        tch::no_grad(|| {
            let mut proj = proj.shallow_clone();
            proj.copy_(w);
        });
    }
}

impl Validate for MaskConfig {
    /// Checks every field.
    fn validate(&self) -> Result<()> {
        let nonneg = |f: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!("mask.{f}"), format!("{v} is not a finite non-negative number")))
            }
        };
        nonneg("gate_sigma", self.gate_sigma)?;
        nonneg("irm_weight", self.irm_weight)?;
        nonneg("reg_lambda", self.reg_lambda)?;
        nonneg("planted_logit", self.planted_logit)?;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("mask.lr", "must be positive"));
        }
        if self.preference.iter().any(|p| !(p.is_finite() && *p > 0.0)) {
            return Err(Error::config("mask.preference", "both entries must be positive"));
        }
        for (f, v) in [("epochs", self.epochs), ("batch_size", self.batch_size), ("negatives", self.negatives)] {
            if v == 0 {
                return Err(Error::config(format!("mask.{f}"), "must be ≥ 1"));
            }
        }
        if !self.train_projection {
            if self.fix_projection_row_norms {
                return Err(Error::config(
                    "mask.fix_projection_row_norms",
                    "constrains a projection that trains; with mask.train_projection = false it is frozen already",
                ));
            }
            if self.restore_projection_after_mask {
                return Err(Error::config(
                    "mask.restore_projection_after_mask",
                    "restores a projection that trains; with mask.train_projection = false it never moves",
                ));
            }
        }
        if self.batch_size < 2 && matches!(self.penalty, PenaltyKind::Irmv1 | PenaltyKind::Irmv1Centered) {
            return Err(Error::config("mask.batch_size", "IRMv1's two-half estimator needs at least 2"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Tensor, Tensor, Tensor, Vec<Batch>) {
        tch::manual_seed(7);
        let users = Tensor::randn([3, 2], (Kind::Float, tch::Device::Cpu));
        let x = Tensor::randn([5, 3], (Kind::Float, tch::Device::Cpu));
        let proj = (Tensor::randn([3, 2], (Kind::Float, tch::Device::Cpu)) * 0.5).set_requires_grad(true);
        let b = |u: &[i64], p: &[i64], n: &[i64]| Batch {
            users: Tensor::from_slice(u),
            pos_items: Tensor::from_slice(p),
            neg_items: Tensor::from_slice(n).reshape([u.len() as i64, 1]),
        };
        let batches =
            vec![b(&[0, 1, 2, 0], &[0, 1, 2, 3], &[4, 3, 0, 2]), b(&[2, 1, 0, 1], &[4, 0, 1, 2], &[1, 2, 3, 0])];
        (users, x, proj, batches)
    }

    fn l_irm(users: &Tensor, x: &Tensor, proj: &Tensor, mu: &Tensor, batches: &[Batch], p: PenaltyKind) -> Tensor {
        l_irm_shaped(users, x, proj, mu, batches, (p, LossShape::Pointwise))
    }

    fn l_irm_shaped(
        users: &Tensor,
        x: &Tensor,
        proj: &Tensor,
        mu: &Tensor,
        batches: &[Batch],
        p: (PenaltyKind, LossShape),
    ) -> Tensor {
        let m = mu.sigmoid();
        let items = (x * &m).matmul(proj);
        objectives(users, &items, batches, p, &m, proj).1
    }

    #[test]
    fn penalty_gradients_agree_with_finite_differences() {
        let cases = [
            (PenaltyKind::Irmv1, LossShape::Pointwise),
            (PenaltyKind::Irmv1Centered, LossShape::Pointwise),
            (PenaltyKind::Variance, LossShape::Pointwise),
            (PenaltyKind::Irmv1Centered, LossShape::Pairwise),
            (PenaltyKind::Variance, LossShape::Pairwise),
        ];
        for p in cases {
            let (users, x, proj, batches) = toy();
            let mu = Tensor::from_slice(&[0.3f32, -0.2, 0.1]).set_requires_grad(true);
            let analytic: Vec<f32> = Vec::try_from(
                Tensor::run_backward(&[l_irm_shaped(&users, &x, &proj, &mu, &batches, p)], &[&mu], false, false)[0]
                    .shallow_clone(),
            )
            .unwrap();
            for (k, &a) in analytic.iter().enumerate() {
                let eps = 1e-2;
                let at = |d: f64| {
                    let shifted = (mu.detach()
                        + Tensor::from_slice(&[0.0f32, 0.0, 0.0]).index_fill(0, &Tensor::from_slice(&[k as i64]), d))
                    .set_requires_grad(false);
                    l_irm_shaped(&users, &x, &proj, &shifted, &batches, p).double_value(&[])
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                let a = a as f64;
                assert!(
                    (a - numeric).abs() <= 2e-2 * numeric.abs().max(1e-3),
                    "{p:?} dim {k}: autograd {a} vs finite difference {numeric}"
                );
            }
        }
    }

    #[test]
    fn the_pairwise_risk_is_the_mean_bpr_of_each_environment() {
        let (users, x, proj, batches) = toy();
        let m = Tensor::from_slice(&[0.3f32, -0.2, 0.1]).sigmoid();
        let items = (&x * &m).matmul(&proj);
        let shape = (PenaltyKind::Irmv1Centered, LossShape::Pairwise);
        let l_erm = objectives(&users, &items, &batches, shape, &m, &proj).0.double_value(&[]);
        // each environment's BPR −log σ(s⁺ − s⁻) over its rows, then the mean over environments
        let bpr: Vec<f64> = batches
            .iter()
            .map(|b| {
                let (sp, sn) = batch_scores(&users, &items, b);
                let (sp, sn) = (Vec::<f32>::try_from(sp).unwrap(), Vec::<f32>::try_from(sn.reshape([-1])).unwrap());
                sp.iter().zip(&sn).map(|(&p, &n)| (1.0 + ((n - p) as f64).exp()).ln()).sum::<f64>() / sp.len() as f64
            })
            .collect();
        let want = bpr.iter().sum::<f64>() / bpr.len() as f64;
        assert!((l_erm - want).abs() < 1e-5, "{l_erm} vs {want}");
        // and the risk choice follows the backbone only when asked to
        assert_eq!(RiskForm::Backbone.shape(LossShape::Pairwise), LossShape::Pairwise);
        assert_eq!(RiskForm::Backbone.shape(LossShape::Pointwise), LossShape::Pointwise);
        assert_eq!(RiskForm::Pointwise.shape(LossShape::Pairwise), LossShape::Pointwise);
        assert_eq!(RiskForm::Pairwise.shape(LossShape::Pointwise), LossShape::Pairwise);
    }

    #[test]
    fn fixed_row_norms_on_a_frozen_projection_are_rejected() {
        let cfg = MaskConfig { fix_projection_row_norms: true, train_projection: false, ..Default::default() };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mask.fix_projection_row_norms"), "{err}");
        assert!(MaskConfig { train_projection: true, ..cfg }.validate().is_ok());
    }

    #[test]
    fn the_planted_mask_is_the_declared_columns_and_needs_them() {
        assert_eq!(planted_mask_logits(0.0, None, 4).unwrap(), None);
        assert_eq!(planted_mask_logits(2.5, Some(&[0, 2]), 4).unwrap(), Some(vec![2.5, -2.5, 2.5, -2.5]));
        let missing = planted_mask_logits(4.0, None, 4).unwrap_err().to_string();
        assert!(missing.contains("mask.planted_logit") && missing.contains("invariant_dims.json"), "{missing}");
        let outside = planted_mask_logits(4.0, Some(&[1, 4]), 4).unwrap_err().to_string();
        assert!(outside.contains("column 4") && outside.contains("4 feature columns"), "{outside}");
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = MaskConfig { planted_logit: bad, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(err.contains("mask.planted_logit"), "{err}");
        }
    }

    #[test]
    fn restoring_a_frozen_projection_is_rejected() {
        let cfg = MaskConfig { restore_projection_after_mask: true, train_projection: false, ..Default::default() };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mask.restore_projection_after_mask"), "{err}");
        assert!(MaskConfig { train_projection: true, ..cfg }.validate().is_ok());
    }

    #[test]
    fn irmv1_over_all_environments_is_the_mean_of_each_environments_estimate() {
        let (users, x, proj, batches) = toy();
        let mu = Tensor::from_slice(&[0.3f32, -0.2, 0.1]);
        let items = (&x * mu.sigmoid()).matmul(&proj);
        let joint = l_irm(&users, &x, &proj, &mu, &batches, PenaltyKind::Irmv1).double_value(&[]);
        // each environment on its own: mean of its even rows' derivatives × mean of its odd rows'
        let each: Vec<f64> = batches
            .iter()
            .map(|b| {
                let (sp, sn) = batch_scores(&users, &items, b);
                let d = Vec::<f32>::try_from(crate::scale_derivatives(&sp, &sn)).unwrap();
                let half = |r: usize| {
                    let v: Vec<f64> = d.iter().skip(r).step_by(2).map(|&x| x as f64).collect();
                    v.iter().sum::<f64>() / v.len() as f64
                };
                half(0) * half(1)
            })
            .collect();
        let want = each.iter().sum::<f64>() / each.len() as f64;
        assert!((joint - want).abs() < 1e-6 * want.abs().max(1e-3), "{joint} vs {want}");
    }

    #[test]
    fn variance_penalty_vanishes_when_environments_hold_the_same_data() {
        let (users, x, proj, batches) = toy();
        let same = vec![
            Batch {
                users: batches[0].users.shallow_clone(),
                pos_items: batches[0].pos_items.shallow_clone(),
                neg_items: batches[0].neg_items.shallow_clone(),
            },
            Batch {
                users: batches[0].users.shallow_clone(),
                pos_items: batches[0].pos_items.shallow_clone(),
                neg_items: batches[0].neg_items.shallow_clone(),
            },
        ];
        let mu = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
        let v = l_irm(&users, &x, &proj, &mu, &same, PenaltyKind::Variance).double_value(&[]);
        assert!(v.abs() < 1e-10, "{v}");
        let different = l_irm(&users, &x, &proj, &mu, &batches, PenaltyKind::Variance).double_value(&[]);
        assert!(different > 1e-6, "{different}");
        // IRMv1 gives every copy the same penalty: the mean equals one environment's
        let one = l_irm(&users, &x, &proj, &mu, &same[..1], PenaltyKind::Irmv1).double_value(&[]);
        let two = l_irm(&users, &x, &proj, &mu, &same, PenaltyKind::Irmv1).double_value(&[]);
        assert!((one - two).abs() < 1e-9);
    }
}
