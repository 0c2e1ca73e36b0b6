//! What the mask and the environments did, in numbers a user can check in `report.json`: how far
//! the mask moved from ½, how the training risk differs across the inferred environments before
//! and after masking, and — when the dataset ships its ground truth (`train_env.tsv`,
//! `invariant_dims.json`) — how well the environments and the mask recover it.

use painvrl_core::metrics::{nmi, roc_auc};
use painvrl_core::{Backbone, Dataset, EnvironmentAssignment, Error, Interactions, Result};
use painvrl_data::{make_batch, NegativeSampler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::Tensor;

/// Diagnostics of an invariant run (empty for the other methods).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Standard deviation of the learned mask's weights.
    pub mask_sd: Option<f64>,
    /// Share of mask weights below 0.25.
    pub mask_share_below_0_25: Option<f64>,
    /// Share of mask weights above 0.75.
    pub mask_share_above_0_75: Option<f64>,
    /// Mean training loss of the pre-trained model on each environment's interactions, on the
    /// raw features.
    pub env_risk_before_mask: Vec<f64>,
    /// The same on the masked features (features × mask).
    pub env_risk_after_mask: Vec<f64>,
    /// Standard deviation of `env_risk_before_mask` across environments.
    pub env_risk_sd_before_mask: Option<f64>,
    /// Standard deviation of `env_risk_after_mask` across environments.
    pub env_risk_sd_after_mask: Option<f64>,
    /// Normalised mutual information between the inferred and the planted environments.
    pub env_nmi_vs_planted: Option<f64>,
    /// ROC-AUC of the mask's weights for the planted invariant dimensions (0.5: chance).
    pub mask_auc_vs_planted: Option<f64>,
    /// With a mask ensemble (`mask_ensemble` > 1) and planted dimensions: each member's own
    /// ROC-AUC, first member first — whether the members agree in the direction they rank.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask_auc_by_member: Vec<f64>,
    /// Validation metrics of the pre-trained model mask learning worked on, at the epoch its
    /// training restored.
    #[serde(default)]
    pub val_pretrained: BTreeMap<String, f64>,
    /// With `mask_pretrain_epochs`: validation metrics of the full pre-training, the model the
    /// final training's warm start copies instead (at the epoch its training restored).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub val_pretrained_for_final: BTreeMap<String, f64>,
    /// Validation metrics of the pre-trained model with its content projection as mask learning
    /// left it (trained with the mask, then alone, under `mask.train_projection`), on the raw
    /// features: the model the final training's warm start copies.
    #[serde(default)]
    pub val_after_mask_learning: BTreeMap<String, f64>,
    /// Validation metrics of the final model before its first step: with the warm start and
    /// `final_warm_start_scale = 1`, those of `val_after_mask_learning` (of
    /// `val_pretrained_for_final` with `mask_pretrain_epochs`).
    #[serde(default)]
    pub val_final_start: BTreeMap<String, f64>,
    /// Mean training loss of the final model on each environment of the final penalty, before
    /// its first step (with the warm start: the model mask learning leaves, content scaled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_env_risk_start: Vec<f64>,
    /// The same for the final model the training restored: how far the penalty pulled the
    /// environments' risks together, and which of them it moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_env_risk_end: Vec<f64>,
    /// Validation metrics of the final model served at each variant weight of
    /// [`VARIANT_WEIGHT_GRID`] (`inference_variant_weight`; attention and scalar fusion only).
    /// The weight does not change the training, so a run with the same seed and another
    /// weight serves that row's model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_by_variant_weight: Vec<VariantWeightValidation>,
    /// The variant weight γ chosen on validation under `variant_weight_tolerance`
    /// ([`choose_variant_weight`]); absent when γ was fixed by `inference_variant_weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_variant_weight: Option<f64>,
}

/// The variant weights γ at which [`Diagnostics::val_by_variant_weight`] validates the final
/// model.
pub const VARIANT_WEIGHT_GRID: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

/// The final model's validation metrics when served at one variant weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantWeightValidation {
    /// γ in h = β h_inv + γ (1 − β) h_var.
    pub variant_weight: f64,
    /// Metrics on the selection split (`select_on`), as the final training validates.
    pub val: BTreeMap<String, f64>,
    /// The same metrics on each environment's share of the selection split, when γ is chosen
    /// by the worse environment (`variant_weight_worst_environment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_by_environment: Vec<BTreeMap<String, f64>>,
}

