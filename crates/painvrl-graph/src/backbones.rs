//! The three backbones: UltraGCN (as simplified by InvRL, with the optional item–item
//! constraint), LightGCN and MF/VBPR. Each item's representation is its ID embedding joined to
//! a projection of the content matrix it is given.

use crate::graph::TrainGraph;
use painvrl_core::ops::{gather_rows, row_dots};
use painvrl_core::{Backbone, Batch, Checked, ColdStartLayout, Error, LossShape, Result, Validate, EMBEDDING_GROUP};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Reduction, Tensor};

/// Which backbone to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// UltraGCN with constraint-weighted BCE (InvRL's backbone).
    Ultragcn,
    /// LightGCN with BPR.
    Lightgcn,
    /// VBPR: matrix factorisation with projected content and item bias, BPR loss.
    Mf,
}

impl BackboneKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Ultragcn => "ultragcn",
            BackboneKind::Lightgcn => "lightgcn",
            BackboneKind::Mf => "mf",
        }
    }
}

impl std::str::FromStr for BackboneKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ultragcn" => Ok(BackboneKind::Ultragcn),
            "lightgcn" => Ok(BackboneKind::Lightgcn),
            "mf" | "vbpr" => Ok(BackboneKind::Mf),
            _ => Err(Error::config("backbone", format!("'{s}' is not one of ultragcn, lightgcn, mf"))),
        }
    }
}

/// Hyperparameters of the backbones (each reads the fields it uses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackboneConfig {
    /// Which backbone.
    pub kind: BackboneKind,
    /// Width of the ID embeddings.
    pub id_dim: usize,
    /// Width of the projected content joined to each item's ID embedding.
    pub content_dim: usize,
    /// Negatives per positive (UltraGCN; BPR backbones use 1).
    pub negatives: usize,
    /// UltraGCN positive weight w1 + w2·β_uβ_i.
    pub w1: f64,
    /// See `w1`.
    pub w2: f64,
    /// UltraGCN negative weight w3 + w4·β_uβ_j.
    pub w3: f64,
    /// See `w3`.
    pub w4: f64,
    /// UltraGCN multiplier of the negative term.
    pub negative_weight: f64,
    /// L2 penalty on the batch's embeddings.
    pub l2: f64,
    /// LightGCN propagation layers.
    pub layers: usize,
    /// UltraGCN item–item constraint neighbours per item (0 = off).
    pub item_item_k: usize,
    /// UltraGCN item–item constraint weight λ.
    pub item_item_lambda: f64,
    /// Standard deviation of the embedding initialisation.
    pub init_std: f64,
    /// PD, popularity-deconfounded training (Zhang et al., SIGIR 2021), for the BPR backbones
    /// (lightgcn, mf): BPR on `(ELU(f) + 1) · m_i^γ` with `m_i` the item's share of training
    /// interactions (add-one smoothed); ranking stays by `f`. 0 turns it off.
    pub pd_gamma: f64,
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig {
            // measured best on validation across the bundled datasets (README, "Baselines")
            kind: BackboneKind::Lightgcn,
            id_dim: 64,
            content_dim: 64,
            negatives: 50,
            w1: 1e-6,
            w2: 1.0,
            w3: 1e-6,
            w4: 1.0,
            negative_weight: 10.0,
            l2: 3e-3,
            layers: 2,
            item_item_k: 0,
            item_item_lambda: 0.5,
            init_std: 0.01,
            pd_gamma: 0.0,
        }
    }
}

/// The parameters every backbone shares: user and item ID embeddings and a content projection.
#[derive(Debug)]
struct Embeddings {
    user: Tensor,
    item: Tensor,
    proj: Tensor,
}

impl Embeddings {
    fn new(p: &nn::Path, n_users: usize, n_items: usize, content_in: usize, cfg: &BackboneConfig) -> Self {
        let d = (cfg.id_dim + cfg.content_dim) as i64;
        let init = nn::Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let bound = 1.0 / (content_in as f64).sqrt();
        Embeddings {
            user: p.set_group(EMBEDDING_GROUP).var("user", &[n_users as i64, d], init),
            item: p.set_group(EMBEDDING_GROUP).var("item", &[n_items as i64, cfg.id_dim as i64], init),
            proj: p.var(
                "proj",
                &[content_in as i64, cfg.content_dim as i64],
                nn::Init::Uniform { lo: -bound, up: bound },
            ),
        }
    }

