//! A trained run blended with EASE: `(1 − w)·z_model + w·z_EASE` per user
//! ([`StandardizedBlend`]), the weight `w` chosen on validation from a grid. On a data set where
//! the closed-form item–item model is the strongest in distribution, the blend keeps most of its
//! IID accuracy while the trained model's scores carry what it learned out of distribution; where
//! EASE is weak, validation keeps `w` near 0.
//!
//! The blend is saved as an ordinary embedding model, so `recommend`, `eval` and `--export` read
//! it unchanged: user `u`'s vector is `[(1 − w)/σ_u · p_u ; w/τ_u · x_u]` and item `i`'s is
//! `[q_i ; W[·, i]]`, with `p_u · q_i` the run's score (σ_u its standard deviation over the
//! catalogue), `x_u` the user's binary training history, `W` EASE's item–item weights (τ_u the
//! deviation of `x_u · W`). Its scores equal the blend's up to a per-user constant (the means),
//! so every user's ranking is the blend's; a new item's EASE block is zero (no co-occurrence).

use crate::bench::GridChoice;
use crate::config::Config;
use crate::recommender::{rewrite_model, ModelManifest, Recommender};
use crate::report::evaluate_splits;
use painvrl_baselines::{row_moments, ItemItem, StandardizedBlend};
use painvrl_core::eval::BlockScorer;
use painvrl_core::{Dataset, Error, Result, UserItems};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The default weight grid on EASE: 0, 0.1, …, 1.
pub fn default_weights() -> Vec<f64> {
    (0..=10).map(|k| k as f64 / 10.0).collect()
}

/// One weight of the grid with its metrics on every split of the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlendPoint {
    /// Weight on EASE.
    pub weight: f64,
    /// Split → metric → value.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

/// `blend.json`: what was blended, how the weight was chosen, and every weight's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlendReport {
    /// The run directory whose model was blended.
    pub source: PathBuf,
    /// The run's method.
    pub method: String,
    /// EASE's λ, chosen on the selection split.
    pub ease_lambda: f64,
    /// The rule that chose the weight (validation only).
    pub choice: String,
    /// The chosen weight on EASE.
    pub weight: f64,
    /// Every weight of the grid, ascending.
    pub points: Vec<BlendPoint>,
}

impl BlendReport {
    /// The chosen point.
    pub fn chosen(&self) -> Option<&BlendPoint> {
        self.points.iter().find(|p| p.weight == self.weight)
    }
}

/// How `choice` chooses the blend's weight, in one sentence (`blend.json`'s `choice`).
pub fn describe_choice(choice: GridChoice, cfg: &Config) -> String {
    choice.describe_choosing("the weight on EASE", "the best", cfg)
}

/// Fits EASE for each λ of `cfg.baselines.ease_lambda` and keeps the best by
/// `train.select_metric` on `relevant` (the selection split; `train` items excluded). Ties keep
/// the earlier λ of the list; at most two EASE matrices (the best so far and the next) are held
/// at a time.
pub fn ease_on_validation(
    ds: &Dataset,
    cfg: &Config,
    train: &UserItems,
    relevant: &UserItems,
    device: Device,
) -> Result<(f64, ItemItem)> {
    let limit = crate::baselines::memory_limit(cfg, device);
    let mut best: Option<(f64, f64, ItemItem)> = None;
    for &lambda in &cfg.baselines.ease_lambda {
        let model = ItemItem::ease(train, ds.n_items, lambda, device, limit)?;
        let score = if cfg.baselines.ease_lambda.len() > 1 {
            crate::baselines::selection_score(&model, relevant, train, cfg)?
        } else {
            0.0
        };
        if best.as_ref().is_none_or(|(_, b, _)| score > *b) {
            best = Some((lambda, score, model));
        }
    }
    best.map(|(lambda, _, model)| (lambda, model))
        .ok_or_else(|| Error::config("baselines.ease_lambda", "give at least one value"))
}

/// Checks a weight grid: at least one weight, each in [0, 1]; returns it sorted, duplicates dropped.
pub fn checked_weights(weights: &[f64]) -> Result<Vec<f64>> {
    if weights.is_empty() {
        return Err(Error::config("weights", "give at least one weight on EASE"));
    }
    if let Some(w) = weights.iter().find(|w| !(0.0..=1.0).contains(*w)) {
        return Err(Error::config("weights", format!("{w} is not in [0, 1]")));
    }
    let mut sorted = weights.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    Ok(sorted)
}

