//! Negative sampling and mini-batches. Parallel with rayon, yet deterministic: each chunk of
//! work draws from its own generator seeded by (seed, chunk index).

use painvrl_core::{Batch, Error, Interactions, Result, UserItems};
use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Tensor};

const CHUNK: usize = 4096;

/// Negative sampler over the catalogue that never returns an item the user has seen: uniform,
/// or weighted by popularity ([`NegativeSampler::popularity_weighted`]).
#[derive(Clone, Debug)]
pub struct NegativeSampler {
    seen: UserItems,
    n_items: usize,
    /// Item draw weights before the seen items are rejected; `None` draws uniformly.
    popularity: Option<WeightedIndex<f64>>,
}

impl NegativeSampler {
    /// A sampler excluding `seen`; fails when some user has seen every item.
    pub fn new(seen: UserItems, n_items: usize) -> Result<Self> {
        if let Some(u) = (0..seen.n_users()).find(|&u| seen.items_of(u).len() >= n_items) {
            return Err(Error::InvalidData(format!(
                "user {u} has interacted with all {n_items} items: no negatives exist"
            )));
        }
        Ok(NegativeSampler { seen, n_items, popularity: None })
    }

    /// Draws item `j` with probability ∝ (1 + n_j)^`exponent`, where n_j is the number of users
    /// whose seen items hold `j`, before rejecting the user's own items: the negatives
    /// then carry the items a user's positives compete with at the top of a ranking, as in
    /// word2vec's unigram^0.75 negatives and DICE's popularity-based negatives. Exponent 0 keeps
    /// the uniform sampler (its draws unchanged); the + 1 keeps unseen items drawable.
    pub fn popularity_weighted(mut self, exponent: f64) -> Result<Self> {
        if !(exponent.is_finite() && exponent >= 0.0) {
            return Err(Error::config(
                "negative_popularity",
                format!("{exponent} is not a finite non-negative exponent"),
            ));
        }
        if exponent == 0.0 {
            self.popularity = None;
            return Ok(self);
        }
        let mut counts = vec![0u32; self.n_items];
        for u in 0..self.seen.n_users() {
            for &j in self.seen.items_of(u) {
                counts[j as usize] += 1;
            }
        }
        let weights = counts.iter().map(|&n| (1.0 + f64::from(n)).powf(exponent));
        let index = WeightedIndex::new(weights).map_err(|e| {
            Error::config("negative_popularity", format!("exponent {exponent} gives unusable weights: {e}"))
        })?;
        self.popularity = Some(index);
        Ok(self)
    }

    /// The positives index it excludes.
    pub fn seen(&self) -> &UserItems {
        &self.seen
    }

    /// `k` negatives for each user in `users`, row-major (`users.len() × k`).
    pub fn sample(&self, users: &[u32], k: usize, seed: u64) -> Vec<u32> {
        let mut out = vec![0u32; users.len() * k];
        out.par_chunks_mut(CHUNK * k.max(1)).zip(users.par_chunks(CHUNK)).enumerate().for_each(|(c, (dst, us))| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for (row, &u) in dst.chunks_mut(k.max(1)).zip(us) {
                let pos = self.seen.items_of(u as usize);
                for slot in row.iter_mut() {
                    *slot = loop {
                        let j = match &self.popularity {
                            None => rng.gen_range(0..self.n_items as u32),
                            Some(weighted) => weighted.sample(&mut rng) as u32,
                        };
                        if pos.binary_search(&j).is_err() {
                            break j;
                        }
                    };
                }
            }
        });
        out
    }
}

/// Shuffled positions `0..n` cut into batches of `batch_size` (last one may be short).
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
}