    /// All item representations [q_i ; W c_i], `[n_items, id_dim + content_dim]`; the losses
    /// gather their rows ([`gather_rows`]): projecting the whole catalogue once per step and
    /// gathering is far cheaper than projecting the content of every sampled negative.
    fn all_items(&self, content: &Tensor) -> Tensor {
        Tensor::cat(&[self.item.shallow_clone(), content.matmul(&self.proj)], 1)
    }
}

fn bpr(pos: &Tensor, neg: &Tensor) -> Tensor {
    // −log σ(pos − neg), averaged over negatives and the batch
    (pos.unsqueeze(1) - neg).log_sigmoid().neg().mean(Kind::Float)
}

/// PD's deconfounded training scores (Zhang et al., SIGIR 2021): the model's score `f` made
/// positive by ELU + 1 and multiplied by the popularity factor `m_i^γ` of its item.
#[derive(Debug)]
struct PopularityDeconfounding {
    /// `[n_items]` m_i^γ.
    factor: Tensor,
}

impl PopularityDeconfounding {
    /// `None` when γ = 0. `m_i = (d_i + 1) / Σ_j (d_j + 1)`: the add-one keeps items without
    /// training interactions from a zero factor.
    fn new(graph: &TrainGraph, gamma: f64, device: tch::Device) -> Option<Self> {
        if gamma == 0.0 {
            return None;
        }
        let total: f64 = graph.item_degree.iter().map(|&d| d as f64 + 1.0).sum();
        let factor: Vec<f32> =
            graph.item_degree.iter().map(|&d| ((d as f64 + 1.0) / total).powf(gamma) as f32).collect();
        Some(PopularityDeconfounding { factor: Tensor::from_slice(&factor).to_device(device) })
    }

    /// Training scores `(ELU(f) + 1) · m^γ` of `scores` for the items `items` (same shape).
    fn apply(&self, scores: &Tensor, items: &Tensor) -> Tensor {
        let m = self.factor.index_select(0, &items.reshape([-1])).reshape(items.size().as_slice());
        (scores.elu() + 1.0) * m
    }
}

/// BPR on the raw scores, or on PD's deconfounded scores when PD is on.
fn bpr_maybe_pd(pd: Option<&PopularityDeconfounding>, pos: &Tensor, neg: &Tensor, b: &Batch) -> Tensor {
    match pd {
        None => bpr(pos, neg),
        Some(pd) => bpr(&pd.apply(pos, &b.pos_items), &pd.apply(neg, &b.neg_items)),
    }
}

/// UltraGCN as used by InvRL: no message passing; the graph enters through degree-based
/// constraint weights on a binary cross-entropy with many negatives.
#[derive(Debug)]
pub struct UltraGcn {
    emb: Embeddings,
    beta_u: Tensor,
    beta_i: Tensor,
    neighbors: Option<(Tensor, Tensor)>,
    cfg: BackboneConfig,
}

impl UltraGcn {
    /// Builds the model under `p` (variables `user`, `item`, `proj`).
    pub fn new(p: &nn::Path, graph: &TrainGraph, content_in: usize, cfg: &BackboneConfig) -> Self {
        let device = p.device();
        let neighbors = (cfg.item_item_k > 0).then(|| {
            let (idx, w) = graph.item_neighbors(cfg.item_item_k);
            let k = cfg.item_item_k as i64;
            (
                Tensor::from_slice(&idx).reshape([graph.n_items as i64, k]).to_device(device),
                Tensor::from_slice(&w).reshape([graph.n_items as i64, k]).to_device(device),
            )
        });
        UltraGcn {
            emb: Embeddings::new(p, graph.n_users, graph.n_items, content_in, cfg),
            beta_u: graph.beta_users(device),
            beta_i: graph.beta_items(device),
            neighbors,
            cfg: cfg.clone(),
        }
    }
}

