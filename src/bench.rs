//! The experiment runner behind `painvrl bench`: every dataset × method × grid point × seed as
//! its own run directory (finished runs are skipped, interrupted ones resumed), the grid point of
//! each method chosen on validation only, and the results as `results.json`, `results.md` (mean ±
//! sd over seeds, paired differences to a reference method with 95 % intervals, every row's
//! Recall@20 as a share of the strongest baseline's) and `front.svg`.

use crate::config::{Config, Method};
use crate::pipeline::{finished_or_run, RunOrigin};
use painvrl_core::io::{write_atomic, write_json_atomic};
use painvrl_core::{Dataset, Error, Result};
use painvrl_graph::BackboneKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One method of a benchmark: a [`Method`], optionally on a backbone other than the
/// configuration's (`erm@lightgcn`, `pd@mf`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodSpec {
    /// The method.
    pub method: Method,
    /// The backbone, when it overrides the configuration's.
    pub backbone: Option<BackboneKind>,
}

impl MethodSpec {
    /// The name in tables and run directories (`erm`, `erm@lightgcn`).
    pub fn label(&self) -> String {
        match self.backbone {
            None => self.method.name().into(),
            Some(b) => format!("{}@{}", self.method.name(), b.name()),
        }
    }

    /// `base` with this method (and backbone) set.
    pub fn apply(&self, base: &Config) -> Config {
        let mut c = base.clone();
        c.method = self.method;
        if let Some(b) = self.backbone {
            c.backbone.kind = b;
        }
        c
    }
}

impl std::str::FromStr for MethodSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (m, b) = match s.split_once('@') {
            Some((m, b)) => (m, Some(b.parse::<BackboneKind>()?)),
            None => (s, None),
        };
        Ok(MethodSpec { method: m.trim().parse()?, backbone: b })
    }
}

/// One axis of a grid: a configuration key (TOML path, `baselines.pd_gamma`) and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct GridAxis {
    /// Dotted configuration key.
    pub key: String,
    /// Values as TOML scalars.
    pub values: Vec<toml::Value>,
}

impl std::str::FromStr for GridAxis {
    type Err = Error;
    /// Parses `key=v1,v2,…`; each value is read as a TOML scalar (integer, float, boolean) or
    /// else as a string.
    fn from_str(s: &str) -> Result<Self> {
        let (key, vals) =
            s.split_once('=').ok_or_else(|| Error::config("--grid", format!("'{s}' is not of the form key=v1,v2")))?;
        let values: Vec<toml::Value> = vals
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                toml::from_str::<BTreeMap<String, toml::Value>>(&format!("x = {v}"))
                    .ok()
                    .and_then(|mut m| m.remove("x"))
                    .unwrap_or_else(|| toml::Value::String(v.to_string()))
            })
            .collect();
        if key.trim().is_empty() || values.is_empty() {
            return Err(Error::config("--grid", format!("'{s}' names no key or no values")));
        }
        Ok(GridAxis { key: key.trim().to_string(), values })
    }
}

/// A point of the grid: key → value, in axis order.
pub type GridPoint = Vec<(String, toml::Value)>;

