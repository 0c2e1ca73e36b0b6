//! EIIL (Creager et al., 2021) for recommendation: the two environments that maximise a
//! reference model's IRMv1 penalty.

use crate::models::{prepare, reseed_empty, train_on_all, EnvModels};
use crate::{GainOn, HeteroConfig};
use painvrl_core::optim::{Adam, GroupHyper};
use painvrl_core::{Checked, Dataset, EnvironmentAssignment, EnvironmentInference, Error, Result};
use painvrl_data::NegativeSampler;
use rand::Rng;
use std::time::Instant;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// EIIL (Creager et al., 2021) for recommendation: train one reference scoring model on all
/// interactions (ERM, the same model family as [`HeterogeneousIdentification`](crate::HeterogeneousIdentification)), then find the
/// soft split q ∈ [0, 1]ⁿ of the training interactions into two environments that *maximises*
/// the reference model's IRMv1 penalty Σ_e (n_e/n)·(∂R_e(w·s)/∂w |_{w=1})² (see
/// [`eiil_penalty`] for the size weight), by gradient ascent on the
/// logits of q; labels are q ≥ ½. The environments it returns are where the reference model's
/// calibration differs most — the signature of a spurious correlation whose strength varies.
pub struct Eiil {
    /// Options (the reference model uses `epochs`, `batch_size`, `negatives`, `dim`, `lr`;
    /// the split uses `eiil_steps` and `eiil_lr`).
    pub config: Checked<HeteroConfig>,
    /// Device.
    pub device: Device,
}

impl Eiil {
    /// With the given options on `device`.
    pub fn new(config: Checked<HeteroConfig>, device: Device) -> Self {
        Eiil { config, device }
    }

    /// Per-interaction derivative of the reference loss with respect to a dummy scale w_k on
    /// every content dimension, at w = 1, `[n, c]` in training-split order: with
    /// s = (γ ⊙ p_u) · ((x ⊙ w) W) + (x ⊙ w) · a, it is `(σ(s⁺) − 1)·x⁺ ⊙ h_u + mean_j σ(s⁻_j)·x⁻_j ⊙ h_u`
    /// where h_u = W (γ ⊙ p_u) + a (with gains g on the content dimensions, h_u = diag(g) W p_u + a).
    fn scale_gradients(
        &self,
        model: &EnvModels,
        data: &Dataset,
        content: &Tensor,
        sampler: &NegativeSampler,
        seed: u64,
    ) -> Tensor {
        let k = self.config.negatives as i64;
        let mut parts = Vec::new();
        tch::no_grad(|| {
            let users = match model.gain_on {
                GainOn::Factor => model.users.get(0) * model.gain.get(0),
                GainOn::Content => model.users.get(0),
            };
            let proj = model.projection().get(0);
            let exposure = model.exposure.get(0);
            for chunk in (0..data.train.len()).collect::<Vec<_>>().chunks(8192) {
                let us: Vec<u32> = chunk.iter().map(|&p| data.train.users[p]).collect();
                let u: Vec<i64> = us.iter().map(|&x| x as i64).collect();
                let i: Vec<i64> = chunk.iter().map(|&p| data.train.items[p] as i64).collect();
                let negs: Vec<i64> =
                    sampler.sample(&us, k as usize, seed ^ chunk[0] as u64).into_iter().map(i64::from).collect();
                let n = chunk.len() as i64;
                let h = users.index_select(0, &Tensor::from_slice(&u).to_device(self.device)).matmul(&proj.tr())
                    + &exposure; // [n, c]
                let xp = content.index_select(0, &Tensor::from_slice(&i).to_device(self.device)); // [n, c]
                let xn = content.index_select(0, &Tensor::from_slice(&negs).to_device(self.device)).reshape([n, k, -1]); // [n, k, c]
                let sp = (&xp * &h).sum_dim_intlist([1i64].as_slice(), true, Kind::Float); // [n, 1]
                let sn = (&xn * h.unsqueeze(1)).sum_dim_intlist([2i64].as_slice(), true, Kind::Float); // [n, k, 1]
                let gp = (sp.sigmoid() - 1.0) * &xp * &h;
                let gn = (sn.sigmoid() * &xn).mean_dim([1i64].as_slice(), false, Kind::Float) * &h;
                parts.push(gp + gn);
            }
        });
        Tensor::cat(&parts, 0)
    }
}

