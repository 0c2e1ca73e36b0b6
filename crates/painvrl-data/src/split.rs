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
    /// The timestamp of each training interaction, in `train` order.
    pub train_times: Vec<i64>,
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
            rs.iter().for_each(|r| {
                out.train.push(r.user, r.item);
                out.train_times.push(r.timestamp);
            });
            continue;
        }
        let n_test = ((n as f64 * test_fraction).round() as usize).max(usize::from(test_fraction > 0.0));
        let n_val = ((n as f64 * val_fraction).round() as usize).max(usize::from(val_fraction > 0.0));
        let n_train = n.saturating_sub(n_test + n_val).max(1);
        for (k, r) in rs.iter().enumerate() {
            let dst = if k < n_train {
                out.train_times.push(r.timestamp);
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

/// How popularity-intervened OOD sets are drawn (the intervened test of MACR and DICE: held-out
/// interactions re-sampled against training popularity, with a per-item cap).
///
/// The held-out test split is first divided uniformly at random: `fraction` of it becomes the OOD
/// pool and the rest stays the IID `test`, so `test` remains a uniform sample of the held-out
/// interactions. From the pool, `draw_fraction` of it is drawn into `test_ood`, each interaction
/// with probability ∝ 1 / (training popularity of its item + 1) and at most `cap_per_item` per
/// item; the undrawn rest of the pool belongs to no split. With `val_slice`, `val_ood` is drawn
/// from the validation split the same way (the validation split itself is unchanged), for
/// reporting and OOD model selection without looking at test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PopularityOod {
    /// Build `test_ood` when the dataset ships none.
    pub build_if_missing: bool,
    /// Share of the test split set aside as the OOD pool, in (0, 1).
    pub fraction: f64,
    /// Share of the pool drawn into `test_ood`, in (0, 1].
    pub draw_fraction: f64,
    /// At most this many OOD interactions per item.
    pub cap_per_item: usize,
    /// Also draw `val_ood` from the validation split.
    pub val_slice: bool,
}

impl Default for PopularityOod {
    fn default() -> Self {
        PopularityOod { build_if_missing: true, fraction: 0.5, draw_fraction: 0.5, cap_per_item: 5, val_slice: true }
    }
}

impl PopularityOod {
    /// Checks every field's domain; errors name the field (`ood.<field>`).
    pub fn validate(&self) -> Result<()> {
        if !(0.0 < self.fraction && self.fraction < 1.0) {
            return Err(Error::config("ood.fraction", format!("{} is not in (0, 1)", self.fraction)));
        }
        if !(0.0 < self.draw_fraction && self.draw_fraction <= 1.0) {
            return Err(Error::config("ood.draw_fraction", format!("{} is not in (0, 1]", self.draw_fraction)));
        }
        if self.cap_per_item == 0 {
            return Err(Error::config("ood.cap_per_item", "must be ≥ 1"));
        }
        Ok(())
    }
}

/// Positions of `target` interactions of `candidates` drawn without replacement with
/// probability ∝ 1 / (popularity + 1), at most `cap_per_item` per item (Efraimidis–Spirakis keys
/// u^(1/w), largest first). Returns a flag per candidate.
fn draw_against_popularity(
    candidates: &Interactions,
    popularity: &[u32],
    target: usize,
    cap_per_item: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<bool> {
    let mut keyed: Vec<(f64, usize)> = (0..candidates.len())
        .map(|k| {
            let w = 1.0 / (popularity[candidates.items[k] as usize] as f64 + 1.0);
            (rng.gen::<f64>().powf(1.0 / w), k)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut per_item: HashMap<u32, usize> = HashMap::new();
    let mut chosen = vec![false; candidates.len()];
    let mut taken = 0;
    for (_, k) in keyed {
        if taken == target {
            break;
        }
        let c = per_item.entry(candidates.items[k]).or_default();
        if *c < cap_per_item {
            *c += 1;
            chosen[k] = true;
            taken += 1;
        }
    }
    chosen
}

/// The interactions of `all` whose flag is set.
fn select(all: &Interactions, flags: &[bool], keep: bool) -> Interactions {
    Interactions::from_pairs(all.iter().zip(flags).filter(|(_, &f)| f == keep).map(|(p, _)| p))
}

/// Builds `test_ood` from the test split as [`PopularityOod`] describes (the IID `test` keeps a
/// uniform random share), and `val_ood` when `val_slice` is set. Deterministic per `split_seed`,
/// which is independent of any training seed.
pub fn ood_by_popularity(ds: &mut Dataset, protocol: &PopularityOod, split_seed: u64) -> Result<OodInfo> {
    protocol.validate()?;
    if ds.test.is_empty() {
        return Err(Error::InvalidData(format!(
            "dataset '{}': cannot build an OOD test set from an empty test split",
            ds.name
        )));
    }
    let pop = ds.train.item_degrees(ds.n_items);
    let mut rng = ChaCha8Rng::seed_from_u64(split_seed);
    // 1. uniform split of the held-out test interactions into the IID test and the OOD pool
    let mut order: Vec<usize> = (0..ds.test.len()).collect();
    order.shuffle(&mut rng);
    let n_pool = ((ds.test.len() as f64) * protocol.fraction).round() as usize;
    let mut in_pool = vec![false; ds.test.len()];
    order.iter().take(n_pool).for_each(|&k| in_pool[k] = true);
    let pool = select(&ds.test, &in_pool, true);
    // 2. the intervened draw from the pool
    let target = ((pool.len() as f64) * protocol.draw_fraction).round() as usize;
    let drawn = draw_against_popularity(&pool, &pop, target, protocol.cap_per_item, &mut rng);
    let ood = select(&pool, &drawn, true);
    ds.test = select(&ds.test, &in_pool, false);
    let size = ood.len();
    ds.test_ood = Some(ood);
    if protocol.val_slice {
        val_ood_by_popularity(ds, protocol, split_seed)?;
    }
    Ok(OodInfo {
        method: "popularity".into(),
        params: serde_json::json!({
            "fraction": protocol.fraction,
            "draw_fraction": protocol.draw_fraction,
            "cap_per_item": protocol.cap_per_item,
            "split_seed": split_seed,
            "source": "test split",
            "iid_test": "uniform random share of the test split",
            "pool": n_pool,
            "val_ood": ds.val_ood.as_ref().map(Interactions::len),
        }),
        size,
    })
}

/// Draws `val_ood` from the validation split against training popularity (the validation split is
/// unchanged): `draw_fraction × fraction` of it, at most `cap_per_item` per item, so that it has
/// the shape of `test_ood` relative to `test`.
pub fn val_ood_by_popularity(ds: &mut Dataset, protocol: &PopularityOod, split_seed: u64) -> Result<usize> {
    protocol.validate()?;
    if ds.val.is_empty() {
        return Err(Error::InvalidData(format!(
            "dataset '{}': cannot draw an OOD validation slice from an empty validation split",
            ds.name
        )));
    }
    let pop = ds.train.item_degrees(ds.n_items);
    // a stream of its own, so that adding the slice never changes test or test_ood
    let mut rng = ChaCha8Rng::seed_from_u64(split_seed ^ 0x7661_6c5f_6f6f_6400);
    let target = ((ds.val.len() as f64) * protocol.fraction * protocol.draw_fraction).round().max(1.0) as usize;
    let drawn = draw_against_popularity(&ds.val, &pop, target, protocol.cap_per_item, &mut rng);
    let slice = select(&ds.val, &drawn, true);
    let n = slice.len();
    ds.val_ood = Some(slice);
    Ok(n)
}

/// The one OOD preparation that `split`, `train`, `bench` and the examples share: builds
/// `test_ood` (and `val_ood`) when the dataset has none and `protocol.build_if_missing` is set, or
/// only `val_ood` when the dataset ships `test_ood` but no `val_ood`. Returns what was built.
pub fn prepare_ood(ds: &mut Dataset, protocol: &PopularityOod, split_seed: u64) -> Result<Option<OodInfo>> {
    protocol.validate()?;
    if ds.test_ood.is_none() {
        if !protocol.build_if_missing {
            return Ok(None);
        }
        return ood_by_popularity(ds, protocol, split_seed).map(Some);
    }
    if protocol.val_slice && ds.val_ood.is_none() && !ds.val.is_empty() {
        val_ood_by_popularity(ds, protocol, split_seed)?;
    }
    Ok(None)
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

/// Writes `ds` as a canonical dataset directory (TSV splits including `test_ood.tsv` / `val_ood.tsv` when present, one `.npy` per modality, and
/// `test_ood.json` describing the OOD construction when given). Every file is written atomically.
pub fn write_dataset(dir: &Path, ds: &Dataset, ood: Option<&OodInfo>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_pairs(&dir.join("train.tsv"), &ds.train)?;
    write_pairs(&dir.join("val.tsv"), &ds.val)?;
    write_pairs(&dir.join("test.tsv"), &ds.test)?;
    if let Some(o) = &ds.test_ood {
        write_pairs(&dir.join("test_ood.tsv"), o)?;
    }
    if let Some(o) = &ds.val_ood {
        write_pairs(&dir.join("val_ood.tsv"), o)?;
    }
    if let Some(info) = ood {
        write_json_atomic(&dir.join("test_ood.json"), info)?;
    }
    if let Some(envs) = &ds.truth.train_envs {
        let text: String = envs.iter().map(|e| format!("{e}\n")).collect();
        painvrl_core::io::write_atomic(&dir.join("train_env.tsv"), text.as_bytes())?;
    }
    if let Some(times) = &ds.train_times {
        let text: String = times.iter().map(|t| format!("{t}\n")).collect();
        painvrl_core::io::write_atomic(&dir.join("train_time.tsv"), text.as_bytes())?;
    }
    if let Some(dims) = &ds.truth.invariant_dims {
        write_json_atomic(&dir.join("invariant_dims.json"), dims)?;
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

    proptest::proptest! {
        /// Whatever the log and the strategy, every training interaction keeps its own
        /// timestamp (the time environments are built from them).
        #[test]
        fn train_times_stay_with_their_interactions(
            log in proptest::collection::vec((0u32..5, 0u32..9, 0i64..50), 1..60),
            temporal in proptest::bool::ANY,
            seed in 0u64..100,
        ) {
            let ratings: Vec<Rating> =
                log.iter().map(|&(user, item, timestamp)| Rating { user, item, rating: 5.0, timestamp }).collect();
            let strategy = if temporal { SplitStrategy::Temporal } else { SplitStrategy::Random };
            let s = split_per_user(&ratings, strategy, 0.2, 0.2, seed).unwrap();
            proptest::prop_assert_eq!(s.train_times.len(), s.train.len());
            // duplicates keep the earliest (time, then item order): the pair's smallest timestamp
            let mut first: HashMap<(u32, u32), i64> = HashMap::new();
            for r in &ratings {
                let t = first.entry((r.user, r.item)).or_insert(r.timestamp);
                *t = (*t).min(r.timestamp);
            }
            for (k, (u, i)) in s.train.iter().enumerate() {
                proptest::prop_assert_eq!(s.train_times[k], first[&(u, i)]);
            }
        }
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