/// Every combination of the axes (one empty point when there are none).
pub fn grid_points(axes: &[GridAxis]) -> Vec<GridPoint> {
    let mut points: Vec<GridPoint> = vec![vec![]];
    for axis in axes {
        points = points
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((axis.key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    points
}

/// The grid point's label in tables and directory names (`default` when empty).
pub fn point_label(point: &GridPoint) -> String {
    if point.is_empty() {
        return "default".into();
    }
    point.iter().map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"'))).collect::<Vec<_>>().join(",")
}

/// `cfg` with the grid point's keys set; an unknown key or a value of the wrong type is an error
/// naming the key.
pub fn apply_point(cfg: &Config, point: &GridPoint) -> Result<Config> {
    let mut value = toml::Value::try_from(cfg).map_err(|e| Error::config("config", e.to_string()))?;
    for (key, v) in point {
        let mut node = &mut value;
        let parts: Vec<&str> = key.split('.').collect();
        for (depth, part) in parts.iter().enumerate() {
            let table = node.as_table_mut().ok_or_else(|| Error::config(key.clone(), "is not a configuration key"))?;
            if depth + 1 == parts.len() {
                // a scalar for a list-valued key (a grid of its own, e.g. baselines.posthoc_beta)
                // fixes that list to the one value: one grid point per value
                let v = match table.get(*part) {
                    Some(old) if old.is_array() && !v.is_array() => toml::Value::Array(vec![v.clone()]),
                    Some(_) => v.clone(),
                    // an unset optional key (`final_environments`) is absent from the table
                    None if is_optional_key(&parts, v) => v.clone(),
                    None => return Err(Error::config(key.clone(), "is not a configuration key")),
                };
                table.insert(part.to_string(), v);
                break;
            }
            node = table.get_mut(*part).ok_or_else(|| Error::config(key.clone(), "is not a configuration key"))?;
        }
    }
    value.try_into().map_err(|e: toml::de::Error| Error::config(point_label(point), e.message().to_string()))
}

/// Whether `parts` names a key a configuration leaves out of its TOML while unset (an optional
/// one, such as `final_environments`): set to `v` in the default configuration, it is not
/// refused as an unknown field (a value of the wrong type is reported when the point is applied).
fn is_optional_key(parts: &[&str], v: &toml::Value) -> bool {
    let Ok(mut probe) = toml::Value::try_from(Config::default()) else { return false };
    let mut node = &mut probe;
    for part in &parts[..parts.len() - 1] {
        match node.as_table_mut().and_then(|t| t.get_mut(*part)) {
            Some(next) => node = next,
            None => return false,
        }
    }
    let Some(table) = node.as_table_mut() else { return false };
    table.insert(parts[parts.len() - 1].to_string(), v.clone());
    match probe.try_into::<Config>() {
        Ok(_) => true,
        Err(e) => !e.message().contains("unknown field"),
    }
}

/// One finished run of the benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Dataset name (directory name).
    pub dataset: String,
    /// Method label.
    pub method: String,
    /// Grid point label.
    pub point: String,
    /// Training seed.
    pub seed: u64,
    /// `{split: {metric: value}}` from the run's report.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Hyperparameters the method chose on validation itself.
    pub selected: BTreeMap<String, f64>,
    /// Seconds the run took.
    pub seconds: f64,
}

impl RunResult {
    /// A metric of a split, when reported.
    pub fn get(&self, split: &str, metric: &str) -> Option<f64> {
        self.metrics.get(split).and_then(|m| m.get(metric)).copied()
    }
}

/// What `painvrl bench` runs.
pub struct BenchPlan {
    /// Datasets, loaded and with their OOD sets prepared, with their names.
    pub datasets: Vec<(String, Dataset)>,
    /// Methods.
    pub methods: Vec<MethodSpec>,
    /// Training seeds `0..seeds`.
    pub seeds: u64,
    /// The grid (empty: the configuration alone).
    pub grid: Vec<GridAxis>,
    /// The base configuration.
    pub base: Config,
    /// Output directory.
    pub out: PathBuf,
    /// The method every other is compared with (paired over seeds).
    pub reference: Option<String>,
    /// How each method's grid point is chosen (on validation only).
    pub choice: GridChoice,
    /// Also blend every trained run with EASE ([`crate::blend`], weight chosen per run by
    /// `choice`) and report it as the method `<label>+ease`.
    pub blend_ease: bool,
}

/// How `painvrl bench` chooses each (dataset, method)'s grid point; both read validation only.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum GridChoice {
    /// The best mean `train.select_metric` on the selection split (`select_on`).
    #[default]
    BestValidation,
    /// Among the points whose mean `select_metric` on `val` is at least (1 − tolerance) times
    /// the method's best, the one with the best mean of the same metric on the OOD validation
    /// slice `val_ood`: `painvrl pareto`'s operating-point rule applied to a grid.
    OodWithinTolerance(f64),
}

impl GridChoice {
    /// The index of the point this rule chooses among `points`, each given as its `select_metric`
    /// on the selection split (for [`GridChoice::BestValidation`]; `val` for the tolerance rule)
    /// and on `val_ood`; ties keep the first point. `None` when no point qualifies (the tolerance
    /// rule without any `val_ood` score).
    pub fn pick(&self, points: &[(f64, Option<f64>)]) -> Option<usize> {
        let argmax = |scored: &mut dyn Iterator<Item = (usize, f64)>| {
            scored.filter(|(_, v)| !v.is_nan()).fold(None, |best: Option<(usize, f64)>, (k, v)| match best {
                Some((_, b)) if v <= b => best,
                _ => Some((k, v)),
            })
        };
        match *self {
            GridChoice::BestValidation => argmax(&mut points.iter().map(|p| p.0).enumerate()).map(|(k, _)| k),
            GridChoice::OodWithinTolerance(tolerance) => {
                let best_val = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
                let admitted = points
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.0 >= (1.0 - tolerance) * best_val)
                    .filter_map(|(k, p)| p.1.map(|ood| (k, ood)));
                argmax(&mut admitted.into_iter()).map(|(k, _)| k)
            }
        }
    }

    /// The split whose `select_metric` is the first score [`GridChoice::pick`] reads: the
    /// selection split for the best on validation, `val` (the gate) for the tolerance rule.
    pub fn gate_split(&self, base: &Config) -> &'static str {
        match self {
            GridChoice::BestValidation => base.select_on.split(),
            GridChoice::OodWithinTolerance(_) => "val",
        }
    }

    /// One sentence for `results.md` and `results.json`.
    pub fn describe(&self, base: &Config) -> String {
        self.describe_choosing("grid points", "the best mean", base)
    }

    /// One sentence saying how `what` is chosen, its score named `best` (e.g. "the best mean").
    pub fn describe_choosing(&self, what: &str, best: &str, base: &Config) -> String {
        let metric = &base.train.select_metric;
        match self {
            GridChoice::BestValidation => {
                format!("{what} chosen by {best} {metric} on {}", base.select_on.split())
            }
            GridChoice::OodWithinTolerance(t) => format!(
                "{what} chosen by {best} {metric} on val_ood among those within {:.1} % of the best on val",
                t * 100.0
            ),
        }
    }
}

