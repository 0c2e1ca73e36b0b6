//! The reference methods inside the pipeline: the item–item models (popularity, EASE, ItemKNN)
//! run in closed form with their grid chosen on validation, and the post-hoc popularity
//! adjustment picks its β on validation for any trained scorer. PD trains through the ordinary
//! backbone path (`backbone.pd_gamma`).

use crate::config::{Config, Method};
use crate::memory::MemoryEstimate;
use crate::report::Report;
use painvrl_baselines::{item_item_bytes, ItemItem, Popularity, PopularityAdjusted};
use painvrl_core::eval::{evaluate, BlockScorer};
use painvrl_core::io::write_json_atomic;
use painvrl_core::{Dataset, Error, Result, UserItems};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The selection metric of `scorer` (the trainer's `train.select_metric`, e.g. `ndcg@20`) on the
/// selection split: `relevant` holds its items per user, `train` the excluded training items.
pub(crate) fn selection_score(
    scorer: &dyn BlockScorer,
    relevant: &UserItems,
    train: &UserItems,
    cfg: &Config,
) -> Result<f64> {
    let m = evaluate(scorer, relevant, &[train], &cfg.train.eval)?;
    m.values.get(&cfg.train.select_metric).copied().ok_or_else(|| {
        Error::config(
            "train.select_metric",
            format!("'{}' is not among the evaluated metrics", cfg.train.select_metric),
        )
    })
}

/// Memory available for the item–item matrices, in bytes (see [`crate::memory::available_mb`]).
pub(crate) fn memory_limit(cfg: &Config, device: tch::Device) -> Option<u64> {
    crate::memory::available_mb(cfg, device).map(|mb| (mb * (1u64 << 20) as f64) as u64)
}

/// Runs popularity, EASE or ItemKNN on `ds`: each value of its grid is fitted and scored on the
/// selection split, the best is evaluated on every split. Writes `report.json` to `out` when
/// given (these models save no embeddings: `recommend` needs an embedding model).
pub fn run_item_item(ds: &Dataset, cfg: &Config, out: Option<&Path>) -> Result<Report> {
    cfg.validate(ds.n_items)?;
    ds.validate()?;
    let t_all = Instant::now();
    let device = cfg.device.resolve()?;
    painvrl_core::init_runtime(cfg.threads, cfg.seed);
    let train = UserItems::build(ds.n_users, &[&ds.train]);
    let relevant = UserItems::build(ds.n_users, &[cfg.select_on.interactions(ds)?]);
    let limit = memory_limit(cfg, device);
    let mut selected = BTreeMap::new();
    let mut candidates: Vec<(String, f64, Box<dyn BlockScorer>)> = Vec::new();
    match cfg.method {
        Method::Popularity => {
            candidates.push((String::new(), 0.0, Box::new(Popularity::fit(&train, ds.n_items, device))))
        }
        Method::Ease => {
            let (lambda, model) = crate::blend::ease_on_validation(ds, cfg, &train, &relevant, device)?;
            candidates.push(("ease_lambda".into(), lambda, Box::new(model)));
        }
        Method::Itemknn => {
            for &k in &cfg.baselines.knn_k {
                let m = ItemItem::item_knn(&train, ds.n_items, k, device, limit)?;
                candidates.push(("knn_k".into(), k as f64, Box::new(m)));
            }
        }
        other => return Err(Error::config("method", format!("'{}' is not an item–item method", other.name()))),
    }
    // best on the selection split; ties keep the first (the smaller value of the grid)
    let mut best: Option<(usize, f64)> = None;
    for (k, (_, _, scorer)) in candidates.iter().enumerate() {
        let score = if candidates.len() > 1 { selection_score(scorer.as_ref(), &relevant, &train, cfg)? } else { 0.0 };
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((k, score));
        }
    }
    let (k, _) = best.expect("at least one candidate");
    let (name, value, scorer) = &candidates[k];
    if !name.is_empty() {
        selected.insert(name.clone(), *value);
    }
    let mut report = Report::new(ds, cfg, cfg.method.name(), item_item_memory(ds.n_items));
    report.selected = selected;
    report.record_metrics(scorer.as_ref(), ds, &cfg.train.eval)?;
    report.timings.insert("total".into(), t_all.elapsed().as_secs_f64());
    if let Some(dir) = out {
        write_json_atomic(&dir.join("report.json"), &report)?;
    }
    Ok(report)
}

fn item_item_memory(n_items: usize) -> MemoryEstimate {
    let mb = item_item_bytes(n_items) as f64 / (1u64 << 20) as f64;
    MemoryEstimate {
        features_mb: 0.0,
        parameters_mb: mb,
        activations_mb: 0.0,
        environments_mb: 0.0,
        evaluation_mb: 0.0,
        total_mb: mb,
    }
}

/// Chooses the post-hoc adjustment's β for `scorer` on the selection split (`relevant`, with
/// the `train` items excluded; ties keep the smaller β) and returns it with the training
/// popularity it adjusts by.
pub fn choose_posthoc_beta(
    scorer: &dyn BlockScorer,
    ds: &Dataset,
    cfg: &Config,
    relevant: &UserItems,
    train: &UserItems,
) -> Result<(f64, Vec<u32>)> {
    let pop = ds.train.item_degrees(ds.n_items);
    let mut betas = cfg.baselines.posthoc_beta.clone();
    betas.sort_by(f64::total_cmp);
    let mut best = (betas[0], f64::NEG_INFINITY);
    for &beta in &betas {
        let s = selection_score(&PopularityAdjusted::new(scorer, &pop, beta)?, relevant, train, cfg)?;
        if s > best.1 {
            best = (beta, s);
        }
    }
    Ok((best.0, pop))
}
