//! The environment scoring models shared by heterogeneous identification and EIIL: E stacked
//! models `s_e(u, i) = (p_u ⊙ γ_e) · (x̃_i W) + x̃_i · a_e`, their training on a partition of the
//! interactions, and the per-interaction log-likelihoods that assign environments.

use crate::{GainOn, HeteroConfig};
use painvrl_core::ops::gather_rows;
use painvrl_core::optim::{Adam, GroupHyper};
use painvrl_core::{Dataset, Result, UserItems};
use painvrl_data::NegativeSampler;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Reduction, Tensor};

/// E environment scoring models as stacked parameters (see the module documentation).
pub(crate) struct EnvModels {
    pub(crate) vs: VarStore,
    pub(crate) users: Tensor, // [E or 1, n_users, d]
    pub(crate) proj: Tensor,  // [E or 1, c, d]
    /// `[E, d]` (gains on latent factors) or `[E, c]` (on content dimensions): how strongly
    /// each factor or content dimension drives choices in each environment.
    pub(crate) gain: Tensor,
    pub(crate) exposure: Tensor, // [E, c]: how each environment exposes content, independent of the user
    pub(crate) gain_on: GainOn,
}

impl EnvModels {
    /// `e` environments; preference parameters are per environment, or one shared set when
    /// `shared_preference` (then environments differ in their gains and exposure); gains on
    /// the latent factors or the content dimensions (`gain_on`).
    pub(crate) fn new(
        e: usize,
        shared_preference: bool,
        gain_on: GainOn,
        n_users: usize,
        c: usize,
        d: usize,
        device: Device,
    ) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let ep = if shared_preference { 1 } else { e };
        let users =
            root.var("users", &[ep as i64, n_users as i64, d as i64], nn::Init::Randn { mean: 0.0, stdev: 0.1 });
        let b = 1.0 / (c as f64).sqrt();
        let proj = root.var("proj", &[ep as i64, c as i64, d as i64], nn::Init::Uniform { lo: -b, up: b });
        let gained = match gain_on {
            GainOn::Factor => d,
            GainOn::Content => c,
        };
        let gain = root.var("gain", &[e as i64, gained as i64], nn::Init::Const(1.0));
        let exposure = root.var("exposure", &[e as i64, c as i64], nn::Init::Const(0.0));
        EnvModels { vs, users, proj, gain, exposure, gain_on }
    }

    /// The projection each environment applies to content, `[E or 1, c, d]`: `W` itself with
    /// gains on the factors, `diag(g_e) W` per environment with gains on the content
    /// dimensions (`(x ⊙ g_e) W = x (diag(g_e) W)`).
    pub(crate) fn projection(&self) -> Tensor {
        match self.gain_on {
            GainOn::Factor => self.proj.shallow_clone(),
            GainOn::Content => &self.proj * self.gain.unsqueeze(2),
        }
    }

    /// Users' preference rows `[E or 1, len, d]` from `start`, scaled by the factor gains
    /// when the gains are on the factors.
    fn gained_users(&self, start: i64, len: i64) -> Tensor {
        let users = self.users.narrow(1, start, len);
        match self.gain_on {
            GainOn::Factor => users * self.gain.unsqueeze(1),
            GainOn::Content => users,
        }
    }

    pub(crate) fn n_envs(&self) -> i64 {
        self.gain.size()[0]
    }

    /// Scores `[E, b]` of item ids `items [E, b]` for users `users [E, b]` (each row its env).
    /// `table`, when given, is [`EnvModels::item_table`] of the same content.
    pub(crate) fn scores(&self, users: &Tensor, items: &Tensor, content: &Tensor, table: Option<&ItemTable>) -> Tensor {
        let (ep, n_users) = (self.users.size()[0], self.users.size()[1]);
        let (e, b) = (users.size()[0], users.size()[1]);
        let env = Tensor::arange(e, (Kind::Int64, users.device())).unsqueeze(1);
        let flat = if ep == 1 { users.reshape([-1]) } else { (users + &env * n_users).reshape([-1]) };
        let p = self.users.reshape([ep * n_users, -1]).index_select(0, &flat).reshape([e, b, -1]);
        let p = match self.gain_on {
            GainOn::Factor => p * self.gain.unsqueeze(1),
            GainOn::Content => p,
        };
        match table {
            // the catalogue already projected (once when the projection is shared): gather rows
            Some(t) => {
                let (ew, n_items) = (t.projected.size()[0], t.exposure.size()[0]);
                let rows = if ew == 1 { items.reshape([-1]) } else { (items + &env * n_items).reshape([-1]) };
                let h = t.projected.reshape([ew * n_items, -1]).index_select(0, &rows).reshape([e, b, -1]);
                let at = (items + &env * n_items).reshape([-1]);
                let exposure = t.exposure.tr().reshape([-1]).index_select(0, &at).reshape([e, b]);
                (p * h).sum_dim_intlist([2i64].as_slice(), false, Kind::Float) + exposure
            }
            None => {
                let x = gather_rows(content, items);
                let preference =
                    (p * x.matmul(&self.projection())).sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
                preference + x.bmm(&self.exposure.unsqueeze(2)).squeeze_dim(2)
            }
        }
    }

    /// The whole catalogue projected — `content · W` `[E or 1, n_items, d]` and `content · aᵀ`
    /// `[n_items, E]` — when `rows` gathered content rows would cost more than projecting every
    /// item (once for all E environments when the projection is shared: the batched path's
    /// saving); `None` otherwise.
    pub(crate) fn item_table(&self, content: &Tensor, rows: i64) -> Option<ItemTable> {
        let stacked = if self.gain_on == GainOn::Content { self.n_envs() } else { self.proj.size()[0] };
        if rows < stacked * content.size()[0] {
            return None;
        }
        Some(self.full_table(content))
    }

    /// [`EnvModels::item_table`] unconditionally.
    pub(crate) fn full_table(&self, content: &Tensor) -> ItemTable {
        ItemTable { projected: content.matmul(&self.projection()), exposure: content.matmul(&self.exposure.tr()) }
    }

    /// Each user's log-partition over the catalogue in every environment, `[E, n_users]`:
    /// log Σ_j exp s_e(u, j). With `sample` (item ids, the same for every user and
    /// environment) the sum runs over those items and is scaled by n_items / |sample|, an
    /// unbiased estimate of the partition sum. Computed in user chunks that keep
    /// `[E, chunk, items]` near 8 M values.
    pub(crate) fn log_partition(&self, table: &ItemTable, sample: Option<&Tensor>) -> Tensor {
        let (e, n_items) = (self.n_envs(), table.exposure.size()[0]);
        let (projected, exposure) = match sample {
            Some(ids) => (table.projected.index_select(1, ids), table.exposure.index_select(0, ids)),
            None => (table.projected.shallow_clone(), table.exposure.shallow_clone()),
        };
        let m = exposure.size()[0];
        let n_users = self.users.size()[1];
        let chunk = ((1i64 << 23) / (e * m).max(1)).max(1);
        let exposure = exposure.tr().unsqueeze(1); // [E, 1, m]
        let items_t = projected.transpose(1, 2).expand([e, -1, -1], false); // [E, d, m]
        let mut parts = Vec::new();
        let mut start = 0;
        while start < n_users {
            let len = chunk.min(n_users - start);
            let p = self.gained_users(start, len).expand([e, -1, -1], false); // [E, len, d]
            let scores = p.bmm(&items_t) + &exposure;
            parts.push(scores.logsumexp([2i64].as_slice(), false));
            start += len;
        }
        Tensor::cat(&parts, 1) + ((n_items as f64) / (m as f64)).ln()
    }
}