impl Backbone for UltraGcn {
    fn name(&self) -> &str {
        "ultragcn"
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        let c = &self.cfg;
        let all = self.emb.all_items(content);
        let pu = self.emb.user.index_select(0, &b.users);
        let ep = gather_rows(&all, &b.pos_items);
        let en = gather_rows(&all, &b.neg_items);
        let pos = (&pu * &ep).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let neg = row_dots(&en, &pu);
        let bu = self.beta_u.index_select(0, &b.users);
        let w_pos = bu.shallow_clone() * self.beta_i.index_select(0, &b.pos_items) * c.w2 + c.w1;
        let w_neg = bu.unsqueeze(1)
            * self.beta_i.index_select(0, &b.neg_items.reshape([-1])).reshape(b.neg_items.size().as_slice())
            * c.w4
            + c.w3;
        let pos_loss =
            pos.binary_cross_entropy_with_logits::<&Tensor>(&pos.ones_like(), Some(&w_pos), None, Reduction::None);
        let neg_loss = neg
            .binary_cross_entropy_with_logits::<&Tensor>(&neg.zeros_like(), Some(&w_neg), None, Reduction::None)
            .mean_dim([1i64].as_slice(), false, Kind::Float);
        let mut loss = (pos_loss + neg_loss * c.negative_weight).mean(Kind::Float);
        if let Some((idx, w)) = &self.neighbors {
            // item–item constraint: pull users towards the co-occurrence neighbours of their positives
            let nb = idx.index_select(0, &b.pos_items);
            let nw = w.index_select(0, &b.pos_items);
            let en = gather_rows(&all, &nb);
            let s = row_dots(&en, &pu);
            let ii =
                (s.log_sigmoid().neg() * nw).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).mean(Kind::Float);
            loss += ii * c.item_item_lambda;
        }
        let reg = (pu.square().sum(Kind::Float) + ep.square().sum(Kind::Float)) / b.users.size()[0] as f64;
        loss + reg * c.l2
    }

    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        (self.emb.user.shallow_clone(), self.emb.all_items(content))
    }

    fn negatives_per_positive(&self) -> usize {
        self.cfg.negatives
    }

    fn loss_shape(&self) -> LossShape {
        LossShape::Pointwise
    }

    fn content_projection(&self) -> Option<Tensor> {
        Some(self.emb.proj.shallow_clone())
    }

    fn cold_start(&self) -> Option<ColdStartLayout> {
        Some(ColdStartLayout { id_dim: self.cfg.id_dim, scale: 1.0, trailing_zeros: 0 })
    }
}

/// LightGCN: layer-mean propagation over the normalised bipartite adjacency, BPR loss.
#[derive(Debug)]
pub struct LightGcn {
    emb: Embeddings,
    pd: Option<PopularityDeconfounding>,
    adj: Tensor,
    n_users: i64,
    cfg: BackboneConfig,
}

impl LightGcn {
    /// Builds the model under `p`; the adjacency is built once here.
    pub fn new(p: &nn::Path, graph: &TrainGraph, content_in: usize, cfg: &BackboneConfig) -> Self {
        LightGcn {
            emb: Embeddings::new(p, graph.n_users, graph.n_items, content_in, cfg),
            pd: PopularityDeconfounding::new(graph, cfg.pd_gamma, p.device()),
            adj: graph.normalized_adjacency(p.device()),
            n_users: graph.n_users as i64,
            cfg: cfg.clone(),
        }
    }

    /// Layer-mean user and item embeddings from the layer-0 item representations `all`.
    fn propagate(&self, all: &Tensor) -> (Tensor, Tensor) {
        let base = Tensor::cat(&[self.emb.user.shallow_clone(), all.shallow_clone()], 0);
        let mut layer = base.shallow_clone();
        let mut sum = base;
        for _ in 0..self.cfg.layers {
            layer = self.adj.mm(&layer);
            sum += &layer;
        }
        let mean = sum / (self.cfg.layers + 1) as f64;
        let parts = mean.split_with_sizes([self.n_users, mean.size()[0] - self.n_users], 0);
        (parts[0].shallow_clone(), parts[1].shallow_clone())
    }
}

impl Backbone for LightGcn {
    fn name(&self) -> &str {
        "lightgcn"
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        let all = self.emb.all_items(content);
        let (u, i) = self.propagate(&all);
        let pu = u.index_select(0, &b.users);
        let pos = (&pu * i.index_select(0, &b.pos_items)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let neg = row_dots(&gather_rows(&i, &b.neg_items), &pu);
        let reg = (self.emb.user.index_select(0, &b.users).square().sum(Kind::Float)
            + gather_rows(&all, &b.pos_items).square().sum(Kind::Float)
            + gather_rows(&all, &b.neg_items).square().sum(Kind::Float))
            / b.users.size()[0] as f64;
        bpr_maybe_pd(self.pd.as_ref(), &pos, &neg, b) + reg * self.cfg.l2
    }

    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        self.propagate(&self.emb.all_items(content))
    }

    fn negatives_per_positive(&self) -> usize {
        1
    }

    fn loss_shape(&self) -> LossShape {
        LossShape::Pairwise
    }