/// Mean and sample standard deviation.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n;
    let v = if xs.len() > 1 { xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (m, v.sqrt())
}

/// Two-sided 97.5 % quantile of Student's t with `df` degrees of freedom (table for df ≤ 30,
/// the normal quantile beyond).
pub fn t_quantile_975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => T[d - 1],
        _ => 1.960,
    }
}

/// Mean paired difference `a − b` over matched seeds and its 95 % t-interval half-width.
pub fn paired_difference(a: &[f64], b: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (m, sd) = mean_sd(&d);
    (m, t_quantile_975(d.len().saturating_sub(1)) * sd / (d.len() as f64).sqrt())
}

fn run_dir(out: &Path, dataset: &str, method: &str, point: &str, seed: u64) -> PathBuf {
    let safe = |s: &str| s.replace(['/', ' '], "_");
    out.join("runs").join(safe(dataset)).join(safe(method)).join(safe(point)).join(format!("seed-{seed}"))
}

/// Runs the plan (skipping finished runs, resuming interrupted ones) and writes the results.
pub fn run(plan: &BenchPlan) -> Result<Vec<RunResult>> {
    let points = grid_points(&plan.grid);
    let total = plan.datasets.len() * plan.methods.len() * points.len() * plan.seeds as usize;
    let mut results = Vec::with_capacity(total);
    let mut k = 0;
    let started = Instant::now();
    for (name, ds) in &plan.datasets {
        for spec in &plan.methods {
            for point in &points {
                let cfg = apply_point(&spec.apply(&plan.base), point)?;
                cfg.validate(ds.n_items)?;
                for seed in 0..plan.seeds {
                    k += 1;
                    let label = point_label(point);
                    let dir = run_dir(&plan.out, name, &spec.label(), &label, seed);
                    let (report, origin) = finished_or_run(ds, &Config { seed, ..cfg.clone() }, &dir)?;
                    let status = match origin {
                        RunOrigin::DoneBefore => "done before",
                        RunOrigin::Resumed => "resumed",
                        RunOrigin::Ran => "ran",
                    };
                    let r = RunResult {
                        dataset: name.clone(),
                        method: spec.label(),
                        point: label.clone(),
                        seed,
                        metrics: report.metrics,
                        selected: report.selected,
                        seconds: report.timings.get("total").copied().unwrap_or(f64::NAN),
                    };
                    eprintln!(
                        "[{k}/{total}, {:.0} s] {name} {} {label} seed {seed}: {status}, recall@20 test {:.4} / test_ood {:.4}",
                        started.elapsed().as_secs_f64(),
                        spec.label(),
                        r.get("test", "recall@20").unwrap_or(f64::NAN),
                        r.get("test_ood", "recall@20").unwrap_or(f64::NAN),
                    );
                    results.push(r);
                    if plan.blend_ease && dir.join("model.json").exists() {
                        let b = blended(ds, &Config { seed, ..cfg.clone() }, &dir, plan.choice)?;
                        eprintln!(
                            "  + EASE at weight {}: recall@20 test {:.4} / test_ood {:.4}",
                            b.selected.get("blend_weight").copied().unwrap_or(f64::NAN),
                            b.get("test", "recall@20").unwrap_or(f64::NAN),
                            b.get("test_ood", "recall@20").unwrap_or(f64::NAN),
                        );
                        results.push(RunResult {
                            dataset: name.clone(),
                            method: format!("{}+ease", spec.label()),
                            point: label.clone(),
                            seed,
                            ..b
                        });
                    }
                    // the summary so far, so that an interrupted benchmark still leaves its tables
                    write_results(plan, &results)?;
                }
            }
        }
    }
    if results.is_empty() {
        return Err(Error::config("bench", "nothing to run: no dataset, method or seed"));
    }
    // the results files were written after the last run
    Ok(results)
}

