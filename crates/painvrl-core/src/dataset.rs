//! In-memory dataset types shared by every crate: interactions, item features and the CSR index.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// A list of (user, item) interaction pairs, stored as two parallel id columns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interactions {
    /// User id of each interaction.
    pub users: Vec<u32>,
    /// Item id of each interaction.
    pub items: Vec<u32>,
}

impl Interactions {
    /// Builds a list from (user, item) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let (users, items) = pairs.into_iter().unzip();
        Interactions { users, items }
    }

    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no interactions.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Appends one interaction.
    pub fn push(&mut self, user: u32, item: u32) {
        self.users.push(user);
        self.items.push(item);
    }

    /// Iterates over (user, item) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.users.iter().copied().zip(self.items.iter().copied())
    }

    /// The interactions at the given positions.
    pub fn select(&self, positions: &[usize]) -> Interactions {
        Interactions::from_pairs(positions.iter().map(|&p| (self.users[p], self.items[p])))
    }

    /// Number of interactions per item (`n_items` entries).
    pub fn item_degrees(&self, n_items: usize) -> Vec<u32> {
        let mut d = vec![0u32; n_items];
        for &i in &self.items {
            d[i as usize] += 1;
        }
        d
    }

    /// Number of interactions per user (`n_users` entries).
    pub fn user_degrees(&self, n_users: usize) -> Vec<u32> {
        let mut d = vec![0u32; n_users];
        for &u in &self.users {
            d[u as usize] += 1;
        }
        d
    }

    /// The two id columns as int64 tensors on `device`.
    pub fn to_tensors(&self, device: Device) -> (Tensor, Tensor) {
        let u: Vec<i64> = self.users.iter().map(|&x| x as i64).collect();
        let i: Vec<i64> = self.items.iter().map(|&x| x as i64).collect();
        (Tensor::from_slice(&u).to_device(device), Tensor::from_slice(&i).to_device(device))
    }
}

/// One modality's name and feature width.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modality {
    /// Modality name (`image`, `audio`, `text`, `genre`, ...).
    pub name: String,
    /// Number of feature dimensions.
    pub dim: usize,
}

/// Dense item features: all modalities concatenated per item, row-major, `n_items × dim()`.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemFeatures {
    modalities: Vec<Modality>,
    n_items: usize,
    values: Vec<f32>,
}

impl ItemFeatures {
    /// Wraps concatenated feature rows; checks the length and that every value is finite.
    pub fn new(modalities: Vec<Modality>, n_items: usize, values: Vec<f32>) -> Result<Self> {
        let dim: usize = modalities.iter().map(|m| m.dim).sum();
        if modalities.is_empty() || dim == 0 {
            return Err(Error::InvalidData(
                "item features need at least one modality with at least one dimension".into(),
            ));
        }
        if values.len() != n_items * dim {
            return Err(Error::InvalidData(format!(
                "item features hold {} values, expected {n_items} items × {dim} dims",
                values.len()
            )));
        }
        let f = ItemFeatures { modalities, n_items, values };
        if let Some(pos) = f.values.iter().position(|v| !v.is_finite()) {
            let (item, col) = (pos / dim, pos % dim);
            let m = f.modality_of_column(col);
            return Err(Error::InvalidData(format!(
                "modality '{}' has a non-finite value at item {item}, dim {}",
                f.modalities[m].name,
                col - f.modality_range(m).start
            )));
        }
        Ok(f)
    }

    /// The modalities in column order.
    pub fn modalities(&self) -> &[Modality] {
        &self.modalities
    }

    /// Number of items (rows).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Total width over all modalities.
    pub fn dim(&self) -> usize {
        self.modalities.iter().map(|m| m.dim).sum()
    }