    fn content_projection(&self) -> Option<Tensor> {
        Some(self.emb.proj.shallow_clone())
    }

    fn cold_start(&self) -> Option<ColdStartLayout> {
        // an isolated node keeps only its layer-0 embedding in the layer mean
        Some(ColdStartLayout { id_dim: self.cfg.id_dim, scale: 1.0 / (self.cfg.layers + 1) as f64, trailing_zeros: 0 })
    }
}

/// VBPR: matrix factorisation with projected content and a per-item bias, BPR loss. The
/// bias enters the embeddings as an extra column (users 1, items b_i) so scoring stays a dot
/// product.
#[derive(Debug)]
pub struct Mf {
    emb: Embeddings,
    pd: Option<PopularityDeconfounding>,
    bias: Tensor,
    cfg: BackboneConfig,
}

impl Mf {
    /// Builds the model under `p` (variables `user`, `item`, `proj`, `item_bias`).
    pub fn new(p: &nn::Path, graph: &TrainGraph, content_in: usize, cfg: &BackboneConfig) -> Self {
        Mf {
            emb: Embeddings::new(p, graph.n_users, graph.n_items, content_in, cfg),
            pd: PopularityDeconfounding::new(graph, cfg.pd_gamma, p.device()),
            bias: p.set_group(EMBEDDING_GROUP).var("item_bias", &[graph.n_items as i64, 1], nn::Init::Const(0.0)),
            cfg: cfg.clone(),
        }
    }
}

impl Backbone for Mf {
    fn name(&self) -> &str {
        "mf"
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        let all = self.emb.all_items(content);
        let pu = self.emb.user.index_select(0, &b.users);
        let ep = gather_rows(&all, &b.pos_items);
        let en = gather_rows(&all, &b.neg_items);
        let pos = (&pu * &ep).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
            + self.bias.index_select(0, &b.pos_items).squeeze_dim(1);
        let neg_bias = self.bias.index_select(0, &b.neg_items.reshape([-1])).reshape(b.neg_items.size().as_slice());
        let neg = row_dots(&en, &pu) + neg_bias;
        let reg = (pu.square().sum(Kind::Float) + ep.square().sum(Kind::Float) + en.square().sum(Kind::Float))
            / b.users.size()[0] as f64;
        bpr_maybe_pd(self.pd.as_ref(), &pos, &neg, b) + reg * self.cfg.l2
    }

    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        let u = &self.emb.user;
        let ones = Tensor::ones([u.size()[0], 1], (Kind::Float, u.device()));
        (
            Tensor::cat(&[u.shallow_clone(), ones], 1),
            Tensor::cat(&[self.emb.all_items(content), self.bias.shallow_clone()], 1),
        )
    }

    fn negatives_per_positive(&self) -> usize {
        // BPR averaged over several negatives per positive
        self.cfg.negatives
    }

    fn loss_shape(&self) -> LossShape {
        LossShape::Pairwise
    }

    fn content_projection(&self) -> Option<Tensor> {
        Some(self.emb.proj.shallow_clone())
    }

    fn cold_start(&self) -> Option<ColdStartLayout> {
        // a new item has no learned bias: its bias column is 0
        Some(ColdStartLayout { id_dim: self.cfg.id_dim, scale: 1.0, trailing_zeros: 1 })
    }
}

/// Builds the configured backbone under the VarStore path `p` (use `vs.root() / "backbone"`).
pub fn build_backbone(
    p: &nn::Path,
    graph: &TrainGraph,
    content_in: usize,
    cfg: &Checked<BackboneConfig>,
) -> Result<Box<dyn Backbone>> {
    if content_in == 0 {
        return Err(Error::config("content", "content width must be ≥ 1"));
    }
    if cfg.pd_gamma > 0.0 && cfg.kind == BackboneKind::Ultragcn {
        return Err(Error::config(
            "backbone.pd_gamma",
            "PD is defined for BPR training; use backbone lightgcn or mf (ultragcn trains a weighted BCE)",
        ));
    }
    Ok(match cfg.kind {
        BackboneKind::Ultragcn => Box::new(UltraGcn::new(p, graph, content_in, cfg)),
        BackboneKind::Lightgcn => Box::new(LightGcn::new(p, graph, content_in, cfg)),
        BackboneKind::Mf => Box::new(Mf::new(p, graph, content_in, cfg)),
    })
}

