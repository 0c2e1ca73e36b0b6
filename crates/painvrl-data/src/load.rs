//! Loading a dataset directory in any of the supported layouts (see `docs/data-format.md`).

use crate::npy::read_matrix;
use crate::split::{split_per_user, SplitStrategy};
use crate::tsv::{read_mmrec, read_pairs, read_ratings};
use painvrl_core::{Dataset, Error, Interactions, ItemFeatures, Modality, PlantedTruth, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How to read a dataset directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadOptions {
    /// Ratings at or above this become positive interactions (rating-log layout only).
    pub rating_threshold: f32,
    /// How a rating log is split into train / val / test (rating-log layout only).
    pub split: SplitStrategy,
    /// Validation and test fractions for that split.
    pub val_fraction: f64,
    /// Test fraction for that split.
    pub test_fraction: f64,
    /// Scale each modality's rows to unit L2 norm.
    pub l2_normalize: bool,
    /// Seed for random splits.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            rating_threshold: 4.0,
            split: SplitStrategy::Temporal,
            val_fraction: 0.1,
            test_fraction: 0.1,
            l2_normalize: true,
            seed: 0,
        }
    }
}

/// What loading found and fixed, for the one-screen summary and reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Layout recognised: `canonical`, `mmrec` or `ratings`.
    pub layout: String,
    /// Duplicate interactions dropped, over all splits.
    pub duplicates: usize,
    /// Users in val/test/test_ood with no training interaction (kept out of metrics).
    pub cold_users: usize,
    /// Items with no training interaction.
    pub cold_items: usize,
    /// Ratings below the threshold dropped (rating-log layout).
    pub below_threshold: usize,
}

/// Reads every `<modality>_feat.npy` in `dir`, sorted by modality name, and concatenates them.
pub fn load_features(dir: &Path, l2_normalize: bool) -> Result<ItemFeatures> {
    let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix("_feat.npy").map(|m| (m.to_string(), e.path()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidData(format!(
            "{}: no feature files; expected one '<modality>_feat.npy' per modality (e.g. image_feat.npy)",
            dir.display()
        )));
    }
    let mut mats = Vec::new();
    for (name, path) in &files {
        let (rows, cols, v) = read_matrix(path)?;
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidData(format!(
                "{}: modality '{name}' has a non-finite value at row {}, column {}",
                path.display(),
                pos / cols.max(1),
                pos % cols.max(1)
            )));
        }
        mats.push((name.clone(), path.clone(), rows, cols, v));
    }
    let n_items = mats[0].2;
    if let Some(m) = mats.iter().find(|m| m.2 != n_items) {
        return Err(Error::InvalidData(format!(
            "modalities disagree on the number of items: {} has {} rows, {} has {n_items}",
            m.1.display(),
            m.2,
            mats[0].1.display()
        )));
    }
    let dim: usize = mats.iter().map(|m| m.3).sum();
    let mut values = vec![0f32; n_items * dim];
    let mut off = 0;
    for (_, _, _, cols, v) in &mats {
        for i in 0..n_items {
            values[i * dim + off..i * dim + off + cols].copy_from_slice(&v[i * cols..(i + 1) * cols]);
        }
        off += cols;
    }
    let modalities = mats.iter().map(|m| Modality { name: m.0.clone(), dim: m.3 }).collect();
    let features = ItemFeatures::new(modalities, n_items, values)?;
    Ok(if l2_normalize { features.l2_normalized() } else { features })
}