/// Per-item projections of every environment (see [`EnvModels::item_table`]).
pub(crate) struct ItemTable {
    projected: Tensor, // [E or 1, n_items, d]
    exposure: Tensor,  // [n_items, E]
}

/// Trains `models` (one stacked slot per entry of `envs`) on each environment's interactions.
pub(crate) fn train_models(
    cfg: &HeteroConfig,
    models: &EnvModels,
    data: &Dataset,
    envs: &[Vec<usize>],
    content: &Tensor,
    sampler: &NegativeSampler,
    rng: &mut ChaCha8Rng,
) {
    let (e, device) = (envs.len(), models.vs.device());
    let mut opt = Adam::new(&models.vs, &[GroupHyper { lr: cfg.lr, weight_decay: 0.0 }]);
    // `epochs` passes over the environments' interactions, `e` batches per step
    let total: usize = envs.iter().map(Vec::len).sum();
    let steps = ((total / (cfg.batch_size * e)).max(1) * cfg.epochs).max(cfg.min_steps);
    for _ in 0..steps {
        let mut us = Vec::with_capacity(e * cfg.batch_size);
        let mut is = Vec::with_capacity(e * cfg.batch_size);
        for pos in envs {
            for _ in 0..cfg.batch_size {
                let p =
                    if pos.is_empty() { rng.gen_range(0..data.train.len()) } else { pos[rng.gen_range(0..pos.len())] };
                us.push(data.train.users[p]);
                is.push(data.train.items[p] as i64);
            }
        }
        let negs: Vec<i64> = sampler.sample(&us, cfg.negatives, rng.gen()).into_iter().map(i64::from).collect();
        let u: Vec<i64> = us.iter().map(|&x| x as i64).collect();
        let (b, k) = (cfg.batch_size as i64, cfg.negatives as i64);
        let u_t = Tensor::from_slice(&u).reshape([e as i64, b]).to_device(device);
        let i_t = Tensor::from_slice(&is).reshape([e as i64, b]).to_device(device);
        let n_t = Tensor::from_slice(&negs).reshape([e as i64, b * k]).to_device(device);
        let u_rep = u_t.unsqueeze(2).expand([e as i64, b, k], false).reshape([e as i64, b * k]);
        let table = models.item_table(content, e as i64 * b * (1 + k));
        let sp = models.scores(&u_t, &i_t, content, table.as_ref());
        let sn = models.scores(&u_rep, &n_t, content, table.as_ref());
        let loss = sp.binary_cross_entropy_with_logits::<&Tensor>(&sp.ones_like(), None, None, Reduction::Mean)
            + sn.binary_cross_entropy_with_logits::<&Tensor>(&sn.zeros_like(), None, None, Reduction::Mean);
        opt.zero_grad();
        (loss * e as f64).backward();
        opt.step();
    }
}