/// The two-environment IRMv1 penalty of per-interaction scale gradients `g` (`[n]`, or `[n, c]`
/// with one dummy scale per content dimension) under the soft assignment `q` (weight of
/// environment 0; 1 − q for environment 1), each environment's squared mean gradient weighted
/// by its share of the interactions: Σ_e (n_e / n) · ‖ḡ_e‖².
/// The size weight is our change to EIIL: with the unweighted sum, a handful of interactions
/// with extreme gradients form a degenerate environment that maximises the penalty (measured
/// on the synthetic generator: 11 of 4,000 interactions).
pub fn eiil_penalty(g: &Tensor, q: &Tensor) -> Tensor {
    let n = g.size()[0] as f64;
    let g = if g.dim() == 1 { g.unsqueeze(1) } else { g.shallow_clone() };
    let env = |w: &Tensor| {
        let total = (w.unsqueeze(1) * &g).sum_dim_intlist([0i64].as_slice(), false, Kind::Float);
        total.square().sum(Kind::Float) / ((w.sum(Kind::Float) + 1e-12) * n)
    };
    env(q) + env(&(q.ones_like() - q))
}

impl EnvironmentInference for Eiil {
    fn name(&self) -> &str {
        "eiil"
    }

    fn infer(&mut self, data: &Dataset, variant: Option<&Tensor>, seed: u64) -> Result<EnvironmentAssignment> {
        let t0 = Instant::now();
        let cfg = self.config.clone();
        let (mut rng, content, sampler) = prepare(data, variant, seed, self.device)?;
        let reference = train_on_all(&cfg, self.device, data, &content, &sampler, &mut rng);
        let g = self.scale_gradients(&reference, data, &content, &sampler, rng.gen());
        // maximise the penalty over the soft split, from a small random start (a symmetric
        // start is a stationary point)
        let vs = VarStore::new(self.device);
        let logits = vs.root().var("q", &[data.train.len() as i64], nn::Init::Randn { mean: 0.0, stdev: 0.01 });
        let mut opt = Adam::new(&vs, &[GroupHyper { lr: cfg.eiil_lr, weight_decay: 0.0 }]);
        for _ in 0..cfg.eiil_steps {
            opt.zero_grad();
            let loss = -eiil_penalty(&g, &logits.sigmoid());
            loss.backward();
            opt.step();
        }
        let q: Vec<f32> =
            Vec::try_from(tch::no_grad(|| logits.sigmoid()).to_device(Device::Cpu)).map_err(Error::from)?;
        let mut labels: Vec<u32> = q.iter().map(|&x| u32::from(x < 0.5)).collect();
        let reseeded = reseed_empty(&mut labels, 2, &mut rng);
        let mut out = EnvironmentAssignment::from_labels(labels, 2);
        out.iterations = 1;
        out.reseeded = reseeded;
        out.seconds = t0.elapsed().as_secs_f64();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::serial;
    use crate::{nmi, RandomEnvironments, Strategy, Unit};
    use painvrl_core::Validate;

    #[test]
    fn eiil_penalty_golden_values() {
        let g = Tensor::from_slice(&[1.0f32, 1.0, -1.0, -1.0]);
        let split = eiil_penalty(&g, &Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0])).double_value(&[]);
        assert!((split - 1.0).abs() < 1e-6, "{split}");
        // one environment holding everything: its mean gradient is 0, the other is empty
        let pooled = eiil_penalty(&g, &Tensor::ones([4], (Kind::Float, Device::Cpu))).double_value(&[]);
        assert!(pooled.abs() < 1e-6, "{pooled}");
    }

    #[test]
    fn eiil_makes_two_balanced_environments() {
        let _turn = serial();
        tch::manual_seed(0);
        let syn = painvrl_data::generate(&painvrl_data::SyntheticConfig {
            n_users: 200,
            n_items: 300,
            n_envs: 2,
            env_spread: 1.0,
            ..Default::default()
        })
        .unwrap();
        let base = RandomEnvironments { n_envs: 2, unit: Unit::Interaction }.infer(&syn.dataset, None, 1).unwrap();
        // the reference model with its gain on the latent factors (default) or on the content
        for gain_on in [GainOn::Factor, GainOn::Content] {
            let cfg = HeteroConfig { strategy: Strategy::Eiil, epochs: 10, gain_on, ..Default::default() };
            let got = Eiil::new(cfg.check().unwrap(), Device::Cpu).infer(&syn.dataset, None, 1).unwrap();
            let (h, r) = (nmi(&got.labels, &syn.train_envs), nmi(&base.labels, &syn.train_envs));
            eprintln!("{gain_on:?}: NMI EIIL {h:.4} random {r:.4}; sizes {:?}", got.sizes);
            assert_eq!(got.sizes.iter().sum::<usize>(), syn.dataset.train.len());
            // the size-weighted penalty keeps both environments substantial (the unweighted one
            // put 11 of 4,000 interactions in one); recovery of the planted split is weak:
            // measured NMI 0.0040 against 0.0001 for random labels, not asserted
            let substantial = got.sizes.iter().all(|&n| n * 10 >= syn.dataset.train.len());
            assert!(substantial, "{gain_on:?}: degenerate split {:?}", got.sizes);
            assert!(h >= r, "{gain_on:?}: EIIL NMI {h} below random {r}");
        }
    }
}
