//! Environments that need no model: random labels (the ablation), given labels, and
//! equal-count bands of an observable quantity — the clicked item's training popularity, the
//! clicking user's training activity, or when the click happened — the usual suspects of a
//! popularity, activity or temporal shift.

use crate::units::Units;
use crate::Unit;
use painvrl_core::{Dataset, EnvironmentAssignment, EnvironmentInference, Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// Uniformly random environments (the ablation).
pub struct RandomEnvironments {
    /// Number of environments.
    pub n_envs: usize,
    /// What one label covers: each interaction draws its own, or each user one for all of its
    /// training interactions.
    pub unit: Unit,
}

impl EnvironmentInference for RandomEnvironments {
    fn name(&self) -> &str {
        "random"
    }

    fn infer(&mut self, data: &Dataset, _variant: Option<&Tensor>, seed: u64) -> Result<EnvironmentAssignment> {
        if self.n_envs < 2 {
            return Err(Error::config("envs.n_envs", "need at least 2 environments"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let units = Units::new(self.unit, data);
        let labels: Vec<u32> = (0..units.count).map(|_| rng.gen_range(0..self.n_envs as u32)).collect();
        Ok(EnvironmentAssignment::from_labels(units.expand(&labels), self.n_envs))
    }
}

/// Known labels, e.g. the planted environments of the synthetic generator.
pub struct GivenEnvironments {
    /// Label of each training interaction.
    pub labels: Vec<u32>,
}

impl EnvironmentInference for GivenEnvironments {
    fn name(&self) -> &str {
        "given"
    }

    fn infer(&mut self, data: &Dataset, _variant: Option<&Tensor>, _seed: u64) -> Result<EnvironmentAssignment> {
        data.check_per_interaction(self.labels.len(), "environment labels")?;
        let n = self.labels.iter().max().map_or(0, |&m| m as usize + 1);
        Ok(EnvironmentAssignment::from_labels(self.labels.clone(), n))
    }
}

/// Labels each value with its equal-count band among `n_envs` (ties broken by position, so the
/// bands' sizes differ by at most one): band 0 holds the smallest values.
pub fn equal_count_bands<T: Ord + Copy>(values: &[T], n_envs: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&k| (values[k], k));
    let mut labels = vec![0u32; values.len()];
    for (rank, &k) in order.iter().enumerate() {
        labels[k] = (rank * n_envs / values.len().max(1)) as u32;
    }
    labels
}

/// The assignment of each training interaction to the equal-count band of its `values` entry.
fn band_assignment<T: Ord + Copy>(values: &[T], n_envs: usize) -> Result<EnvironmentAssignment> {
    if n_envs < 2 {
        return Err(Error::config("envs.n_envs", "need at least 2 environments"));
    }
    Ok(EnvironmentAssignment::from_labels(equal_count_bands(values, n_envs), n_envs))
}

/// Environments as equal-count bands of the clicked item's training popularity.
pub struct PopularityBands {
    /// Number of environments.
    pub n_envs: usize,
}

impl EnvironmentInference for PopularityBands {
    fn name(&self) -> &str {
        "popularity-bands"
    }

    fn infer(&mut self, data: &Dataset, _variant: Option<&Tensor>, _seed: u64) -> Result<EnvironmentAssignment> {
        let pop = data.train.item_degrees(data.n_items);
        let values: Vec<u32> = data.train.items.iter().map(|&i| pop[i as usize]).collect();
        band_assignment(&values, self.n_envs)
    }
}

/// Environments as equal-count bands of the clicking user's training activity.
pub struct ActivityBands {
    /// Number of environments.
    pub n_envs: usize,
}

impl EnvironmentInference for ActivityBands {
    fn name(&self) -> &str {
        "activity-bands"
    }

    fn infer(&mut self, data: &Dataset, _variant: Option<&Tensor>, _seed: u64) -> Result<EnvironmentAssignment> {
        let act = data.train.user_degrees(data.n_users);
        let values: Vec<u32> = data.train.users.iter().map(|&u| act[u as usize]).collect();
        band_assignment(&values, self.n_envs)
    }
}

/// Environments as equal-count periods of the training interactions' timestamps
/// ([`Dataset::train_times`]): environment 0 holds the earliest clicks. Periods of equal count
/// rather than equal length, so that no environment is nearly empty when activity grows over
/// time; interactions at the same instant are split by their position in the training list.
pub struct TimePeriods {
    /// Number of environments.
    pub n_envs: usize,
}

impl EnvironmentInference for TimePeriods {
    fn name(&self) -> &str {
        "time-periods"
    }

    fn infer(&mut self, data: &Dataset, _variant: Option<&Tensor>, _seed: u64) -> Result<EnvironmentAssignment> {
        let times = data.train_times.as_ref().ok_or_else(|| {
            Error::InvalidData(format!(
                "dataset '{}' has no timestamps: time periods need a rating log (interactions.tsv) or \
                 train_time.tsv beside train.tsv",
                data.name
            ))
        })?;
        data.check_per_interaction(times.len(), "training timestamps")?;
        band_assignment(times, self.n_envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_have_equal_counts_and_follow_the_value() {
        let values = [5u32, 1, 9, 1, 7, 3, 3, 8, 2];
        let b = equal_count_bands(&values, 3);
        // sorted: 1(1) 1(3) 2(8) | 3(5) 3(6) 5(0) | 7(4) 8(7) 9(2)
        assert_eq!(b, vec![1, 0, 2, 0, 2, 1, 1, 2, 0]);
        for e in 0..3 {
            assert_eq!(b.iter().filter(|&&x| x == e).count(), 3);
        }
    }

    #[test]
    fn popularity_bands_put_popular_items_in_the_last_band() {
        use painvrl_core::Interactions;
        // item 0 clicked by 4 users, items 1..4 once each
        let train = Interactions::from_pairs([(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 2), (2, 3), (3, 4)]);
        let ds = Dataset {
            name: "t".into(),
            n_users: 4,
            n_items: 5,
            train,
            val: Interactions::default(),
            test: Interactions::default(),
            test_ood: None,
            val_ood: None,
            features: painvrl_core::ItemFeatures::new(
                vec![painvrl_core::Modality { name: "x".into(), dim: 1 }],
                5,
                vec![0.0; 5],
            )
            .unwrap(),
            train_times: None,
            truth: Default::default(),
        };
        let a = PopularityBands { n_envs: 2 }.infer(&ds, None, 0).unwrap();
        assert_eq!(a.labels, vec![1, 1, 1, 1, 0, 0, 0, 0]);
        assert_eq!(a.sizes, vec![4, 4]);
        assert!(PopularityBands { n_envs: 1 }.infer(&ds, None, 0).is_err());
        let act = ActivityBands { n_envs: 2 }.infer(&ds, None, 0).unwrap();
        assert_eq!(act.sizes, vec![4, 4]);
    }

    #[test]
    fn time_periods_put_the_earliest_clicks_first_and_need_timestamps() {
        use painvrl_core::{Interactions, ItemFeatures, Modality};
        let train = Interactions::from_pairs([(0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2)]);
        let mut ds = Dataset {
            name: "t".into(),
            n_users: 3,
            n_items: 3,
            train,
            val: Interactions::default(),
            test: Interactions::default(),
            test_ood: None,
            val_ood: None,
            features: ItemFeatures::new(vec![Modality { name: "x".into(), dim: 1 }], 3, vec![0.0; 3]).unwrap(),
            train_times: Some(vec![50, 10, 40, 20, 30, 60]),
            truth: Default::default(),
        };
        let a = TimePeriods { n_envs: 3 }.infer(&ds, None, 0).unwrap();
        // sorted by time: 10(1) 20(3) | 30(4) 40(2) | 50(0) 60(5)
        assert_eq!(a.labels, vec![2, 0, 1, 0, 1, 2]);
        assert_eq!(a.sizes, vec![2, 2, 2]);
        ds.train_times = Some(vec![1, 2]);
        let e = TimePeriods { n_envs: 3 }.infer(&ds, None, 0).unwrap_err().to_string();
        assert!(e.contains("2 training timestamps for 6"), "{e}");
        ds.train_times = None;
        let e = TimePeriods { n_envs: 3 }.infer(&ds, None, 0).unwrap_err().to_string();
        assert!(e.contains("no timestamps") && e.contains("train_time.tsv"), "{e}");
    }
}
