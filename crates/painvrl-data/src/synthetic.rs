//! A synthetic multimodal dataset with planted invariant and variant feature dimensions and
//! planted environments, for tests and demos. Deterministic per seed.
//!
//! A click of user u on item i has logit `invariant_strength · a_u · z_i + s_e · b_u · v_i`: a
//! stable preference through the invariant dimensions `z_i`, plus a spurious, per-user affinity
//! through the variant dimensions `v_i` (as rich as the stable one, so plain accuracy cannot tell
//! the two apart) whose strength `s_e` depends on the environment. Every training interaction
//! comes from one environment drawn at random, so a user's history mixes environments: the
//! variant dimensions correlate with clicks in training, but with a strength that differs across
//! environments — what an invariance penalty can detect. The OOD environment reverses the
//! spurious affinity (`s = −variant_strength`). A model that leans on the variant dimensions
//! looks good IID and fails OOD.
//!
//! Shift families ([`ShiftFamily`]) choose what the variant dimensions carry: a per-user
//! affinity (`affinity`, the original), one exposure direction shared by every user
//! (`exposure`: `b_u = w` for all u, a global bias towards some content that strengthens or
//! weakens by environment and reverses in the test), or half of each (`mix`).
//!
//! Environments are per interaction on purpose: when a whole user belongs to one environment,
//! a per-user embedding absorbs the environment's bias and the variant dimensions look exactly
//! as invariant as the real ones to any per-environment risk.

use painvrl_core::{Dataset, Interactions, ItemFeatures, Modality, PlantedTruth, Result};
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

/// What the spurious (variant) signal of the generator is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShiftFamily {
    /// A per-user spurious affinity `b_u · v_i`.
    #[default]
    Affinity,
    /// A global exposure factor `w · v_i`, the same direction for every user.
    Exposure,
    /// Half-strength affinity plus half-strength exposure.
    Mix,
}

impl std::str::FromStr for ShiftFamily {
    type Err = painvrl_core::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "affinity" => Ok(ShiftFamily::Affinity),
            "exposure" => Ok(ShiftFamily::Exposure),
            "mix" => Ok(ShiftFamily::Mix),
            _ => Err(painvrl_core::Error::config("family", format!("'{s}' is not one of affinity, exposure, mix"))),
        }
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
    /// Training environments (each training interaction is drawn from one at random).
    pub n_envs: usize,
    /// Draw each user's environment once, for all of its train, val and test clicks (a region,
    /// a platform, a cohort), instead of one per click.
    pub per_user_environments: bool,
    /// Interactions per user in each of train, val, test and test_ood (train gets 4×).
    pub per_user: usize,
    /// Strength of the preference signal.
    pub invariant_strength: f32,
    /// Mean strength of the spurious affinity over the training environments; the OOD
    /// environment has `−variant_strength`.
    pub variant_strength: f32,
    /// Relative spread of the environments' spurious strengths: they are evenly spaced over
    /// `variant_strength · (1 ± env_spread)`.
    pub env_spread: f32,
    /// Feature noise standard deviation.
    pub noise: f32,
    /// What the variant dimensions carry.
    pub family: ShiftFamily,
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
            per_user_environments: false,
            per_user: 5,
            invariant_strength: 3.0,
            variant_strength: 3.0,
            env_spread: 0.5,
            noise: 0.1,
            family: ShiftFamily::Affinity,
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

