//! A synthetic multimodal dataset with planted invariant and variant feature dimensions and
//! planted environments, for tests and demos. Deterministic per seed.
//!
//! Users like items through invariant dimensions only (`a_u · z_i`). Each training environment
//! also pushes exposure along its own direction of the variant dimensions (`b_e · v_i`, where
//! `b_e` mixes a shared spurious direction with an environment-specific one), so in training data
//! the variant dimensions correlate with clicks; the OOD environment reverses the shared
//! direction. A model that leans on variant dimensions looks good IID and fails OOD.

use painvrl_core::{Dataset, Interactions, ItemFeatures, Modality, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr_normal::standard_normal;
use serde::{Deserialize, Serialize};

mod rand_distr_normal {
    use rand::Rng;
    /// One standard-normal draw by Box–Muller.
    pub fn standard_normal(rng: &mut impl Rng) -> f32 {
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// Parameters of the generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Users.
    pub n_users: usize,
    /// Items.
    pub n_items: usize,
    /// Invariant feature dimensions.
    pub invariant_dims: usize,
    /// Variant (spurious) feature dimensions.
    pub variant_dims: usize,
    /// Training environments.
    pub n_envs: usize,
    /// Interactions per user in each of train, val, test and test_ood (train gets 4×).
    pub per_user: usize,
    /// Strength of the preference signal.
    pub invariant_strength: f32,
    /// Strength of the environment's spurious exposure.
    pub variant_strength: f32,
    /// Feature noise standard deviation.
    pub noise: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            n_users: 300,
            n_items: 400,
            invariant_dims: 8,
            variant_dims: 8,
            n_envs: 2,
            per_user: 5,
            invariant_strength: 3.0,
            variant_strength: 3.0,
            noise: 0.1,
            seed: 0,
        }
    }
}

/// The generated dataset and its ground truth.
#[derive(Clone, Debug)]
pub struct SyntheticData {
    /// The dataset, with `test_ood` from the shifted environment.
    pub dataset: Dataset,
    /// Which feature columns are invariant (true) or variant (false).
    pub invariant_mask: Vec<bool>,
    /// Planted environment of each training interaction.
    pub train_envs: Vec<u32>,
}

/// Generates a dataset with planted structure.
pub fn generate(cfg: &SyntheticConfig) -> Result<SyntheticData> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (di, dv) = (cfg.invariant_dims, cfg.variant_dims);
    let d = di + dv;
    let prefs: Vec<Vec<f32>> = (0..cfg.n_users).map(|_| unit(&mut rng, di)).collect();
    let z: Vec<Vec<f32>> = (0..cfg.n_items).map(|_| unit(&mut rng, di)).collect();
    let v: Vec<Vec<f32>> = (0..cfg.n_items).map(|_| unit(&mut rng, dv)).collect();
    // each training environment exposes items along its own direction of the variant space;
    // the directions share a common component, which the OOD environment reverses
    let spurious = unit(&mut rng, dv);
    let env_dirs: Vec<Vec<f32>> = (0..cfg.n_envs)
        .map(|_| {
            let own = unit(&mut rng, dv);
            let mixed: Vec<f32> = spurious.iter().zip(&own).map(|(c, o)| c + o).collect();
            let n = mixed.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            mixed.into_iter().map(|x| x / n).collect()
        })
        .collect();
    let ood_dir: Vec<f32> = spurious.iter().map(|x| -x).collect();
    // column order: a random permutation of invariant and variant dims
    let mut cols: Vec<usize> = (0..d).collect();
    cols.shuffle(&mut rng);
    let invariant_mask: Vec<bool> = (0..d).map(|c| cols[c] < di).collect();
    let mut values = vec![0f32; cfg.n_items * d];
    for i in 0..cfg.n_items {
        for c in 0..d {
            let src = cols[c];
            let base = if src < di { z[i][src] } else { v[i][src - di] };
            values[i * d + c] = base + cfg.noise * standard_normal(&mut rng);
        }
    }
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let draw = |u: usize,
                dir: &[f32],
                n: usize,
                taken: &mut std::collections::HashSet<u32>,
                rng: &mut ChaCha8Rng|
     -> Vec<u32> {
        let logits: Vec<f32> = (0..cfg.n_items)
            .map(|i| cfg.invariant_strength * dot(&prefs[u], &z[i]) + cfg.variant_strength * dot(dir, &v[i]))
            .collect();
        let mut out = Vec::new();
        // Gumbel-top-n sampling without replacement, skipping items the user already has
        let mut keyed: Vec<(f32, u32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (l - (-(rng.gen_range(f32::EPSILON..1.0f32)).ln()).ln(), i as u32))
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, i) in keyed {
            if out.len() == n {
                break;
            }
            if taken.insert(i) {
                out.push(i);
            }
        }
        out
    };
    let (mut train, mut val, mut test, mut ood) = Default::default();
    let mut train_envs = Vec::new();
    for u in 0..cfg.n_users {
        let mut taken = std::collections::HashSet::new();
        let env = u % cfg.n_envs.max(1);
        let push = |x: &mut Interactions, items: Vec<u32>| items.into_iter().for_each(|i| x.push(u as u32, i));
        let tr = draw(u, &env_dirs[env], 4 * cfg.per_user, &mut taken, &mut rng);
        train_envs.extend(std::iter::repeat_n(env as u32, tr.len()));
        push(&mut train, tr);
        push(&mut val, draw(u, &env_dirs[env], cfg.per_user, &mut taken, &mut rng));
        push(&mut test, draw(u, &env_dirs[env], cfg.per_user, &mut taken, &mut rng));
        push(&mut ood, draw(u, &ood_dir, cfg.per_user, &mut taken, &mut rng));
    }
    let half = d / 2;
    let modalities = vec![Modality { name: "a".into(), dim: half }, Modality { name: "b".into(), dim: d - half }];
    let features = ItemFeatures::new(modalities, cfg.n_items, values)?;
    let dataset = Dataset {
        name: "synthetic".into(),
        n_users: cfg.n_users,
        n_items: cfg.n_items,
        train,
        val,
        test,
        test_ood: Some(ood),
        features,
    };
    dataset.validate()?;
    Ok(SyntheticData { dataset, invariant_mask, train_envs })
}

fn unit(rng: &mut ChaCha8Rng, d: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d).map(|_| standard_normal(rng)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_consistent() {
        let cfg = SyntheticConfig { n_users: 20, n_items: 50, ..Default::default() };
        let a = generate(&cfg).unwrap();
        let b = generate(&cfg).unwrap();
        assert_eq!(a.dataset.train, b.dataset.train);
        assert_eq!(a.dataset.features, b.dataset.features);
        assert_eq!(a.train_envs.len(), a.dataset.train.len());
        assert_eq!(a.invariant_mask.iter().filter(|&&x| x).count(), cfg.invariant_dims);
        assert_eq!(a.dataset.test_ood.as_ref().unwrap().len(), 20 * cfg.per_user);
    }
}