/// Blends the model saved in `run_dir` (trained on `ds`, OOD sets prepared as for training)
/// with EASE at every weight of `weights`, chooses one by `choice` on validation, and writes
/// into `out` the blended model (`model.json` last, its method `<method>+ease`) and
/// `blend.json`. Refuses an `out` that holds a model, a run trained on another catalogue, a
/// nonsense weight, and the tolerance rule on a dataset without `val_ood`, before any work.
pub fn blend_run(
    run_dir: &Path,
    ds: &Dataset,
    cfg: &Config,
    weights: &[f64],
    choice: GridChoice,
    out: &Path,
) -> Result<BlendReport> {
    if out.join("model.json").exists() {
        return Err(Error::config("out", format!("{} already holds a model; choose another directory", out.display())));
    }
    let (report, model, ease) = evaluate_blends(run_dir, ds, cfg, weights, choice)?;
    let (users, items) = blended_embeddings(&model, &ease, report.weight, ds.n_users)?;
    let (n_items, weight) = (ds.n_items, report.weight);
    let sidecar = serde_json::to_value(&report).map_err(|e| Error::InvalidData(e.to_string()))?;
    rewrite_model(run_dir, out, ("blend.json", sidecar), |old_users, old_items, manifest| {
        (*old_users, *old_items) = (users, items);
        manifest.method = format!("{}+ease", manifest.method);
        if weight > 0.0 {
            manifest.dim += n_items;
            if let Some(c) = manifest.cold_start.as_mut() {
                c.trailing_zeros += n_items;
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// What [`blend_run`] measures, without saving a model: every weight's metrics and the chosen
/// weight (`painvrl bench --blend-ease` records this for each trained run).
pub fn blend_report(
    run_dir: &Path,
    ds: &Dataset,
    cfg: &Config,
    weights: &[f64],
    choice: GridChoice,
) -> Result<BlendReport> {
    Ok(evaluate_blends(run_dir, ds, cfg, weights, choice)?.0)
}

/// Evaluates the blends on `cfg.device` and chooses the weight; returns the run's scorer and
/// EASE with them.
fn evaluate_blends(
    run_dir: &Path,
    ds: &Dataset,
    cfg: &Config,
    weights: &[f64],
    choice: GridChoice,
) -> Result<(BlendReport, painvrl_core::EmbeddingScorer, ItemItem)> {
    let weights = checked_weights(weights)?;
    if matches!(choice, GridChoice::OodWithinTolerance(_)) && ds.val_ood.is_none() {
        return Err(Error::config(
            "iid_tolerance",
            "the tolerance rule reads the OOD validation slice and this dataset has none (ood.val_slice)",
        ));
    }
    let device = cfg.device.resolve()?;
    let run = Recommender::load(run_dir, device)?;
    check_catalogue(run.manifest(), ds, run_dir)?;
    let model = run.scorer();
    let train = UserItems::build(ds.n_users, &[&ds.train]);
    let relevant = UserItems::build(ds.n_users, &[cfg.select_on.interactions(ds)?]);
    let (ease_lambda, ease) = ease_on_validation(ds, cfg, &train, &relevant, device)?;
    let mut points = Vec::with_capacity(weights.len());
    for &weight in &weights {
        let blend = StandardizedBlend::new(&model, &ease, weight)?;
        let metrics = evaluate_splits(&blend, ds, ds.n_users, &cfg.train.eval)?
            .into_iter()
            .map(|(split, m)| (split.to_string(), m.values))
            .collect();
        points.push(BlendPoint { weight, metrics });
    }
    let metric = &cfg.train.select_metric;
    let read = |p: &BlendPoint, split: &str| p.metrics.get(split).and_then(|m| m.get(metric)).copied();
    let gate = choice.gate_split(cfg);
    let scored: Vec<(f64, Option<f64>)> =
        points.iter().map(|p| (read(p, gate).unwrap_or(f64::NEG_INFINITY), read(p, "val_ood"))).collect();
    let k = choice.pick(&scored).ok_or_else(|| {
        Error::config("train.select_metric", format!("'{metric}' is not among the evaluated metrics"))
    })?;
    let report = BlendReport {
        source: run_dir.to_path_buf(),
        method: run.manifest().method.clone(),
        ease_lambda,
        choice: describe_choice(choice, cfg),
        weight: points[k].weight,
        points,
    };
    Ok((report, model, ease))
}

fn check_catalogue(manifest: &ModelManifest, ds: &Dataset, run_dir: &Path) -> Result<()> {
    if manifest.n_items != ds.n_items || manifest.n_users != ds.n_users {
        return Err(Error::InvalidData(format!(
            "the model in {} has {} users × {} items, the dataset {} × {}: blend a run with the data it was trained on",
            run_dir.display(),
            manifest.n_users,
            manifest.n_items,
            ds.n_users,
            ds.n_items
        )));
    }
    Ok(())
}

/// The blend at `weight` as user and item vectors (see the module's documentation); at weight 0
/// the model's own vectors, scaled per user.
fn blended_embeddings(
    model: &painvrl_core::EmbeddingScorer,
    ease: &ItemItem,
    weight: f64,
    n_users: usize,
) -> Result<(Tensor, Tensor)> {
    const BLOCK: i64 = 1024;
    tch::no_grad(|| {
        let mut user_blocks = Vec::new();
        for start in (0..n_users as i64).step_by(BLOCK as usize) {
            let ids = Tensor::arange_start(start, (start + BLOCK).min(n_users as i64), (Kind::Int64, model.device()));
            let (_, model_sd) = row_moments(&model.score_block(&ids));
            let own = model.users.index_select(0, &ids) / model_sd * (1.0 - weight);
            user_blocks.push(if weight > 0.0 {
                let (_, ease_sd) = row_moments(&ease.score_block(&ids));
                Tensor::f_cat(&[own, ease.histories(&ids) / ease_sd * weight], 1)?
            } else {
                own
            });
        }
        let items = if weight > 0.0 {
            Tensor::f_cat(&[model.items.shallow_clone(), ease.weights().tr()], 1)?
        } else {
            model.items.shallow_clone()
        };
        Ok((Tensor::f_cat(&user_blocks, 0)?, items.contiguous()))
    })
}