/// Generates a dataset with planted structure. The features are the generator's own rows, not
/// L2-normalised: `painvrl synth` writes them as they are and loading ([`crate::load_dir`] with
/// the default [`crate::LoadOptions`]) normalises each modality's row, so a run on the files
/// and a run on this dataset see the same interactions and different features (on the planted
/// shift ERM-UltraGCN's test Recall@20 differs by about 4 %, docs/method.md). Replace
/// `dataset.features` by its [`painvrl_core::ItemFeatures::l2_normalized`] to run in process on
/// what the files give.
pub fn generate(cfg: &SyntheticConfig) -> Result<SyntheticData> {
    // train, val, test and test_ood take 4 + 1 + 1 + 1 = 7 distinct items per user and per unit
    // of per_user; fewer items would silently shorten the later splits
    if cfg.per_user == 0 || 7 * cfg.per_user > cfg.n_items {
        return Err(painvrl_core::Error::config(
            "per_user",
            format!(
                "{} needs 1 ≤ 7 × per_user ≤ n_items = {} (every user clicks 7 × per_user distinct items)",
                cfg.per_user, cfg.n_items
            ),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (di, dv) = (cfg.invariant_dims, cfg.variant_dims);
    let d = di + dv;
    let n_envs = cfg.n_envs.max(1);
    let prefs: Vec<Vec<f32>> = (0..cfg.n_users).map(|_| unit(&mut rng, di)).collect();
    let z: Vec<Vec<f32>> = (0..cfg.n_items).map(|_| unit(&mut rng, di)).collect();
    let v: Vec<Vec<f32>> = (0..cfg.n_items).map(|_| unit(&mut rng, dv)).collect();
    let per_user: Vec<Vec<f32>> = (0..cfg.n_users).map(|_| unit(&mut rng, dv)).collect();
    // the affinity family keeps the original random stream; the others draw one more vector
    let spurious_prefs: Vec<Vec<f32>> = match cfg.family {
        ShiftFamily::Affinity => per_user,
        ShiftFamily::Exposure => {
            let w = unit(&mut rng, dv);
            vec![w; cfg.n_users]
        }
        ShiftFamily::Mix => {
            let w = unit(&mut rng, dv);
            per_user.iter().map(|b| b.iter().zip(&w).map(|(x, y)| 0.5 * (x + y)).collect()).collect()
        }
    };
    // environment strengths s_e are evenly spaced over variant_strength · (1 ± env_spread), so
    // their mean equals variant_strength; the OOD environment reverses the affinity
    let env_strength: Vec<f32> = (0..n_envs)
        .map(|e| {
            let t = if n_envs == 1 { 0.0 } else { 2.0 * e as f32 / (n_envs - 1) as f32 - 1.0 };
            cfg.variant_strength * (1.0 + cfg.env_spread * t)
        })
        .collect();
    let ood_strength = -cfg.variant_strength;
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
    // one click of user u in an environment of bias strength s: Gumbel-max sampling over the
    // items the user does not have yet
    let draw = |u: usize, s: f32, taken: &mut std::collections::HashSet<u32>, rng: &mut ChaCha8Rng| -> Option<u32> {
        (0..cfg.n_items as u32)
            .filter(|i| !taken.contains(i))
            .map(|i| {
                let logit = cfg.invariant_strength * dot(&prefs[u], &z[i as usize])
                    + s * dot(&spurious_prefs[u], &v[i as usize]);
                (logit - (-(rng.gen_range(f32::EPSILON..1.0f32)).ln()).ln(), i)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| {
                taken.insert(i);
                i
            })
    };
    let (mut train, mut val, mut test, mut ood): (Interactions, Interactions, Interactions, Interactions) =
        Default::default();
    let mut train_envs = Vec::new();
    for u in 0..cfg.n_users {
        let mut taken = std::collections::HashSet::new();
        // drawn only when asked for, so that per-click sets keep their random stream
        let user_env = cfg.per_user_environments.then(|| rng.gen_range(0..n_envs));
        let mut iid = |x: &mut Interactions, n: usize, envs: Option<&mut Vec<u32>>, rng: &mut ChaCha8Rng| {
            let mut labels = Vec::new();
            for _ in 0..n {
                let e = user_env.unwrap_or_else(|| rng.gen_range(0..n_envs));
                if let Some(i) = draw(u, env_strength[e], &mut taken, rng) {
                    x.push(u as u32, i);
                    labels.push(e as u32);
                }
            }
            if let Some(out) = envs {
                out.extend(labels);
            }
        };
        iid(&mut train, 4 * cfg.per_user, Some(&mut train_envs), &mut rng);
        iid(&mut val, cfg.per_user, None, &mut rng);
        iid(&mut test, cfg.per_user, None, &mut rng);
        for _ in 0..cfg.per_user {
            if let Some(i) = draw(u, ood_strength, &mut taken, &mut rng) {
                ood.push(u as u32, i);
            }
        }
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
        val_ood: None,
        train_times: None,
        truth: PlantedTruth {
            train_envs: Some(train_envs.clone()),
            invariant_dims: Some((0..d).filter(|&c| invariant_mask[c]).collect()),
        },
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
        assert_eq!(a.dataset.truth.train_envs.as_ref(), Some(&a.train_envs));
    }

    #[test]
    fn per_user_sets_every_split_size_and_a_catalogue_too_small_is_an_error() {
        let cfg = SyntheticConfig { n_users: 10, n_items: 70, per_user: 10, ..Default::default() };
        let d = generate(&cfg).unwrap().dataset;
        // every user can take its 7 × 10 distinct items, so no split comes out short
        assert_eq!(d.train.len(), 10 * 40);
        assert_eq!((d.val.len(), d.test.len()), (10 * 10, 10 * 10));
        assert_eq!(d.test_ood.as_ref().unwrap().len(), 10 * 10);
        for (per_user, n_items) in [(11, 70), (0, 70)] {
            let e = generate(&SyntheticConfig { per_user, n_items, ..cfg.clone() }).unwrap_err().to_string();
            assert!(e.contains("per_user") && e.contains("n_items = 70"), "{e}");
        }
    }

    #[test]
    fn per_user_environments_hold_for_all_of_a_users_clicks() {
        let labels_by_user = |per_user_environments: bool| {
            let cfg = SyntheticConfig { n_users: 40, n_items: 80, per_user_environments, ..Default::default() };
            let syn = generate(&cfg).unwrap();
            let mut by_user = vec![std::collections::BTreeSet::new(); cfg.n_users];
            for (&u, &e) in syn.dataset.train.users.iter().zip(&syn.train_envs) {
                by_user[u as usize].insert(e);
            }
            by_user
        };
        let per_user = labels_by_user(true);
        assert!(per_user.iter().all(|envs| envs.len() == 1), "one environment per user");
        let users_in = |e: u32| per_user.iter().filter(|envs| envs.contains(&e)).count();
        assert!(users_in(0) > 0 && users_in(1) > 0, "both environments have users");
        // per click (the default), most users see both environments among 20 clicks
        let per_click = labels_by_user(false);
        assert!(per_click.iter().filter(|envs| envs.len() == 2).count() > 30);
    }

    #[test]
    fn exposure_family_shifts_every_user_the_same_way() {
        // with only the spurious signal, exposure makes the training catalogue's click counts
        // concentrate on the items the shared direction favours: item popularity in train and
        // in the reversed OOD test are negatively correlated
        let cfg = SyntheticConfig {
            n_users: 200,
            n_items: 60,
            invariant_strength: 0.0,
            variant_strength: 6.0,
            family: ShiftFamily::Exposure,
            ..Default::default()
        };
        let d = generate(&cfg).unwrap().dataset;
        let (tr, ood) = (d.train.item_degrees(60), d.test_ood.as_ref().unwrap().item_degrees(60));
        let mean = |v: &[u32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let (mt, mo) = (mean(&tr), mean(&ood));
        let cov: f64 = tr.iter().zip(&ood).map(|(&a, &b)| (a as f64 - mt) * (b as f64 - mo)).sum();
        assert!(cov < 0.0, "train and OOD popularity should be anti-correlated, covariance {cov}");
        assert!("sideways".parse::<ShiftFamily>().is_err());
    }
}