/// The run in `dir` blended with EASE as a result (dataset, method, point and seed left to the
/// caller): `blend-ease.json` in the run directory when it was written under the same rule, else
/// measured now and written there.
fn blended(ds: &Dataset, cfg: &Config, dir: &Path, choice: GridChoice) -> Result<RunResult> {
    let path = dir.join("blend-ease.json");
    let earlier: Option<crate::blend::BlendReport> =
        std::fs::read_to_string(&path).ok().and_then(|text| serde_json::from_str(&text).ok());
    let started = Instant::now();
    let report = match earlier {
        Some(r) if r.choice == crate::blend::describe_choice(choice, cfg) => r,
        _ => {
            let r = crate::blend::blend_report(dir, ds, cfg, &crate::blend::default_weights(), choice)?;
            painvrl_core::io::write_json_atomic(&path, &r)?;
            r
        }
    };
    let chosen = report.chosen().ok_or_else(|| Error::InvalidData(format!("{}: no chosen weight", path.display())))?;
    Ok(RunResult {
        dataset: String::new(),
        method: String::new(),
        point: String::new(),
        seed: cfg.seed,
        metrics: chosen.metrics.clone(),
        selected: [("blend_weight".to_string(), report.weight), ("ease_lambda".to_string(), report.ease_lambda)].into(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The grid point of each (dataset, method), chosen by `choice` from means over seeds.
pub fn chosen_points(results: &[RunResult], base: &Config, choice: GridChoice) -> BTreeMap<(String, String), String> {
    let metric = &base.train.select_metric;
    let gate = choice.gate_split(base);
    // the seeds' scores of one grid point on the gate split and on val_ood
    type SeedScores = (Vec<f64>, Vec<f64>);
    // (dataset, method) → grid point → its seeds' scores
    let mut by: BTreeMap<(String, String), BTreeMap<String, SeedScores>> = BTreeMap::new();
    for r in results {
        let seeds = by.entry((r.dataset.clone(), r.method.clone())).or_default().entry(r.point.clone()).or_default();
        seeds.0.push(r.get(gate, metric).unwrap_or(f64::NEG_INFINITY));
        seeds.1.push(r.get("val_ood", metric).unwrap_or(f64::NEG_INFINITY));
    }
    by.into_iter()
        .filter_map(|(key, points)| {
            let means: Vec<(f64, Option<f64>)> =
                points.values().map(|(g, ood)| (mean_sd(g).0, Some(mean_sd(ood).0))).collect();
            // the score the rule maximises; a point must beat −∞ (a missing metric) to be chosen,
            // else the first point stands
            let score = |k: usize| match choice {
                GridChoice::BestValidation => means[k].0,
                GridChoice::OodWithinTolerance(_) => means[k].1.unwrap_or(f64::NEG_INFINITY),
            };
            let k = choice.pick(&means).filter(|&k| score(k) > f64::NEG_INFINITY).unwrap_or(0);
            points.into_keys().nth(k).map(|point| (key, point))
        })
        .collect()
}

/// Summary row of one (dataset, method) at its chosen grid point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Dataset name.
    pub dataset: String,
    /// Method label.
    pub method: String,
    /// The grid point chosen on validation.
    pub point: String,
    /// Seeds aggregated.
    pub seeds: usize,
    /// `metric name → (mean, sd)` for `{split}/{metric}` keys and `seconds`.
    pub stats: BTreeMap<String, (f64, f64)>,
    /// `{split}/{metric} → (mean paired difference to the reference, 95 % half-width)`.
    pub vs_reference: BTreeMap<String, (f64, f64)>,
    /// This row's Recall@20 against the dataset's strongest baseline; absent when the bench
    /// ran no baseline with both recalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_best_baseline: Option<AgainstBestBaseline>,
}

/// A row's Recall@20 as a share of the strongest baseline's: the non-invariant row (ERM on any
/// backbone, EASE, ItemKNN, PD, the post-hoc adjustment, popularity, and their blends with
/// EASE) with the highest mean validation `train.select_metric`, so that a method is compared
/// with the best it must beat, chosen as a user without the test sets would choose it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgainstBestBaseline {
    /// The baseline's method label.
    pub baseline: String,
    /// Mean IID (`test`) Recall@20 over the baseline's.
    pub iid_ratio: f64,
    /// Mean OOD (`test_ood`) Recall@20 over the baseline's.
    pub ood_ratio: f64,
}

/// Whether a method label (`erm@lightgcn`, `ease`, `erm+ease`) names a baseline, a method that
/// learns no invariance; an unknown label is not one.
pub fn is_baseline(label: &str) -> bool {
    let trained = label.strip_suffix("+ease").unwrap_or(label);
    trained.parse::<MethodSpec>().is_ok_and(|spec| !spec.method.is_invariant())
}

/// A dataset's strongest baseline: its label and its mean test recalls.
struct BestBaseline {
    label: String,
    iid: f64,
    ood: f64,
}

/// The baseline row of each dataset with the highest `val_scores` entry (each row's mean
/// validation selection metric at its chosen point, `None` when unreported); rows without a
/// score or without both recalls are passed over.
fn best_baselines(rows: &[SummaryRow], val_scores: &[Option<f64>]) -> BTreeMap<String, BestBaseline> {
    let mut best: BTreeMap<String, (f64, BestBaseline)> = BTreeMap::new();
    for (row, &score) in rows.iter().zip(val_scores).filter(|(r, _)| is_baseline(&r.method)) {
        let (Some(iid), Some(ood)) = (row.stats.get("test/recall@20"), row.stats.get("test_ood/recall@20")) else {
            continue;
        };
        let Some(score) = score.filter(|s| s.is_finite()) else { continue };
        if best.get(&row.dataset).is_none_or(|(s, _)| score > *s) {
            best.insert(
                row.dataset.clone(),
                (score, BestBaseline { label: row.method.clone(), iid: iid.0, ood: ood.0 }),
            );
        }
    }
    best.into_iter().map(|(d, (_, b))| (d, b)).collect()
}

const TABLE_KEYS: [&str; 6] =
    ["test/recall@20", "test/ndcg@20", "test_ood/recall@20", "test_ood/ndcg@20", "val/ndcg@20", "val_ood/recall@20"];

/// Aggregates `results` at each method's chosen point.
pub fn summarize(results: &[RunResult], base: &Config, reference: Option<&str>, choice: GridChoice) -> Vec<SummaryRow> {
    let chosen = chosen_points(results, base, choice);
    let mut rows = Vec::new();
    // each row's mean validation selection metric, for the best baseline
    let mut val_scores = Vec::new();
    for ((dataset, method), point) in &chosen {
        let runs: Vec<&RunResult> =
            results.iter().filter(|r| &r.dataset == dataset && &r.method == method && &r.point == point).collect();
        let val: Vec<f64> = runs.iter().filter_map(|r| r.get("val", &base.train.select_metric)).collect();
        val_scores.push((!val.is_empty()).then(|| mean_sd(&val).0));
        let mut stats = BTreeMap::new();
        for key in TABLE_KEYS {
            let (split, metric) = key.split_once('/').expect("split/metric");
            let v: Vec<f64> = runs.iter().filter_map(|r| r.get(split, metric)).collect();
            if !v.is_empty() {
                stats.insert(key.to_string(), mean_sd(&v));
            }
        }
        stats.insert("seconds".into(), mean_sd(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()));
        let mut vs_reference = BTreeMap::new();
        if let Some(refm) = reference.filter(|r| *r != method) {
            if let Some(rp) = chosen.get(&(dataset.clone(), refm.to_string())) {
                for key in &TABLE_KEYS[..4] {
                    let (split, metric) = key.split_once('/').expect("split/metric");
                    let (mut a, mut b) = (vec![], vec![]);
                    for r in &runs {
                        let other = results
                            .iter()
                            .find(|o| &o.dataset == dataset && o.method == refm && &o.point == rp && o.seed == r.seed);
                        if let (Some(x), Some(y)) = (r.get(split, metric), other.and_then(|o| o.get(split, metric))) {
                            a.push(x);
                            b.push(y);
                        }
                    }
                    if !a.is_empty() {
                        vs_reference.insert(key.to_string(), paired_difference(&a, &b));
                    }
                }
            }
        }
        rows.push(SummaryRow {
            dataset: dataset.clone(),
            method: method.clone(),
            point: point.clone(),
            seeds: runs.len(),
            stats,
            vs_reference,
            vs_best_baseline: None,
        });
    }
    let best = best_baselines(&rows, &val_scores);
    for row in &mut rows {
        let Some(baseline) = best.get(&row.dataset).filter(|b| b.iid > 0.0 && b.ood > 0.0) else { continue };
        if let (Some(row_iid), Some(row_ood)) = (row.stats.get("test/recall@20"), row.stats.get("test_ood/recall@20")) {
            row.vs_best_baseline = Some(AgainstBestBaseline {
                baseline: baseline.label.clone(),
                iid_ratio: row_iid.0 / baseline.iid,
                ood_ratio: row_ood.0 / baseline.ood,
            });
        }
    }
    rows
}

/// The Markdown tables of `rows`, one per dataset, methods in the order of `order`; `choice`
/// says how the grid points were chosen.
pub fn markdown(rows: &[SummaryRow], order: &[String], reference: Option<&str>, choice: &str) -> String {
    let mut out = String::new();
    let mut datasets: Vec<&str> = rows.iter().map(|r| r.dataset.as_str()).collect();
    datasets.dedup();
    let f = |s: Option<&(f64, f64)>| s.map(|(m, sd)| format!("{m:.4} ± {sd:.4}")).unwrap_or_else(|| "–".into());
    for d in datasets {
        out.push_str(&format!("### {d}\n\n"));
        out.push_str(
            "| method | chosen on validation | R@20 IID | N@20 IID | R@20 OOD | N@20 OOD | R@20 val_ood | seconds | R@20 IID× / OOD× of the best baseline |",
        );
        if let Some(r) = reference {
            out.push_str(&format!(" ΔR@20 IID vs {r} | ΔR@20 OOD vs {r} |"));
        }
        out.push('\n');
        out.push_str("|---|---|---|---|---|---|---|---|---|");
        if reference.is_some() {
            out.push_str("---|---|");
        }
        out.push('\n');
        for m in order {
            let Some(row) = rows.iter().find(|r| r.dataset == d && &r.method == m) else { continue };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                row.method,
                row.point,
                f(row.stats.get("test/recall@20")),
                f(row.stats.get("test/ndcg@20")),
                f(row.stats.get("test_ood/recall@20")),
                f(row.stats.get("test_ood/ndcg@20")),
                f(row.stats.get("val_ood/recall@20")),
                row.stats.get("seconds").map(|s| s.0).unwrap_or(f64::NAN)
            ));
            out.push_str(&match &row.vs_best_baseline {
                Some(b) => format!(" {:.2}× / {:.2}× |", b.iid_ratio, b.ood_ratio),
                None => " – |".into(),
            });
            if reference.is_some() {
                let g =
                    |k: &str| {
                        row.vs_reference
                            .get(k)
                            .map(|(m, h)| {
                                if h.is_finite() {
                                    format!("{m:+.4} ± {h:.4}")
                                } else {
                                    format!("{m:+.4} (one seed)")
                                }
                            })
                            .unwrap_or_else(|| "–".into())
                    };
                out.push_str(&format!(" {} | {} |", g("test/recall@20"), g("test_ood/recall@20")));
            }
            out.push('\n');
        }
        if let Some(b) = rows.iter().find(|r| r.dataset == d).and_then(|r| r.vs_best_baseline.as_ref()) {
            out.push_str(&format!("\nThe best baseline on validation: {}.\n", b.baseline));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Mean ± sample sd over seeds; Δ: mean paired difference over seeds ± the 95 % t-interval half-width; ×: mean Recall@20 over the best baseline's (the non-invariant row best on validation); {} (validation only).\n",
        choice
    ));
    out
}