/// The smallest variant weight among `rows` whose validation `metric` is at least
/// (1 − `tolerance`) × that of the row at γ = 1 (the model as trained, which always qualifies).
/// Errors when `rows` has no γ = 1 row or a row lacks `metric`.
pub fn choose_variant_weight(rows: &[VariantWeightValidation], metric: &str, tolerance: f64) -> Result<f64> {
    let value = |row: &VariantWeightValidation| metric_in(&row.val, metric);
    let as_trained = rows.iter().find(|row| row.variant_weight == 1.0).ok_or_else(|| {
        Error::config("variant_weight_tolerance", "the validation grid has no row at γ = 1 to compare with")
    })?;
    let floor = (1.0 - tolerance) * value(as_trained)?;
    let mut chosen = 1.0;
    for row in rows {
        if value(row)? >= floor && row.variant_weight < chosen {
            chosen = row.variant_weight;
        }
    }
    Ok(chosen)
}

/// The variant weight among `rows` whose validation `metric` is highest in the environment
/// where it is lowest (`val_by_environment`), the larger weight on ties (the nearer to the model
/// as trained). Errors when `rows` is empty, a row has no environments or lacks `metric`.
pub fn choose_variant_weight_by_worst_environment(rows: &[VariantWeightValidation], metric: &str) -> Result<f64> {
    let mut best: Option<(f64, f64)> = None;
    let mut by_weight: Vec<&VariantWeightValidation> = rows.iter().collect();
    by_weight.sort_by(|a, b| b.variant_weight.total_cmp(&a.variant_weight));
    for row in by_weight {
        if row.val_by_environment.is_empty() {
            return Err(Error::config(
                "variant_weight_worst_environment",
                format!("γ = {} was validated on no environment", row.variant_weight),
            ));
        }
        let mut worst = f64::INFINITY;
        for environment in &row.val_by_environment {
            worst = worst.min(metric_in(environment, metric)?);
        }
        if best.is_none_or(|(_, b)| worst > b) {
            best = Some((row.variant_weight, worst));
        }
    }
    best.map(|(gamma, _)| gamma)
        .ok_or_else(|| Error::config("variant_weight_worst_environment", "the validation grid has no variant weight"))
}

/// The selection metric `metric` among validation `values`; an error naming
/// `train.select_metric` when it is not there.
fn metric_in(values: &BTreeMap<String, f64>, metric: &str) -> Result<f64> {
    values
        .get(metric)
        .copied()
        .ok_or_else(|| Error::config("train.select_metric", format!("'{metric}' is not among the validation metrics")))
}

/// (sd, share < 0.25, share > 0.75) of mask weights.
pub fn mask_spread(mask: &[f32]) -> (f64, f64, f64) {
    let n = mask.len().max(1) as f64;
    let values: Vec<f64> = mask.iter().map(|&m| m as f64).collect();
    let share = |f: &dyn Fn(f32) -> bool| mask.iter().filter(|&&m| f(m)).count() as f64 / n;
    (sd(&values).unwrap_or(0.0), share(&|m| m < 0.25), share(&|m| m > 0.75))
}

