//! Splitting interaction logs into train / val / test, and building cross-environment (OOD)
//! test sets. Every builder is deterministic per seed.

use crate::npy::write_matrix;
use crate::tsv::{write_pairs, Rating};
use painvrl_core::io::write_json_atomic;
use painvrl_core::{Dataset, Error, Interactions, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// How each user's interactions are divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitStrategy {
    /// A random fraction of each user's interactions.
    Random,
    /// Each user's latest interactions (by timestamp) go to val and test.
    Temporal,
}

/// Result of a per-user split.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitResult {
    /// Training interactions.
    pub train: Interactions,
    /// Validation interactions.
    pub val: Interactions,
    /// Test interactions.
    pub test: Interactions,
    /// Duplicate (user, item) pairs dropped (the earliest is kept).
    pub duplicates: usize,
}

fn check_fractions(val: f64, test: f64) -> Result<()> {
    for (name, v) in [("val_fraction", val), ("test_fraction", test)] {
        if !(0.0..1.0).contains(&v) {
            return Err(Error::config(name, format!("{v} is not in [0, 1)")));
        }
    }
    if val + test >= 1.0 {
        return Err(Error::config("val_fraction + test_fraction", "must leave something to train on (sum < 1)"));
    }
    Ok(())
}

/// Splits each user's interactions: the last (temporal) or a random `test_fraction` to test, the
/// next `val_fraction` to validation, the rest to training. Users with fewer than 3 interactions
/// keep them all in training.
pub fn split_per_user(
    ratings: &[Rating],
    strategy: SplitStrategy,
    val_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<SplitResult> {
    check_fractions(val_fraction, test_fraction)?;
    if ratings.is_empty() {
        return Err(Error::InvalidData("nothing to split: no interactions".into()));
    }
    let mut by_user: HashMap<u32, Vec<Rating>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = SplitResult::default();
    let mut sorted = ratings.to_vec();
    sorted.sort_by_key(|r| (r.user, r.timestamp, r.item));
    for r in sorted {
        if seen.insert((r.user, r.item)) {
            by_user.entry(r.user).or_default().push(r);
        } else {
            out.duplicates += 1;
        }
    }
    let mut users: Vec<u32> = by_user.keys().copied().collect();
    users.sort_unstable();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for u in users {
        let mut rs = by_user.remove(&u).unwrap_or_default();
        if strategy == SplitStrategy::Random {
            rs.shuffle(&mut rng);
        }
        let n = rs.len();
        if n < 3 {
            rs.iter().for_each(|r| out.train.push(r.user, r.item));
            continue;
        }
        let n_test = ((n as f64 * test_fraction).round() as usize).max(usize::from(test_fraction > 0.0));
        let n_val = ((n as f64 * val_fraction).round() as usize).max(usize::from(val_fraction > 0.0));
        let n_train = n.saturating_sub(n_test + n_val).max(1);
        for (k, r) in rs.iter().enumerate() {
            let dst = if k < n_train {
                &mut out.train
            } else if k < n_train + n_val {
                &mut out.val
            } else {
                &mut out.test
            };
            dst.push(r.user, r.item);
        }
    }
    Ok(out)
}

/// How a cross-environment test set was built; written next to `test_ood.tsv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodInfo {
    /// `popularity`, `temporal`, `given` or `synthetic`.
    pub method: String,
    /// Parameters of the construction.
    pub params: serde_json::Value,
    /// Interactions in the OOD test set.
    pub size: usize,
}