fn write_results(plan: &BenchPlan, results: &[RunResult]) -> Result<()> {
    let rows = summarize(results, &plan.base, plan.reference.as_deref(), plan.choice);
    let choice = plan.choice.describe(&plan.base);
    write_json_atomic(
        &plan.out.join("results.json"),
        &serde_json::json!({ "runs": results, "summary": rows, "grid_choice": choice }),
    )?;
    // each method followed by its blend with EASE, when measured
    let order: Vec<String> = plan
        .methods
        .iter()
        .flat_map(|m| [Some(m.label()), plan.blend_ease.then(|| format!("{}+ease", m.label()))])
        .flatten()
        .collect();
    write_atomic(&plan.out.join("results.md"), markdown(&rows, &order, plan.reference.as_deref(), &choice).as_bytes())?;
    for (name, _) in &plan.datasets {
        let series: Vec<crate::plots::Series> = order
            .iter()
            .filter_map(|m| {
                let row = rows.iter().find(|r| &r.dataset == name && &r.method == m)?;
                let pts: Vec<(f64, f64)> = results
                    .iter()
                    .filter(|r| &r.dataset == name && &r.method == m && r.point == row.point)
                    .filter_map(|r| Some((r.get("test", "recall@20")?, r.get("test_ood", "recall@20")?)))
                    .collect();
                Some((m.clone(), pts))
            })
            .collect();
        let file = if plan.datasets.len() == 1 { "front.svg".to_string() } else { format!("front-{name}.svg") };
        crate::plots::scatter_plot(
            &plan.out.join(file),
            &format!("{name}: IID vs OOD Recall@20 (one point per seed)"),
            "IID (test) recall@20",
            "OOD (test_ood) recall@20",
            &series,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn pick_follows_each_rule_on_a_hand_built_grid() {
        // (validation, val_ood): the best on validation is point 1; within 3 % of it (≥ 0.485)
        // points 1, 2 and 4 qualify, of which 4 has the best val_ood; within 1 % only 1 and 2
        let points = [(0.40, Some(0.9)), (0.50, Some(0.10)), (0.495, Some(0.20)), (0.49, None), (0.486, Some(0.30))];
        assert_eq!(GridChoice::BestValidation.pick(&points), Some(1));
        assert_eq!(GridChoice::OodWithinTolerance(0.03).pick(&points), Some(4));
        assert_eq!(GridChoice::OodWithinTolerance(0.01).pick(&points), Some(2));
        // ties keep the first; NaN never wins; nothing to choose from gives None
        assert_eq!(GridChoice::BestValidation.pick(&[(0.3, None), (f64::NAN, None), (0.3, None)]), Some(0));
        assert_eq!(GridChoice::OodWithinTolerance(0.5).pick(&[(0.3, None)]), None);
        assert_eq!(GridChoice::BestValidation.pick(&[]), None);
    }

    #[test]
    fn method_specs_parse_with_and_without_backbone() {
        let s: MethodSpec = "erm@lightgcn".parse().unwrap();
        assert_eq!((s.method, s.backbone), (Method::Erm, Some(BackboneKind::Lightgcn)));
        assert_eq!(s.label(), "erm@lightgcn");
        assert_eq!("ease".parse::<MethodSpec>().unwrap().label(), "ease");
        assert!("nope".parse::<MethodSpec>().is_err());
        assert!("erm@nope".parse::<MethodSpec>().is_err());
    }

    #[test]
    fn grid_is_the_cartesian_product_and_applies_to_the_config() {
        let axes: Vec<GridAxis> =
            ["baselines.pd_gamma=0.05,0.2", "train.epochs=3,4,5"].iter().map(|s| s.parse().unwrap()).collect();
        let pts = grid_points(&axes);
        assert_eq!(pts.len(), 6);
        assert_eq!(point_label(&pts[1]), "baselines.pd_gamma=0.05,train.epochs=4");
        let c = apply_point(&Config::default(), &pts[5]).unwrap();
        assert_eq!((c.baselines.pd_gamma, c.train.epochs), (0.2, 5));
        let beta: GridAxis = "baselines.posthoc_beta=0.5".parse().unwrap();
        assert_eq!(
            apply_point(&Config::default(), &grid_points(&[beta])[0]).unwrap().baselines.posthoc_beta,
            vec![0.5]
        );
        // an integer grid value reaches a float key (the negatives' popularity exponent)
        let alpha: GridAxis = "train.negative_popularity=0,0.5".parse().unwrap();
        let pts = grid_points(&[alpha]);
        let alphas: Vec<f64> =
            pts.iter().map(|p| apply_point(&Config::default(), p).unwrap().train.negative_popularity).collect();
        assert_eq!(alphas, vec![0.0, 0.5]);
        let final_alpha: GridAxis = "final_negative_popularity=0.5".parse().unwrap();
        let c = apply_point(&Config::default(), &grid_points(&[final_alpha])[0]).unwrap();
        assert_eq!(c.final_negative_popularity, Some(0.5));
        let bad: GridAxis = "train.nope=1".parse().unwrap();
        let e = apply_point(&Config::default(), &grid_points(&[bad])[0]).unwrap_err().to_string();
        assert!(e.contains("train.nope"), "{e}");
        assert!(e.contains("is not a configuration key"), "{e}");
        // an optional key, absent from the configuration's TOML while unset, takes grid values
        let envs: GridAxis = "final_environments=popularity-bands,time-periods".parse().unwrap();
        let pts = grid_points(&[envs]);
        let c = apply_point(&Config::default(), &pts[0]).unwrap();
        assert_eq!(c.final_environments, Some(painvrl_env::Strategy::PopularityBands));
        assert_eq!(
            apply_point(&Config::default(), &pts[1]).unwrap().final_environments,
            Some(painvrl_env::Strategy::TimePeriods)
        );
        // an unknown top-level key is still refused, a nonsense value for an optional one named
        let e = apply_point(&Config::default(), &grid_points(&["nope=1".parse().unwrap()])[0]).unwrap_err();
        assert!(e.to_string().contains("nope") && e.to_string().contains("is not a configuration key"), "{e}");
        let e = apply_point(&Config::default(), &grid_points(&["final_environments=weekly".parse().unwrap()])[0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("final_environments") && e.contains("weekly"), "{e}");
        assert!("novalues".parse::<GridAxis>().is_err());
        // the backbone is a grid axis too, so that each method's backbone is chosen on
        // validation; the grid's value wins over a `method@backbone` label's
        let kinds: GridAxis = "backbone.kind=lightgcn,ultragcn".parse().unwrap();
        let on_mf: MethodSpec = "painvrl@mf".parse().unwrap();
        let chosen: Vec<BackboneKind> = grid_points(&[kinds])
            .iter()
            .map(|p| apply_point(&on_mf.apply(&Config::default()), p).unwrap().backbone.kind)
            .collect();
        assert_eq!(chosen, vec![BackboneKind::Lightgcn, BackboneKind::Ultragcn]);
    }

    #[test]
    fn paired_interval_by_hand() {
        // differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 4.303 · 0.1 / √3 = 0.24844
        let (m, h) = paired_difference(&[1.1, 1.2, 1.3], &[1.0, 1.0, 1.0]);
        assert_abs_diff_eq!(m, 0.2, epsilon = 1e-12);
        assert_abs_diff_eq!(h, 0.248_434, epsilon = 1e-5);
        assert_eq!(mean_sd(&[2.0]), (2.0, 0.0));
    }

    #[test]
    fn the_point_with_the_best_validation_mean_is_chosen_never_test() {
        let r = |point: &str, seed, val: f64, test: f64| RunResult {
            dataset: "d".into(),
            method: "m".into(),
            point: point.into(),
            seed,
            metrics: [
                ("val".to_string(), [("ndcg@20".to_string(), val)].into()),
                ("test".to_string(), [("recall@20".to_string(), test)].into()),
            ]
            .into(),
            selected: BTreeMap::new(),
            seconds: 1.0,
        };
        // point a: better on validation, worse on test
        let runs = vec![r("a", 0, 0.30, 0.1), r("a", 1, 0.28, 0.1), r("b", 0, 0.20, 0.9), r("b", 1, 0.22, 0.9)];
        let chosen = chosen_points(&runs, &Config::default(), GridChoice::BestValidation);
        assert_eq!(chosen[&("d".to_string(), "m".to_string())], "a");
        let rows = summarize(&runs, &Config::default(), None, GridChoice::BestValidation);
        assert_abs_diff_eq!(rows[0].stats["test/recall@20"].0, 0.1, epsilon = 1e-12);
    }

    #[test]
    fn ratios_are_taken_against_the_baseline_best_on_validation_never_test() {
        let r = |dataset: &str, method: &str, seed, val: f64, iid: f64, ood: f64| RunResult {
            dataset: dataset.into(),
            method: method.into(),
            point: "default".into(),
            seed,
            metrics: [
                ("val".to_string(), [("ndcg@20".to_string(), val)].into()),
                ("test".to_string(), [("recall@20".to_string(), iid)].into()),
                ("test_ood".to_string(), [("recall@20".to_string(), ood)].into()),
            ]
            .into(),
            selected: BTreeMap::new(),
            seconds: 1.0,
        };
        // on d: ERM is the better baseline on test, EASE on validation (means 0.25 > 0.20); the
        // invariant method is best on validation of all but is no baseline. Means: EASE 0.20 /
        // 0.05, ERM 0.30 / 0.10, PaInvRL 0.22 / 0.06. On e no baseline ran.
        let runs = vec![
            r("d", "erm@lightgcn", 0, 0.19, 0.29, 0.09),
            r("d", "erm@lightgcn", 1, 0.21, 0.31, 0.11),
            r("d", "ease", 0, 0.26, 0.19, 0.05),
            r("d", "ease", 1, 0.24, 0.21, 0.05),
            r("d", "painvrl", 0, 0.50, 0.22, 0.07),
            r("d", "painvrl", 1, 0.50, 0.22, 0.05),
            r("e", "painvrl", 0, 0.50, 0.22, 0.07),
        ];
        let rows = summarize(&runs, &Config::default(), None, GridChoice::BestValidation);
        let against = |d: &str, m: &str| {
            rows.iter().find(|row| row.dataset == d && row.method == m).unwrap().vs_best_baseline.clone()
        };
        let invariant = against("d", "painvrl").unwrap();
        assert_eq!(invariant.baseline, "ease");
        assert_abs_diff_eq!(invariant.iid_ratio, 1.1, epsilon = 1e-12);
        assert_abs_diff_eq!(invariant.ood_ratio, 1.2, epsilon = 1e-12);
        let erm = against("d", "erm@lightgcn").unwrap();
        assert_abs_diff_eq!(erm.iid_ratio, 1.5, epsilon = 1e-12);
        assert_abs_diff_eq!(erm.ood_ratio, 2.0, epsilon = 1e-12);
        assert_abs_diff_eq!(against("d", "ease").unwrap().iid_ratio, 1.0, epsilon = 1e-12);
        assert_eq!(against("e", "painvrl"), None);
        let md = markdown(&rows, &["ease".into(), "erm@lightgcn".into(), "painvrl".into()], None, "chosen");
        assert!(md.contains("| 1.10× / 1.20× |") && md.contains("The best baseline on validation: ease."), "{md}");
        // a baseline whose OOD recall is 0 gives no ratios rather than infinite ones
        let zero = vec![r("d", "erm", 0, 0.3, 0.2, 0.0), r("d", "painvrl", 0, 0.3, 0.2, 0.1)];
        assert!(summarize(&zero, &Config::default(), None, GridChoice::BestValidation)
            .iter()
            .all(|row| row.vs_best_baseline.is_none()));
    }

    #[test]
    fn baselines_are_the_methods_without_invariance_and_their_blends() {
        for label in ["erm", "erm@ultragcn", "ease", "itemknn", "pd@mf", "posthoc", "popularity", "erm@lightgcn+ease"] {
            assert!(is_baseline(label), "{label}");
        }
        for label in ["painvrl", "invrl@lightgcn", "painvrl+ease", "nope", "erm@nope"] {
            assert!(!is_baseline(label), "{label}");
        }
    }

    #[test]
    fn the_tolerance_rule_takes_the_best_ood_validation_point_among_those_near_the_best_validation() {
        let r = |method: &str, point: &str, seed, val: f64, val_ood: f64| RunResult {
            dataset: "d".into(),
            method: method.into(),
            point: point.into(),
            seed,
            metrics: [
                ("val".to_string(), [("ndcg@20".to_string(), val)].into()),
                ("val_ood".to_string(), [("ndcg@20".to_string(), val_ood)].into()),
                ("test".to_string(), [("ndcg@20".to_string(), 9.0)].into()),
            ]
            .into(),
            selected: BTreeMap::new(),
            seconds: 1.0,
        };
        // method m: a is best on validation (mean 0.200); b is 1.5 % below it with the best
        // val_ood; c has an even better val_ood but is 10 % below. Method n: only one point.
        let runs = vec![
            r("m", "a", 0, 0.21, 0.01),
            r("m", "a", 1, 0.19, 0.03),
            r("m", "b", 0, 0.198, 0.05),
            r("m", "b", 1, 0.196, 0.05),
            r("m", "c", 0, 0.18, 0.30),
            r("m", "c", 1, 0.18, 0.30),
            r("n", "a", 0, 0.1, 0.0),
        ];
        let key = |m: &str| ("d".to_string(), m.to_string());
        let base = Config::default();
        assert_eq!(chosen_points(&runs, &base, GridChoice::BestValidation)[&key("m")], "a");
        let near = chosen_points(&runs, &base, GridChoice::OodWithinTolerance(0.02));
        assert_eq!((near[&key("m")].as_str(), near[&key("n")].as_str()), ("b", "a"));
        // at 1 % b is out; at 15 % c (10 % below) is in
        assert_eq!(chosen_points(&runs, &base, GridChoice::OodWithinTolerance(0.01))[&key("m")], "a");
        assert_eq!(chosen_points(&runs, &base, GridChoice::OodWithinTolerance(0.15))[&key("m")], "c");
        assert!(GridChoice::OodWithinTolerance(0.02).describe(&base).contains("within 2.0 %"));
    }
}