/// One scoring model (a single environment) trained on every training interaction: the
/// warm start of the E environment models and EIIL's reference model.
pub(crate) fn train_on_all(
    cfg: &HeteroConfig,
    device: Device,
    data: &Dataset,
    content: &Tensor,
    sampler: &NegativeSampler,
    rng: &mut ChaCha8Rng,
) -> EnvModels {
    let c = content.size()[1] as usize;
    let model = EnvModels::new(1, cfg.shared_preference, cfg.gain_on, data.n_users, c, cfg.dim, device);
    let all = vec![(0..data.train.len()).collect::<Vec<_>>()];
    train_models(cfg, &model, data, &all, content, sampler, rng);
    model
}

/// Log-likelihood `[E, n]` (on the CPU) of every training interaction under every
/// environment of `model`: `s_e(u, i) − log Σ_j exp s_e(u, j)`, the log-partition over
/// `sample` when given (see [`EnvModels::log_partition`]). Scored in chunks of 8,192
/// interactions.
pub(crate) fn log_likelihoods(model: &EnvModels, data: &Dataset, content: &Tensor, sample: Option<&Tensor>) -> Tensor {
    let device = model.vs.device();
    tch::no_grad(|| {
        let table = model.full_table(content);
        let log_z = model.log_partition(&table, sample);
        let e = model.n_envs();
        let mut parts = Vec::new();
        for chunk in (0..data.train.len()).collect::<Vec<_>>().chunks(8192) {
            let u: Vec<i64> = chunk.iter().map(|&p| data.train.users[p] as i64).collect();
            let i: Vec<i64> = chunk.iter().map(|&p| data.train.items[p] as i64).collect();
            let n = chunk.len() as i64;
            let (u_t, i_t) = (Tensor::from_slice(&u).to_device(device), Tensor::from_slice(&i).to_device(device));
            let rows = |t: &Tensor| t.unsqueeze(0).expand([e, n], false).contiguous();
            let ll = model.scores(&rows(&u_t), &rows(&i_t), content, Some(&table)) - log_z.index_select(1, &u_t);
            parts.push(ll.to_device(Device::Cpu));
        }
        if parts.is_empty() {
            return Tensor::zeros([e, 0], (Kind::Float, Device::Cpu));
        }
        Tensor::cat(&parts, 1)
    })
}

/// What every inference starts from: the seeded generators (ours and libtorch's), the content
/// the scoring models see (the variant representation when given, else the raw features) and a
/// negative sampler over the training interactions.
pub(crate) fn prepare(
    data: &Dataset,
    variant: Option<&Tensor>,
    seed: u64,
    device: Device,
) -> Result<(ChaCha8Rng, Tensor, NegativeSampler)> {
    let rng = ChaCha8Rng::seed_from_u64(seed);
    tch::manual_seed(seed as i64);
    let content = match variant {
        Some(v) => v.to_device(device).detach(),
        None => data.features.to_tensor(device),
    };
    let sampler = NegativeSampler::new(UserItems::build(data.n_users, &[&data.train]), data.n_items)?;
    Ok((rng, content, sampler))
}