/// Popularity-intervened OOD test set: moves `fraction` of the test interactions into
/// `test_ood`, each drawn with probability ∝ 1 / (training popularity of its item + 1), at most
/// `cap_per_item` per item. The remaining test interactions stay the IID test set.
pub fn ood_by_popularity(ds: &mut Dataset, fraction: f64, cap_per_item: usize, seed: u64) -> Result<OodInfo> {
    if !(0.0 < fraction && fraction < 1.0) {
        return Err(Error::config("ood.fraction", format!("{fraction} is not in (0, 1)")));
    }
    if cap_per_item == 0 {
        return Err(Error::config("ood.cap_per_item", "must be ≥ 1"));
    }
    if ds.test.is_empty() {
        return Err(Error::InvalidData("cannot build an OOD test set from an empty test split".into()));
    }
    let pop = ds.train.item_degrees(ds.n_items);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // weighted sampling without replacement: Efraimidis–Spirakis keys u^(1/w), largest first
    let mut keyed: Vec<(f64, usize)> = (0..ds.test.len())
        .map(|k| {
            let w = 1.0 / (pop[ds.test.items[k] as usize] as f64 + 1.0);
            (rng.gen::<f64>().powf(1.0 / w), k)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let target = ((ds.test.len() as f64) * fraction).round() as usize;
    let mut per_item: HashMap<u32, usize> = HashMap::new();
    let mut chosen = vec![false; ds.test.len()];
    let mut taken = 0;
    for (_, k) in keyed {
        if taken == target {
            break;
        }
        let c = per_item.entry(ds.test.items[k]).or_default();
        if *c < cap_per_item {
            *c += 1;
            chosen[k] = true;
            taken += 1;
        }
    }
    let (mut iid, mut ood) = (Interactions::default(), Interactions::default());
    for (k, (u, i)) in ds.test.iter().enumerate() {
        if chosen[k] {
            ood.push(u, i)
        } else {
            iid.push(u, i)
        }
    }
    ds.test = iid;
    let size = ood.len();
    ds.test_ood = Some(ood);
    Ok(OodInfo {
        method: "popularity".into(),
        params: serde_json::json!({ "fraction": fraction, "cap_per_item": cap_per_item, "seed": seed, "source": "test split" }),
        size,
    })
}

/// Temporal OOD test set from a rating log: interactions after the global `1 − fraction` time
/// quantile become `test_ood` (and are removed from the log); returns the remaining log.
pub fn ood_by_time(ratings: &[Rating], fraction: f64) -> Result<(Vec<Rating>, Interactions, OodInfo)> {
    if !(0.0 < fraction && fraction < 1.0) {
        return Err(Error::config("ood.fraction", format!("{fraction} is not in (0, 1)")));
    }
    let mut times: Vec<i64> = ratings.iter().map(|r| r.timestamp).collect();
    times.sort_unstable();
    let cut = times.get(((times.len() as f64) * (1.0 - fraction)) as usize).copied().unwrap_or(i64::MAX);
    let (rest, late): (Vec<Rating>, Vec<Rating>) = ratings.iter().partition(|r| r.timestamp < cut);
    let ood = Interactions::from_pairs(late.iter().map(|r| (r.user, r.item)));
    let info = OodInfo {
        method: "temporal".into(),
        params: serde_json::json!({ "fraction": fraction, "cutoff_timestamp": cut }),
        size: ood.len(),
    };
    Ok((rest, ood, info))
}

/// Writes `ds` as a canonical dataset directory (TSV splits, one `.npy` per modality, and
/// `test_ood.json` describing the OOD construction when given). Every file is written atomically.
pub fn write_dataset(dir: &Path, ds: &Dataset, ood: Option<&OodInfo>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_pairs(&dir.join("train.tsv"), &ds.train)?;
    write_pairs(&dir.join("val.tsv"), &ds.val)?;
    write_pairs(&dir.join("test.tsv"), &ds.test)?;
    if let Some(o) = &ds.test_ood {
        write_pairs(&dir.join("test_ood.tsv"), o)?;
    }
    if let Some(info) = ood {
        write_json_atomic(&dir.join("test_ood.json"), info)?;
    }
    let f = &ds.features;
    for (m, modality) in f.modalities().iter().enumerate() {
        let r = f.modality_range(m);
        let mut vals = Vec::with_capacity(f.n_items() * modality.dim);
        for i in 0..f.n_items() {
            vals.extend_from_slice(&f.row(i)[r.clone()]);
        }
        write_matrix(&dir.join(format!("{}_feat.npy", modality.name)), f.n_items(), modality.dim, &vals)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<Rating> {
        (0..10u32).map(|k| Rating { user: 0, item: k, rating: 5.0, timestamp: 100 - k as i64 }).collect()
    }

    #[test]
    fn temporal_split_puts_latest_in_test() {
        let s = split_per_user(&log(), SplitStrategy::Temporal, 0.1, 0.2, 0).unwrap();
        // timestamps decrease with item id: latest are items 0,1 → test; item 2 → val
        assert_eq!(s.test.items, vec![1, 0]);
        assert_eq!(s.val.items, vec![2]);
        assert_eq!(s.train.len(), 7);
    }

    #[test]
    fn random_split_is_seeded_and_partitions() {
        let a = split_per_user(&log(), SplitStrategy::Random, 0.2, 0.2, 7).unwrap();
        let b = split_per_user(&log(), SplitStrategy::Random, 0.2, 0.2, 7).unwrap();
        assert_eq!(a, b);
        let mut all: Vec<u32> = [&a.train, &a.val, &a.test].iter().flat_map(|x| x.items.clone()).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn nonsense_fractions_name_the_field() {
        let e = split_per_user(&log(), SplitStrategy::Random, 0.6, 0.5, 0).unwrap_err().to_string();
        assert!(e.contains("val_fraction + test_fraction"), "{e}");
        assert!(split_per_user(&[], SplitStrategy::Random, 0.1, 0.1, 0).is_err());
    }

    #[test]
    fn temporal_ood_takes_the_latest() {
        let (rest, ood, info) = ood_by_time(&log(), 0.3).unwrap();
        assert_eq!(ood.len(), 3);
        assert_eq!(rest.len(), 7);
        assert!(rest.iter().all(|r| r.timestamp < info.params["cutoff_timestamp"].as_i64().unwrap()));
    }
}