    /// Row-major values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Item `i`'s concatenated feature row.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.values[i * d..(i + 1) * d]
    }

    /// Column range of modality `m`.
    pub fn modality_range(&self, m: usize) -> Range<usize> {
        let start: usize = self.modalities[..m].iter().map(|x| x.dim).sum();
        start..start + self.modalities[m].dim
    }

    /// Index of the modality that owns column `col`.
    pub fn modality_of_column(&self, col: usize) -> usize {
        (0..self.modalities.len()).find(|&m| self.modality_range(m).contains(&col)).unwrap_or(0)
    }

    /// Keeps the rows of the given items, in that order.
    pub fn select_rows(&self, items: &[usize]) -> ItemFeatures {
        let mut values = Vec::with_capacity(items.len() * self.dim());
        for &i in items {
            values.extend_from_slice(self.row(i));
        }
        ItemFeatures { modalities: self.modalities.clone(), n_items: items.len(), values }
    }

    /// Each item's row with every modality's part divided by its Euclidean norm (a part that is
    /// all zeros stays zeros): what loading a dataset directory gives by default, for features
    /// built in process (e.g. by the synthetic generator) that should match a run on files.
    pub fn l2_normalized(&self) -> ItemFeatures {
        let mut values = self.values.clone();
        let d = self.dim();
        for m in 0..self.modalities.len() {
            let cols = self.modality_range(m);
            for row in values.chunks_mut(d.max(1)) {
                let part = &mut row[cols.clone()];
                let norm = part.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    part.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
        ItemFeatures { modalities: self.modalities.clone(), n_items: self.n_items, values }
    }

    /// The features as an `n_items × dim` float tensor on `device`.
    pub fn to_tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.values)
            .reshape([self.n_items as i64, self.dim() as i64])
            .to_kind(Kind::Float)
            .to_device(device)
    }
}

/// A multimodal recommendation dataset with train / validation / test splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short name used in reports.
    pub name: String,
    /// Number of users (largest id + 1).
    pub n_users: usize,
    /// Number of items (feature rows).
    pub n_items: usize,
    /// Training interactions.
    pub train: Interactions,
    /// Validation interactions (model selection only).
    pub val: Interactions,
    /// In-distribution test interactions.
    pub test: Interactions,
    /// Optional cross-environment (OOD) test interactions.
    pub test_ood: Option<Interactions>,
    /// Optional OOD validation slice: a popularity-intervened draw from `val` (a subset of it),
    /// for reporting and OOD model selection without looking at test.
    pub val_ood: Option<Interactions>,
    /// Item content features.
    pub features: ItemFeatures,
    /// When each training interaction happened (Unix seconds, in training-split order), when the
    /// source has timestamps: a rating log, or `train_time.tsv` beside a canonical `train.tsv`.
    /// Observable, unlike [`Dataset::truth`]: the `time-periods` environments are built from it.
    pub train_times: Option<Vec<i64>>,
    /// Ground truth that synthetic or annotated datasets ship: for diagnostics, and the
    /// environments for training only when `envs.strategy = "given"` asks for them.
    pub truth: PlantedTruth,
}

/// Ground truth a dataset may ship (`train_env.tsv`, `invariant_dims.json`); the pipeline
/// reports how close its inferred environments and learned mask come to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlantedTruth {
    /// The environment of every training interaction, in training-split order.
    pub train_envs: Option<Vec<u32>>,
    /// The feature columns that carry invariant preference (0-based, in modality order).
    pub invariant_dims: Option<Vec<usize>>,
}

impl PlantedTruth {
    /// A flag per feature column: whether it is a planted invariant dimension.
    pub fn invariant_mask(&self, dim: usize) -> Option<Vec<bool>> {
        self.invariant_dims.as_ref().map(|d| {
            let mut m = vec![false; dim];
            d.iter().filter(|&&c| c < dim).for_each(|&c| m[c] = true);
            m
        })
    }
}

/// Interaction counts of a dataset, as written in reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetCounts {
    /// Dataset name.
    pub name: String,
    /// Number of users.
    pub users: usize,
    /// Number of items.
    pub items: usize,
    /// Training interactions.
    pub train: usize,
    /// Validation interactions.
    pub val: usize,
    /// Test interactions.
    pub test: usize,
    /// OOD test interactions, when present.
    pub test_ood: Option<usize>,
    /// OOD validation slice interactions, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_ood: Option<usize>,
    /// Modalities in column order.
    pub modalities: Vec<Modality>,
}

