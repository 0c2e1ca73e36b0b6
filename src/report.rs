//! What a run reports (`report.json`) and the evaluation protocol every run and every saved
//! model is measured with.

use crate::config::Config;
use painvrl_core::eval::{evaluate, evaluate_with_list_popularity, BlockScorer, EvalConfig};
use painvrl_core::{Dataset, DatasetCounts, Interactions, Modality, Result, SplitMetrics, UserItems};
use painvrl_mask::MaskEpochLog;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a run reports; written as `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `ok`, or `failed: <error>`.
    pub status: String,
    /// Method name.
    pub method: String,
    /// Backbone name.
    pub backbone: String,
    /// Dataset counts.
    pub dataset: DatasetCounts,
    /// `{split: {"recall@20": x, ...}}` for val, test and test_ood.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Users evaluated per split.
    pub users_evaluated: BTreeMap<String, usize>,
    /// `{split: x}`: the mean ln(1 + training count) of the items in the top-20 lists of each
    /// split's evaluated users ([`painvrl_core::list_popularity`]) — how popular what the model recommends
    /// is, which a test drawn against popularity rewards low.
    #[serde(default)]
    pub list_popularity: BTreeMap<String, f64>,
    /// Final learned mask, one weight per feature dimension in modality order (empty for ERM);
    /// with `conversion_mask = "binary"` the conversion uses its Otsu split.
    pub mask: Vec<f32>,
    /// Modalities in column order.
    pub modalities: Vec<Modality>,
    /// Interactions per environment (last round).
    pub environments: Vec<usize>,
    /// Interactions per environment of the final penalty when `final_environments` sets them
    /// apart from the mask's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_environments: Option<Vec<usize>>,
    /// Mean Pareto weight α on the ERM gradient per mask epoch.
    pub pareto: Vec<f64>,
    /// Mask-learning log.
    pub mask_log: Vec<MaskEpochLog>,
    /// Seconds per module and in total.
    pub timings: BTreeMap<String, f64>,
    /// Hyperparameters chosen on the selection split (`ease_lambda`, `knn_k`, `posthoc_beta`).
    #[serde(default)]
    pub selected: BTreeMap<String, f64>,
    /// What the mask and the environments did (invariant methods).
    #[serde(default)]
    pub diagnostics: crate::diagnostics::Diagnostics,
    /// The peak-memory estimate made before training.
    pub memory: crate::memory::MemoryEstimate,
    /// The configuration that ran.
    pub config: Config,
}

impl Report {
    /// An empty report of `cfg` on `ds` (status `ok`, no metrics yet).
    pub fn new(ds: &Dataset, cfg: &Config, backbone: &str, memory: crate::memory::MemoryEstimate) -> Self {
        Report {
            status: "ok".into(),
            method: cfg.method.name().into(),
            backbone: backbone.into(),
            dataset: ds.counts(),
            metrics: BTreeMap::new(),
            users_evaluated: BTreeMap::new(),
            list_popularity: BTreeMap::new(),
            mask: vec![],
            modalities: ds.features.modalities().to_vec(),
            environments: vec![],
            final_environments: None,
            pareto: vec![],
            mask_log: vec![],
            timings: BTreeMap::new(),
            selected: BTreeMap::new(),
            diagnostics: Default::default(),
            memory,
            config: cfg.clone(),
        }
    }

    /// Evaluates `scorer` on every split of the protocol ([`evaluate_splits`]) and records the
    /// metrics, the users evaluated and, from the same ranking, the popularity of their top-20
    /// lists.
    pub fn record_metrics(&mut self, scorer: &dyn BlockScorer, ds: &Dataset, eval: &EvalConfig) -> Result<()> {
        let popularity = ds.train.item_degrees(ds.n_items);
        let lists = Some((popularity.as_slice(), LIST_POPULARITY_K.min(ds.n_items)));
        for (name, relevant, seen) in protocol_splits(ds, ds.n_users) {
            let (m, p) = evaluate_with_list_popularity(scorer, &relevant, &[&seen], eval, lists)?;
            self.users_evaluated.insert(name.into(), m.users_evaluated);
            self.metrics.insert(name.into(), m.values);
            if let Some(p) = p {
                self.list_popularity.insert(name.into(), p);
            }
        }
        Ok(())
    }
}

/// The cut-off of [`Report::list_popularity`] (the catalogue's size when smaller).
pub const LIST_POPULARITY_K: usize = 20;

/// The evaluation protocol: val and val_ood (a subset of val, when present) exclude train; test
/// excludes train + val; test_ood (when present) excludes train + val + test. `n_users` may
/// exceed the dataset's (a saved model's).
pub fn evaluate_splits(
    scorer: &dyn BlockScorer,
    ds: &Dataset,
    n_users: usize,
    eval: &EvalConfig,
) -> Result<Vec<(&'static str, SplitMetrics)>> {
    protocol_splits(ds, n_users)
        .into_iter()
        .map(|(name, rel, seen)| Ok((name, evaluate(scorer, &rel, &[&seen], eval)?)))
        .collect()
}

/// The splits of the protocol ([`evaluate_splits`]): name, relevant items, items excluded.
fn protocol_splits(ds: &Dataset, n_users: usize) -> Vec<(&'static str, UserItems, UserItems)> {
    let idx = |lists: &[&Interactions]| UserItems::build(n_users, lists);
    let mut splits =
        vec![("val", idx(&[&ds.val]), idx(&[&ds.train])), ("test", idx(&[&ds.test]), idx(&[&ds.train, &ds.val]))];
    if let Some(ood) = &ds.test_ood {
        splits.push(("test_ood", idx(&[ood]), idx(&[&ds.train, &ds.val, &ds.test])));
    }
    if let Some(ood) = &ds.val_ood {
        splits.push(("val_ood", idx(&[ood]), idx(&[&ds.train])));
    }
    splits
}