/// Population standard deviation; `None` when empty.
fn sd(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    Some((xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

/// Mean training loss of `backbone` on `content` over (up to `per_env`) interactions of each
/// of the environments `envs` of `train`, with fixed negatives (`seed`), without gradients.
pub fn environment_risks(
    backbone: &dyn Backbone,
    content: &Tensor,
    train: &Interactions,
    envs: &EnvironmentAssignment,
    sampler: &NegativeSampler,
    per_env: usize,
    seed: u64,
) -> Vec<f64> {
    let (labels, n_envs) = (envs.labels.as_slice(), envs.sizes.len());
    let device = content.device();
    let k = backbone.negatives_per_positive();
    tch::no_grad(|| {
        (0..n_envs as u32)
            .map(|e| {
                let pos: Vec<usize> =
                    labels.iter().enumerate().filter(|(_, &l)| l == e).map(|(p, _)| p).take(per_env).collect();
                let (mut sum, mut n) = (0.0, 0usize);
                for chunk in pos.chunks(1024) {
                    let batch = make_batch(train, chunk, sampler, k, seed ^ e as u64, device);
                    sum += backbone.loss(&batch, content).double_value(&[]) * chunk.len() as f64;
                    n += chunk.len();
                }
                if n == 0 {
                    f64::NAN
                } else {
                    sum / n as f64
                }
            })
            .collect()
    })
}

/// Fills the diagnostics of an invariant run: the mask's spread, the risks per environment of
/// the pre-trained model before and after masking (`mask`: the learned weights `[d]`), and the
/// agreement with the planted truth.
pub fn invariant_run(
    ds: &Dataset,
    backbone: &dyn Backbone,
    features: &Tensor,
    mask: &Tensor,
    envs: &EnvironmentAssignment,
    sampler: &NegativeSampler,
    seed: u64,
) -> Result<Diagnostics> {
    let mask_values = Vec::<f32>::try_from(mask.to_device(tch::Device::Cpu))?;
    let mask_values = mask_values.as_slice();
    let (msd, low, high) = mask_spread(mask_values);
    let before = environment_risks(backbone, features, &ds.train, envs, sampler, 4096, seed);
    let masked = features * mask;
    let after = environment_risks(backbone, &masked, &ds.train, envs, sampler, 4096, seed);
    Ok(Diagnostics {
        mask_sd: Some(msd),
        mask_share_below_0_25: Some(low),
        mask_share_above_0_75: Some(high),
        env_risk_sd_before_mask: sd(&before),
        env_risk_sd_after_mask: sd(&after),
        env_risk_before_mask: before,
        env_risk_after_mask: after,
        env_nmi_vs_planted: ds.truth.train_envs.as_ref().map(|t| nmi(&envs.labels, t)),
        mask_auc_vs_planted: mask_auc_vs_planted(ds, mask_values),
        ..Default::default()
    })
}

/// ROC-AUC of mask weights for the dataset's planted invariant dimensions; `None` without
/// them, or when they are all or none of the dimensions.
pub fn mask_auc_vs_planted(ds: &Dataset, mask: &[f32]) -> Option<f64> {
    ds.truth
        .invariant_mask(ds.features.dim())
        .filter(|m| m.iter().any(|&x| x) && m.iter().any(|&x| !x))
        .map(|m| roc_auc(mask, &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_spread_by_hand() {
        // mean 0.5; deviations ±0.4, ±0.1 → sd = √((0.16·2 + 0.01·2) / 4) = √0.085
        let (sd, low, high) = mask_spread(&[0.1, 0.9, 0.4, 0.6]);
        assert!((sd - 0.085f64.sqrt()).abs() < 1e-6, "{sd}");
        assert_eq!((low, high), (0.25, 0.25));
        let (flat, l, h) = mask_spread(&[0.5; 8]);
        assert_eq!((flat, l, h), (0.0, 0.0, 0.0));
    }

    fn rows(values: &[(f64, f64)]) -> Vec<VariantWeightValidation> {
        values
            .iter()
            .map(|&(gamma, ndcg)| VariantWeightValidation {
                variant_weight: gamma,
                val: BTreeMap::from([("ndcg@20".to_string(), ndcg)]),
                val_by_environment: vec![],
            })
            .collect()
    }

    /// Rows of (γ, the metric in each environment).
    fn rows_by_environment(values: &[(f64, &[f64])]) -> Vec<VariantWeightValidation> {
        values
            .iter()
            .map(|&(gamma, per_env)| VariantWeightValidation {
                variant_weight: gamma,
                val: BTreeMap::from([("ndcg@20".to_string(), per_env.iter().sum::<f64>() / per_env.len() as f64)]),
                val_by_environment: per_env.iter().map(|&v| BTreeMap::from([("ndcg@20".to_string(), v)])).collect(),
            })
            .collect()
    }

    #[test]
    fn the_weight_best_in_its_worse_environment_is_chosen() {
        // worse environments: 0.10, 0.14, 0.15, 0.13, 0.12 → γ = ½, though γ = 1 has the best mean
        let grid = rows_by_environment(&[
            (0.0, &[0.10, 0.20]),
            (0.25, &[0.14, 0.22]),
            (0.5, &[0.15, 0.24]),
            (0.75, &[0.26, 0.13]),
            (1.0, &[0.30, 0.12]),
        ]);
        assert_eq!(choose_variant_weight_by_worst_environment(&grid, "ndcg@20").unwrap(), 0.5);
        // ties go to the larger weight, whatever the rows' order
        let tied = rows_by_environment(&[(1.0, &[0.2, 0.3]), (0.0, &[0.2, 0.4]), (0.5, &[0.25, 0.2])]);
        assert_eq!(choose_variant_weight_by_worst_environment(&tied, "ndcg@20").unwrap(), 1.0);
        let e = choose_variant_weight_by_worst_environment(&grid, "recall@20").unwrap_err().to_string();
        assert!(e.contains("recall@20") && e.contains("train.select_metric"), "{e}");
        let e = choose_variant_weight_by_worst_environment(&rows(&[(1.0, 0.2)]), "ndcg@20").unwrap_err().to_string();
        assert!(e.contains("variant_weight_worst_environment") && e.contains("no environment"), "{e}");
        assert!(choose_variant_weight_by_worst_environment(&[], "ndcg@20").is_err());
    }

    #[test]
    fn the_smallest_weight_within_the_tolerance_of_the_model_as_trained_is_chosen() {
        // γ = 1 validates at 0.200: a 2 % tolerance admits ≥ 0.196, 5 % admits ≥ 0.190
        let grid = rows(&[(0.0, 0.150), (0.25, 0.191), (0.5, 0.197), (0.75, 0.201), (1.0, 0.200)]);
        assert_eq!(choose_variant_weight(&grid, "ndcg@20", 0.02).unwrap(), 0.5);
        assert_eq!(choose_variant_weight(&grid, "ndcg@20", 0.05).unwrap(), 0.25);
        assert_eq!(choose_variant_weight(&grid, "ndcg@20", 0.3).unwrap(), 0.0);
        // no tolerance: the best on validation (0.75 beats 1)
        assert_eq!(choose_variant_weight(&grid, "ndcg@20", 0.0).unwrap(), 0.75);
        // a grid whose smaller weights all lose keeps the model as trained
        let falling = rows(&[(0.0, 0.1), (0.5, 0.15), (1.0, 0.2)]);
        assert_eq!(choose_variant_weight(&falling, "ndcg@20", 0.02).unwrap(), 1.0);
        // ties go to the smaller weight
        let flat = rows(&[(0.0, 0.2), (0.5, 0.2), (1.0, 0.2)]);
        assert_eq!(choose_variant_weight(&flat, "ndcg@20", 0.0).unwrap(), 0.0);
    }

    #[test]
    fn choosing_a_weight_without_the_reference_row_or_the_metric_is_an_error() {
        let no_reference = rows(&[(0.0, 0.1), (0.5, 0.2)]);
        let e = choose_variant_weight(&no_reference, "ndcg@20", 0.02).unwrap_err().to_string();
        assert!(e.contains("γ = 1"), "{e}");
        let grid = rows(&[(0.0, 0.1), (1.0, 0.2)]);
        let e = choose_variant_weight(&grid, "recall@20", 0.02).unwrap_err().to_string();
        assert!(e.contains("recall@20") && e.contains("train.select_metric"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn the_chosen_weight_qualifies_and_no_smaller_one_does(
            values in proptest::collection::vec(0.0f64..1.0, 5),
            tolerance in 0.0f64..0.99,
        ) {
            let grid = rows(&VARIANT_WEIGHT_GRID.iter().copied().zip(values.iter().copied()).collect::<Vec<_>>());
            let chosen = choose_variant_weight(&grid, "ndcg@20", tolerance).unwrap();
            let floor = (1.0 - tolerance) * values[4];
            let at = |gamma: f64| values[VARIANT_WEIGHT_GRID.iter().position(|&g| g == gamma).unwrap()];
            proptest::prop_assert!(at(chosen) >= floor);
            for &gamma in VARIANT_WEIGHT_GRID.iter().filter(|&&g| g < chosen) {
                proptest::prop_assert!(at(gamma) < floor, "γ = {} qualifies below {}", gamma, chosen);
            }
        }
    }
}