/// Loads a dataset directory: canonical (`train.tsv` ...), MMRec (`*.inter`) or a rating log
/// (`interactions.tsv` with `user item rating timestamp`), plus its feature files.
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Result<(Dataset, LoadReport)> {
    if !dir.is_dir() {
        return Err(Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "dataset directory not found")));
    }
    let features = load_features(dir, opts.l2_normalize)?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dataset".into());
    let mut report = LoadReport::default();
    let (train, val, test, test_ood, val_ood, train_times) = if dir.join("train.tsv").exists() {
        report.layout = "canonical".into();
        let mut read = |f: &str| -> Result<Interactions> {
            let path = dir.join(f);
            let p = read_pairs(&path)?;
            p.check_items(&path, features.n_items())?;
            report.duplicates += p.duplicates;
            Ok(p.interactions)
        };
        let train = read("train.tsv")?;
        let val = read("val.tsv")?;
        let test = read("test.tsv")?;
        let mut optional = |f: &str| if dir.join(f).exists() { read(f).map(Some) } else { Ok(None) };
        let ood = optional("test_ood.tsv")?;
        let val_ood = optional("val_ood.tsv")?;
        let times = read_train_times(dir)?;
        (train, val, test, ood, val_ood, times)
    } else if let Some(inter) = find_inter(dir)? {
        report.layout = "mmrec".into();
        let ([tr, va, te], d) = read_mmrec(&inter)?;
        report.duplicates = d;
        (tr, va, te, None, None, None)
    } else if dir.join("interactions.tsv").exists() {
        report.layout = "ratings".into();
        let ratings = read_ratings(&dir.join("interactions.tsv"))?;
        let kept: Vec<_> = ratings.iter().filter(|r| r.rating >= opts.rating_threshold).copied().collect();
        report.below_threshold = ratings.len() - kept.len();
        let s = split_per_user(&kept, opts.split, opts.val_fraction, opts.test_fraction, opts.seed)?;
        report.duplicates = s.duplicates;
        (s.train, s.val, s.test, None, None, Some(s.train_times))
    } else {
        return Err(Error::InvalidData(format!(
            "{}: no interactions found; expected train.tsv/val.tsv/test.tsv, an MMRec '<name>.inter', or interactions.tsv",
            dir.display()
        )));
    };
    let n_items = features.n_items();
    let mut n_users = 0usize;
    for (split, x) in [("train", &train), ("val", &val), ("test", &test)]
        .into_iter()
        .chain(test_ood.as_ref().map(|t| ("test_ood", t)))
        .chain(val_ood.as_ref().map(|t| ("val_ood", t)))
    {
        if let Some((k, (u, i))) = x.iter().enumerate().find(|(_, (_, i))| *i as usize >= n_items) {
            return Err(Error::InvalidData(format!(
                "{}: split '{split}', interaction {}: item {i} (user {u}) is ≥ the {n_items} feature rows",
                dir.display(),
                k + 1
            )));
        }
        n_users = n_users.max(x.users.iter().map(|&u| u as usize + 1).max().unwrap_or(0));
    }
    let truth = read_truth(dir)?;
    let ds = Dataset { name, n_users, n_items, train, val, test, test_ood, val_ood, features, train_times, truth };
    ds.validate().map_err(|e| Error::InvalidData(format!("{}: {e}", dir.display())))?;
    let train_users = ds.train.user_degrees(n_users);
    let mut cold = vec![false; n_users];
    for (_, x) in ds.splits().into_iter().skip(1) {
        for &u in &x.users {
            cold[u as usize] |= train_users[u as usize] == 0;
        }
    }
    report.cold_users = cold.iter().filter(|&&c| c).count();
    report.cold_items = ds.train.item_degrees(n_items).iter().filter(|&&d| d == 0).count();
    Ok((ds, report))
}

fn find_inter(dir: &Path) -> Result<Option<std::path::PathBuf>> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        if e.path().extension().is_some_and(|x| x == "inter") {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// The load report as a short line for the summary.
pub fn describe(report: &LoadReport) -> String {
    format!(
        "layout {}, {} duplicates dropped, {} cold users (not scored), {} items without training interactions",
        report.layout, report.duplicates, report.cold_users, report.cold_items
    )
}

/// Reads an optional file of one number per training interaction (blank lines skipped), or
/// `None` when `path` does not exist; a line that does not parse is named with `expected`.
fn read_per_interaction<T: std::str::FromStr>(path: &Path, expected: &str) -> Result<Option<Vec<T>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(k, l)| {
            let l = l.trim();
            l.parse::<T>().map_err(|_| Error::parse(path, Some(k + 1), format!("'{l}' is not {expected}")))
        })
        .collect::<Result<Vec<T>>>()
        .map(Some)
}

/// Reads the optional `train_time.tsv` of a canonical dataset directory: one integer timestamp
/// per line, in `train.tsv` order (its length is checked by `Dataset::validate`).
pub fn read_train_times(dir: &Path) -> Result<Option<Vec<i64>>> {
    read_per_interaction(&dir.join("train_time.tsv"), "a timestamp (an integer)")
}

/// Reads the optional ground truth of a dataset directory: `train_env.tsv` (one environment id
/// per line, in `train.tsv` order) and `invariant_dims.json` (a JSON array of feature columns).
/// Their agreement with the splits and features is checked by `Dataset::validate`.
pub fn read_truth(dir: &Path) -> Result<PlantedTruth> {
    let mut truth = PlantedTruth {
        train_envs: read_per_interaction(&dir.join("train_env.tsv"), "an environment id (a non-negative integer)")?,
        ..Default::default()
    };
    let dims = dir.join("invariant_dims.json");
    if dims.exists() {
        let text = std::fs::read_to_string(&dims).map_err(|e| Error::io(&dims, e))?;
        let v: Vec<usize> = serde_json::from_str(&text).map_err(|e| {
            Error::parse(&dims, Some(e.line()), format!("expected a JSON array of column indices: {e}"))
        })?;
        truth.invariant_dims = Some(v);
    }
    Ok(truth)
}