/// Builds a training batch from interactions at `positions`, with `k` negatives per positive.
pub fn make_batch(
    train: &Interactions,
    positions: &[usize],
    sampler: &NegativeSampler,
    k: usize,
    seed: u64,
    device: Device,
) -> Batch {
    let users: Vec<u32> = positions.iter().map(|&p| train.users[p]).collect();
    let items: Vec<i64> = positions.iter().map(|&p| train.items[p] as i64).collect();
    let negs = sampler.sample(&users, k, seed);
    // one host buffer [users | positives | negatives] and one copy to the device
    let b = positions.len();
    let mut ids: Vec<i64> = Vec::with_capacity(b * (2 + k));
    ids.extend(users.iter().map(|&u| i64::from(u)));
    ids.extend_from_slice(&items);
    ids.extend(negs.into_iter().map(i64::from));
    let all = painvrl_core::to_device_async(&Tensor::from_slice(&ids), device);
    let parts = all.split_with_sizes([b as i64, b as i64, (b * k) as i64], 0);
    Batch {
        users: parts[0].shallow_clone(),
        pos_items: parts[1].shallow_clone(),
        neg_items: parts[2].reshape([b as i64, k as i64]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_returns_a_positive(
            pairs in proptest::collection::vec((0u32..6, 0u32..12), 1..60),
            seed in any::<u64>(),
            k in 1usize..8,
            exponent in prop_oneof![Just(0.0), 0.0f64..2.0],
        ) {
            let x = Interactions::from_pairs(pairs);
            let seen = UserItems::build(6, &[&x]);
            prop_assume!((0..6).all(|u| seen.items_of(u).len() < 12));
            let s = NegativeSampler::new(seen.clone(), 12).unwrap().popularity_weighted(exponent).unwrap();
            let users: Vec<u32> = x.users.clone();
            let negs = s.sample(&users, k, seed);
            prop_assert_eq!(negs.len(), users.len() * k);
            for (r, &u) in users.iter().enumerate() {
                for &j in &negs[r * k..(r + 1) * k] {
                    prop_assert!(j < 12 && !seen.contains(u as usize, j));
                }
            }
            prop_assert_eq!(negs, s.sample(&users, k, seed));
        }
    }

    /// Users 0–2 have seen items {0}, {0, 1}, {0, 1, 2}; user 3 nothing. Item j is then held by
    /// 3, 2, 1, 0 users, so with exponent 1 it weighs 4, 3, 2, 1.
    fn nested_history() -> NegativeSampler {
        let x = Interactions::from_pairs([(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]);
        NegativeSampler::new(UserItems::build(4, &[&x]), 4).unwrap()
    }

    fn frequencies(s: &NegativeSampler, user: u32, draws: usize) -> Vec<f64> {
        let negs = s.sample(&vec![user; draws], 1, 7);
        let mut f = vec![0.0; 4];
        for j in negs {
            f[j as usize] += 1.0 / draws as f64;
        }
        f
    }

    #[test]
    fn popularity_weighted_draws_follow_the_powered_counts_among_unseen_items() {
        let s = nested_history().popularity_weighted(1.0).unwrap();
        // user 3 sees weights 4 : 3 : 2 : 1; user 0 has item 0 removed, leaving 3 : 2 : 1
        for (user, want) in [(3, [0.4, 0.3, 0.2, 0.1]), (0, [0.0, 0.5, 1.0 / 3.0, 1.0 / 6.0])] {
            let got = frequencies(&s, user, 40_000);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 0.01, "user {user}: {got:?} vs {want:?}");
            }
        }
        // exponent 2 on the same counts: 16 : 9 : 4 : 1
        let got = frequencies(&nested_history().popularity_weighted(2.0).unwrap(), 3, 40_000);
        for (g, w) in got.iter().zip([16.0 / 30.0, 9.0 / 30.0, 4.0 / 30.0, 1.0 / 30.0]) {
            assert!((g - w).abs() < 0.01, "{got:?}");
        }
        // user 2 has one unseen item left, whatever its weight
        assert!(s.sample(&[2; 50], 2, 3).iter().all(|&j| j == 3));
    }

    #[test]
    fn exponent_zero_keeps_the_uniform_draws() {
        let users = [0, 1, 2, 3, 3, 0];
        let uniform = nested_history().sample(&users, 5, 11);
        assert_eq!(nested_history().popularity_weighted(0.0).unwrap().sample(&users, 5, 11), uniform);
        assert_ne!(nested_history().popularity_weighted(1.0).unwrap().sample(&users, 5, 11), uniform);
    }

    #[test]
    fn nonsense_exponents_are_refused_by_name() {
        for bad in [-0.5, f64::NAN, f64::INFINITY] {
            let e = nested_history().popularity_weighted(bad).unwrap_err().to_string();
            assert!(e.contains("negative_popularity"), "{e}");
        }
    }

    #[test]
    fn user_with_everything_seen_is_an_error() {
        let x = Interactions::from_pairs([(0, 0), (0, 1)]);
        assert!(NegativeSampler::new(UserItems::build(1, &[&x]), 2).is_err());
    }

    #[test]
    fn batches_cover_every_position_once() {
        let b = epoch_batches(10, 3, 1);
        assert_eq!(b.len(), 4);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