impl Dataset {
    /// Checks ids against the user and item counts and that the training split is not empty.
    pub fn validate(&self) -> Result<()> {
        if self.features.n_items() != self.n_items {
            return Err(Error::InvalidData(format!(
                "dataset '{}' declares {} items but its features have {} rows",
                self.name,
                self.n_items,
                self.features.n_items()
            )));
        }
        if self.train.is_empty() {
            return Err(Error::InvalidData(format!("dataset '{}' has an empty training split", self.name)));
        }
        if let Some(e) = &self.truth.train_envs {
            self.check_per_interaction(e.len(), "planted environment labels")?;
        }
        if let Some(t) = &self.train_times {
            self.check_per_interaction(t.len(), "training timestamps")?;
        }
        if let Some(&c) = self.truth.invariant_dims.as_ref().and_then(|d| d.iter().find(|&&c| c >= self.features.dim()))
        {
            return Err(Error::InvalidData(format!(
                "dataset '{}': invariant_dims.json: planted invariant dimension {c} is ≥ the {} feature columns",
                self.name,
                self.features.dim()
            )));
        }
        for (split, x) in self.splits() {
            if let Some((k, (u, i))) =
                x.iter().enumerate().find(|(_, (u, i))| *u as usize >= self.n_users || *i as usize >= self.n_items)
            {
                return Err(Error::InvalidData(format!(
                    "split '{split}', interaction {k}: (user {u}, item {i}) is outside {} users × {} items",
                    self.n_users, self.n_items
                )));
            }
        }
        Ok(())
    }

    /// Checks that a list of `n` values meant as one per training interaction (`what`: labels,
    /// timestamps) has one for each; the error names both counts.
    pub fn check_per_interaction(&self, n: usize, what: &str) -> Result<()> {
        if n != self.train.len() {
            return Err(Error::InvalidData(format!(
                "dataset '{}': {n} {what} for {} training interactions",
                self.name,
                self.train.len()
            )));
        }
        Ok(())
    }

    /// The splits by name (empty or not), the OOD sets last when present.
    pub fn splits(&self) -> Vec<(&'static str, &Interactions)> {
        let mut v = vec![("train", &self.train), ("val", &self.val), ("test", &self.test)];
        if let Some(ood) = &self.test_ood {
            v.push(("test_ood", ood));
        }
        if let Some(ood) = &self.val_ood {
            v.push(("val_ood", ood));
        }
        v
    }

    /// Counts for reports.
    pub fn counts(&self) -> DatasetCounts {
        DatasetCounts {
            name: self.name.clone(),
            users: self.n_users,
            items: self.n_items,
            train: self.train.len(),
            val: self.val.len(),
            test: self.test.len(),
            test_ood: self.test_ood.as_ref().map(Interactions::len),
            val_ood: self.val_ood.as_ref().map(Interactions::len),
            modalities: self.features.modalities().to_vec(),
        }
    }

    /// A one-screen human-readable summary.
    pub fn summary(&self) -> String {
        let density = self.train.len() as f64 / (self.n_users as f64 * self.n_items as f64).max(1.0);
        let mods: Vec<String> = self.features.modalities().iter().map(|m| format!("{} ({})", m.name, m.dim)).collect();
        let mut s = format!(
            "dataset {}: {} users × {} items, train {} / val {} / test {}",
            self.name,
            self.n_users,
            self.n_items,
            self.train.len(),
            self.val.len(),
            self.test.len()
        );
        if let Some(ood) = &self.test_ood {
            s.push_str(&format!(" / test_ood {}", ood.len()));
        }
        if let Some(ood) = &self.val_ood {
            s.push_str(&format!(" / val_ood {}", ood.len()));
        }
        s.push_str(&format!(", train density {:.5}, modalities: {}", density, mods.join(", ")));
        if self.train_times.is_some() {
            s.push_str(", with training timestamps");
        }
        s
    }
}