/// Positions of each environment's interactions.
pub(crate) fn positions(labels: &[u32], n_envs: usize) -> Vec<Vec<usize>> {
    let mut v = vec![Vec::new(); n_envs];
    for (p, &l) in labels.iter().enumerate() {
        v[l as usize].push(p);
    }
    v
}

/// Re-seeds empty environments with a random half of the largest one; returns how many.
pub(crate) fn reseed_empty(labels: &mut [u32], n_envs: usize, rng: &mut ChaCha8Rng) -> usize {
    let mut reseeded = 0;
    for e in 0..n_envs {
        let envs = positions(labels, n_envs);
        if envs[e].is_empty() {
            let largest = (0..n_envs).max_by_key(|&k| envs[k].len()).unwrap_or(0);
            for &p in &envs[largest] {
                if rng.gen_bool(0.5) {
                    labels[p] = e as u32;
                }
            }
            reseeded += 1;
        }
    }
    reseeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reseeding_fills_empty_environments() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut labels = vec![0u32; 100];
        let n = reseed_empty(&mut labels, 3, &mut rng);
        assert_eq!(n, 2);
        assert!(positions(&labels, 3).iter().all(|p| !p.is_empty()));
    }

    #[test]
    fn catalogue_table_gives_the_same_scores_as_gathered_rows() {
        let _turn = crate::test_support::serial();
        tch::manual_seed(3);
        let (e, n_users, n_items, c, d) = (3usize, 5usize, 7i64, 4usize, 2usize);
        let cases =
            [(true, GainOn::Factor), (false, GainOn::Factor), (true, GainOn::Content), (false, GainOn::Content)];
        for (shared, gain_on) in cases {
            let m = EnvModels::new(e, shared, gain_on, n_users, c, d, Device::Cpu);
            tch::no_grad(|| {
                let noise = || Tensor::randn([e as i64, c as i64], (Kind::Float, Device::Cpu));
                m.exposure.shallow_clone().copy_(&noise());
                let gains = Tensor::randn(m.gain.size(), (Kind::Float, Device::Cpu)) * 0.5 + 1.0;
                m.gain.shallow_clone().copy_(&gains);
            });
            let content = Tensor::randn([n_items, c as i64], (Kind::Float, Device::Cpu));
            let users = Tensor::from_slice(&[0i64, 1, 4, 2, 3, 0, 1, 1, 4, 0, 2, 3]).reshape([3, 4]);
            let items = Tensor::from_slice(&[6i64, 0, 3, 2, 1, 5, 4, 6, 0, 0, 2, 3]).reshape([3, 4]);
            let table = m.item_table(&content, 1_000).expect("many rows use the table");
            let direct = m.scores(&users, &items, &content, None);
            let tabled = m.scores(&users, &items, &content, Some(&table));
            assert!((&direct - tabled).abs().max().double_value(&[]) < 1e-5);
            assert!(m.item_table(&content, 3).is_none(), "few rows: gathering is cheaper");
            // environment 1's first pair (user 3, item 1) by hand: (p_u ⊙ γ_e) · (x_i W) or
            // p_u · ((x_i ⊙ g_e) W), plus x_i · a_e
            let (env, user, item) = (1i64, 3i64, 1i64);
            let slot = if shared { 0 } else { env };
            let (p, w) = (m.users.get(slot).get(user), m.proj.get(slot));
            let x = content.get(item);
            let by_hand = match gain_on {
                GainOn::Factor => (p * m.gain.get(env)).dot(&x.matmul(&w)),
                GainOn::Content => p.dot(&(&x * m.gain.get(env)).matmul(&w)),
            } + x.dot(&m.exposure.get(env));
            let scored = direct.double_value(&[env, 0]);
            assert!((by_hand.double_value(&[]) - scored).abs() < 1e-4, "{gain_on:?}: {scored} by hand {by_hand}");
            // the log-partition is a log-sum-exp of the same scores over the whole catalogue
            let log_z = m.log_partition(&table, None);
            for (env, user) in [(0i64, 0i64), (2, 4), (1, 3)] {
                let all =
                    Tensor::arange(n_items, (Kind::Int64, Device::Cpu)).unsqueeze(0).expand([e as i64, n_items], false);
                let us = Tensor::full([e as i64, n_items], user, (Kind::Int64, Device::Cpu));
                let row = m.scores(&us, &all.contiguous(), &content, None).get(env);
                let expected = row.logsumexp([0i64].as_slice(), false).double_value(&[]);
                assert!((log_z.double_value(&[env, user]) - expected).abs() < 1e-4);
            }
        }
    }
}
