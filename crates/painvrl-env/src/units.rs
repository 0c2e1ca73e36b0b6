//! What one environment label covers ([`Unit`]): the inference labels units — interactions,
//! or users with at least one training interaction — and every interaction takes its unit's
//! label.

use crate::Unit;
use painvrl_core::Dataset;
use tch::{Device, Tensor};

/// The unit of every training interaction, numbered densely.
pub(crate) struct Units {
    /// Unit of each training interaction; `None` when every interaction is its own unit.
    of_interaction: Option<Vec<u32>>,
    /// The sums' and means' gather, built once: `of_interaction` as an index and each unit's
    /// interaction count (both on the CPU); `None` as above.
    gather: Option<(Tensor, Tensor)>,
    /// Number of units.
    pub(crate) count: usize,
}

impl Units {
    /// The units of `data`'s training interactions. Users are numbered in id order, skipping
    /// those without training interactions, so that no unit is empty.
    pub(crate) fn new(unit: Unit, data: &Dataset) -> Units {
        match unit {
            Unit::Interaction => Units { of_interaction: None, gather: None, count: data.train.len() },
            Unit::User => {
                let degrees = data.train.user_degrees(data.n_users);
                let mut dense = vec![u32::MAX; data.n_users];
                let mut count = 0usize;
                for (u, &d) in degrees.iter().enumerate() {
                    if d > 0 {
                        dense[u] = count as u32;
                        count += 1;
                    }
                }
                let of: Vec<u32> = data.train.users.iter().map(|&u| dense[u as usize]).collect();
                let index = Tensor::from_slice(&of.iter().map(|&k| i64::from(k)).collect::<Vec<_>>());
                let mut sizes = vec![0f32; count];
                for &k in &of {
                    sizes[k as usize] += 1.0;
                }
                Units { of_interaction: Some(of), gather: Some((index, Tensor::from_slice(&sizes))), count }
            }
        }
    }

    /// The label of every interaction from its unit's.
    pub(crate) fn expand(&self, unit_labels: &[u32]) -> Vec<u32> {
        match &self.of_interaction {
            None => unit_labels.to_vec(),
            Some(of) => of.iter().map(|&k| unit_labels[k as usize]).collect(),
        }
    }

    /// Per-interaction values `[E, n]` (on the CPU) summed over each unit: `[E, units]`.
    pub(crate) fn sum(&self, per_interaction: &Tensor) -> Tensor {
        match &self.gather {
            None => per_interaction.shallow_clone(),
            Some((index, _)) => {
                let rows = per_interaction.size()[0];
                Tensor::zeros([rows, self.count as i64], (per_interaction.kind(), Device::Cpu)).index_add(
                    1,
                    index,
                    per_interaction,
                )
            }
        }
    }

    /// Per-interaction values `[E, n]` averaged over each unit: `[E, units]`.
    pub(crate) fn mean(&self, per_interaction: &Tensor) -> Tensor {
        match &self.gather {
            None => per_interaction.shallow_clone(),
            Some((_, sizes)) => self.sum(per_interaction) / sizes,
        }
    }

    /// The label of every unit from per-interaction labels: the most frequent among its
    /// interactions, ties to the smaller label.
    pub(crate) fn majority(&self, labels: &[u32], n_envs: usize) -> Vec<u32> {
        match &self.of_interaction {
            None => labels.to_vec(),
            Some(of) => {
                let mut votes = vec![0usize; self.count * n_envs];
                for (&k, &l) in of.iter().zip(labels) {
                    votes[k as usize * n_envs + l as usize] += 1;
                }
                votes
                    .chunks(n_envs)
                    .map(|v| (0..n_envs).max_by_key(|&e| (v[e], std::cmp::Reverse(e))).unwrap_or(0) as u32)
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use painvrl_core::{Interactions, ItemFeatures, Modality};

    /// Four users, user 2 without training interactions.
    fn data() -> Dataset {
        let mut train = Interactions::default();
        for (u, i) in [(0u32, 0u32), (3, 1), (0, 2), (1, 0), (3, 3), (0, 1)] {
            train.push(u, i);
        }
        let features = ItemFeatures::new(vec![Modality { name: "a".into(), dim: 1 }], 4, vec![0.0; 4]).unwrap();
        Dataset {
            name: "units".into(),
            n_users: 4,
            n_items: 4,
            train,
            val: Interactions::default(),
            test: Interactions::default(),
            test_ood: None,
            val_ood: None,
            features,
            train_times: None,
            truth: Default::default(),
        }
    }

    #[test]
    fn users_are_numbered_densely_and_labels_expand_to_their_interactions() {
        let ds = data();
        let units = Units::new(Unit::User, &ds);
        assert_eq!(units.count, 3, "user 2 has no training interaction");
        // users 0, 1, 3 are units 0, 1, 2
        assert_eq!(units.expand(&[5, 6, 7]), vec![5, 7, 5, 6, 7, 5]);
        let one = Units::new(Unit::Interaction, &ds);
        assert_eq!(one.count, 6);
        assert_eq!(one.expand(&[1, 0, 1, 0, 1, 1]), vec![1, 0, 1, 0, 1, 1]);
    }

    #[test]
    fn sums_and_means_gather_a_users_interactions() {
        let ds = data();
        let units = Units::new(Unit::User, &ds);
        let ll = Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6., -1., -2., -3., -4., -5., -6.]).reshape([2, 6]);
        let sum = Vec::<f32>::try_from(units.sum(&ll).reshape([-1])).unwrap();
        // user 0: positions 0, 2, 5; user 1: 3; user 3: 1, 4
        assert_eq!(sum, vec![10., 4., 7., -10., -4., -7.]);
        let mean = Vec::<f32>::try_from(units.mean(&ll).reshape([-1])).unwrap();
        let expected = [10. / 3., 4., 3.5, -10. / 3., -4., -3.5];
        assert!(mean.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6), "{mean:?}");
        let one = Units::new(Unit::Interaction, &ds);
        assert!(one.sum(&ll).equal(&ll) && one.mean(&ll).equal(&ll));
    }

    #[test]
    fn a_users_label_is_the_majority_of_its_interactions() {
        let ds = data();
        let units = Units::new(Unit::User, &ds);
        // user 0 votes 2, 2, 0; user 1 votes 1; user 3 votes 0, 1 (a tie: the smaller)
        assert_eq!(units.majority(&[2, 0, 2, 1, 1, 0], 3), vec![2, 1, 0]);
        assert_eq!(Units::new(Unit::Interaction, &ds).majority(&[2, 0, 2, 1, 1, 0], 3), vec![2, 0, 2, 1, 1, 0]);
    }
}