impl Validate for BackboneConfig {
    /// Checks every field's domain.
    fn validate(&self) -> Result<()> {
        let pos = |f: &str, v: usize| {
            if v == 0 {
                Err(Error::config(format!("backbone.{f}"), "must be ≥ 1"))
            } else {
                Ok(())
            }
        };
        pos("id_dim", self.id_dim)?;
        pos("content_dim", self.content_dim)?;
        pos("negatives", self.negatives)?;
        for (f, v) in [
            ("w1", self.w1),
            ("w2", self.w2),
            ("w3", self.w3),
            ("w4", self.w4),
            ("negative_weight", self.negative_weight),
            ("l2", self.l2),
            ("item_item_lambda", self.item_item_lambda),
            ("pd_gamma", self.pd_gamma),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(format!("backbone.{f}"), format!("{v} is not a finite non-negative number")));
            }
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(Error::config("backbone.init_std", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use painvrl_core::Interactions;
    use tch::nn::VarStore;
    use tch::Device;

    /// PD's training loss against the formula written out in f64 from the model's own scores:
    /// mean over (positive, negative) of −log σ((ELU(f⁺)+1)·m⁺^γ − (ELU(f⁻)+1)·m⁻^γ), with
    /// m_i = (d_i + 1) / Σ(d_j + 1).
    #[test]
    fn pd_loss_matches_the_formula() {
        tch::manual_seed(3);
        // item degrees: item 0 → 3, item 1 → 1, items 2, 3 → 0
        let train = Interactions::from_pairs([(0, 0), (1, 0), (2, 0), (2, 1)]);
        let graph = TrainGraph::new(3, 4, &train);
        let gamma = 0.5;
        let cfg = BackboneConfig {
            kind: BackboneKind::Mf,
            id_dim: 3,
            content_dim: 2,
            l2: 0.0,
            init_std: 0.5,
            pd_gamma: gamma,
            ..Default::default()
        };
        let vs = VarStore::new(Device::Cpu);
        let model = build_backbone(&(vs.root() / "backbone"), &graph, 2, &cfg.clone().check().unwrap()).unwrap();
        let content = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let batch = Batch {
            users: Tensor::from_slice(&[0i64, 2]),
            pos_items: Tensor::from_slice(&[0i64, 1]),
            neg_items: Tensor::from_slice(&[2i64, 3, 1, 2]).reshape([2, 2]),
        };
        let got = model.loss(&batch, &content).double_value(&[]);
        let (u, i) = model.embeddings(&content);
        let score = |uu: i64, it: i64| (u.get(uu) * i.get(it)).sum(Kind::Double).double_value(&[]);
        let total = (3 + 1) + (1 + 1) + 1 + 1;
        let m = |it: i64| (([4.0, 2.0, 1.0, 1.0][it as usize]) / total as f64).powf(gamma);
        let elu1 = |x: f64| if x > 0.0 { x + 1.0 } else { x.exp() };
        let mut want = 0.0;
        for (r, (uu, p)) in [(0i64, 0i64), (2, 1)].into_iter().enumerate() {
            for n in [[2i64, 3], [1, 2]][r] {
                let d = elu1(score(uu, p)) * m(p) - elu1(score(uu, n)) * m(n);
                want += -(1.0 / (1.0 + (-d).exp())).ln();
            }
        }
        want /= 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // without PD the same batch gives plain BPR, a different value
        let plain_cfg = BackboneConfig { pd_gamma: 0.0, ..cfg.clone() };
        let vs2 = VarStore::new(Device::Cpu);
        let plain = build_backbone(&(vs2.root() / "backbone"), &graph, 2, &plain_cfg.check().unwrap()).unwrap();
        tch::no_grad(|| {
            for (name, v) in vs2.variables() {
                v.shallow_clone().copy_(&vs.variables()[&name]);
            }
        });
        assert!((plain.loss(&batch, &content).double_value(&[]) - got).abs() > 1e-4);
    }

    #[test]
    fn pd_refuses_ultragcn() {
        let graph = TrainGraph::new(2, 2, &Interactions::from_pairs([(0, 0), (1, 1)]));
        let vs = VarStore::new(Device::Cpu);
        let cfg = BackboneConfig { kind: BackboneKind::Ultragcn, pd_gamma: 0.1, ..Default::default() };
        let e = build_backbone(&(vs.root() / "backbone"), &graph, 2, &cfg.check().unwrap()).err().unwrap().to_string();
        assert!(e.contains("backbone.pd_gamma"), "{e}");
    }
}