/// Compressed sparse rows of each user's items, sorted and de-duplicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserItems {
    offsets: Vec<usize>,
    items: Vec<u32>,
}

impl UserItems {
    /// Builds the index from the union of several interaction lists.
    pub fn build(n_users: usize, lists: &[&Interactions]) -> Self {
        let mut counts = vec![0usize; n_users + 1];
        for l in lists {
            for &u in &l.users {
                counts[u as usize + 1] += 1;
            }
        }
        for u in 0..n_users {
            counts[u + 1] += counts[u];
        }
        let mut fill = counts.clone();
        let mut items = vec![0u32; counts[n_users]];
        for l in lists {
            for (u, i) in l.iter() {
                items[fill[u as usize]] = i;
                fill[u as usize] += 1;
            }
        }
        // sort and de-duplicate each row, compacting in place
        let mut offsets = vec![0usize; n_users + 1];
        let mut write = 0;
        for u in 0..n_users {
            let row = &mut items[counts[u]..counts[u + 1]];
            row.sort_unstable();
            let mut last = None;
            for k in counts[u]..counts[u + 1] {
                let v = items[k];
                if last != Some(v) {
                    items[write] = v;
                    write += 1;
                    last = Some(v);
                }
            }
            offsets[u + 1] = write;
        }
        items.truncate(write);
        UserItems { offsets, items }
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Total number of distinct (user, item) pairs.
    pub fn nnz(&self) -> usize {
        self.items.len()
    }

    /// User `u`'s sorted distinct items.
    pub fn items_of(&self, u: usize) -> &[u32] {
        &self.items[self.offsets[u]..self.offsets[u + 1]]
    }

    /// Whether user `u` interacted with item `i`.
    pub fn contains(&self, u: usize, i: u32) -> bool {
        self.items_of(u).binary_search(&i).is_ok()
    }

    /// Row offsets (length `n_users + 1`).
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_normalization_is_per_modality_and_keeps_zero_parts() {
        let modalities = vec![Modality { name: "a".into(), dim: 2 }, Modality { name: "b".into(), dim: 1 }];
        let f = ItemFeatures::new(modalities, 2, vec![3.0, 4.0, -2.0, 0.0, 0.0, 0.5]).unwrap();
        let n = f.l2_normalized();
        assert_eq!(n.values(), &[0.6, 0.8, -1.0, 0.0, 0.0, 1.0]);
        assert_eq!(n.modalities(), f.modalities());
        // idempotent up to rounding
        for (a, b) in n.l2_normalized().values().iter().zip(n.values()) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn user_items_sorts_and_deduplicates_across_lists() {
        let a = Interactions::from_pairs([(1, 5), (0, 3), (1, 2), (1, 5)]);
        let b = Interactions::from_pairs([(1, 4), (2, 0)]);
        let idx = UserItems::build(4, &[&a, &b]);
        assert_eq!(idx.items_of(0), &[3]);
        assert_eq!(idx.items_of(1), &[2, 4, 5]);
        assert_eq!(idx.items_of(2), &[0]);
        assert_eq!(idx.items_of(3), &[] as &[u32]);
        assert_eq!(idx.nnz(), 5);
        assert!(idx.contains(1, 4) && !idx.contains(1, 3));
    }

    #[test]
    fn features_reject_nan_naming_modality_and_row() {
        let mods = vec![Modality { name: "image".into(), dim: 2 }, Modality { name: "audio".into(), dim: 1 }];
        let mut v = vec![0.0f32; 9];
        v[5] = f32::NAN; // item 1, column 2 = audio dim 0
        let e = ItemFeatures::new(mods, 3, v).unwrap_err().to_string();
        assert!(e.contains("audio") && e.contains("item 1") && e.contains("dim 0"), "{e}");
    }

    #[test]
    fn features_reject_wrong_length() {
        let mods = vec![Modality { name: "x".into(), dim: 2 }];
        assert!(ItemFeatures::new(mods, 3, vec![0.0; 5]).is_err());
    }
}
