//! Plugging your own recommender into the PaInvRL pipeline: implement `painvrl::core::Backbone`
//! and hand a factory to `pipeline::run_with`. The model here is a content-aware two-tower dot
//! product with a softmax-free sampled logistic loss — small on purpose.
//!
//! ```text
//! cargo run --release --example custom_recommender [-- --data DIR]
//! ```

use painvrl::config::{Config, Method};
use painvrl::core::{Backbone, Batch, ColdStartLayout, DeviceSpec, Result};
use painvrl::data::{generate, load_dir, LoadOptions, SyntheticConfig};
use painvrl::graph::TrainGraph;
use painvrl::pipeline::{run_with, Components};
use tch::{nn, Kind, Tensor};

/// Users and items as `[id part ; projected content]`, scored by inner product.
struct TwoTower {
    user: Tensor,
    item: Tensor,
    proj: Tensor, // must be named `proj`: mask learning trains it
    id_dim: usize,
}

impl TwoTower {
    fn new(p: &nn::Path, g: &TrainGraph, content_in: usize) -> Self {
        let (id, c) = (32i64, 32i64);
        TwoTower {
            user: p.var("user", &[g.n_users as i64, id + c], nn::Init::Randn { mean: 0.0, stdev: 0.01 }),
            item: p.var("item", &[g.n_items as i64, id], nn::Init::Randn { mean: 0.0, stdev: 0.01 }),
            proj: p.var("proj", &[content_in as i64, c], nn::Init::Randn { mean: 0.0, stdev: 0.05 }),
            id_dim: id as usize,
        }
    }

    fn items(&self, content: &Tensor) -> Tensor {
        Tensor::cat(&[self.item.shallow_clone(), content.matmul(&self.proj)], 1)
    }
}

impl Backbone for TwoTower {
    fn name(&self) -> &str {
        "two-tower"
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        let all = self.items(content);
        let u = self.user.index_select(0, &b.users);
        let pos = (&u * all.index_select(0, &b.pos_items)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let neg = all
            .index_select(0, &b.neg_items.reshape([-1]))
            .reshape([b.neg_items.size()[0], b.neg_items.size()[1], -1])
            .bmm(&u.unsqueeze(2))
            .squeeze_dim(2);
        // log σ(pos) + mean log σ(−neg), negated
        -(pos.log_sigmoid().mean(Kind::Float) + neg.neg().log_sigmoid().mean(Kind::Float))
    }

    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        (self.user.shallow_clone(), self.items(content))
    }

    fn negatives_per_positive(&self) -> usize {
        8
    }

    fn id_embedding_names(&self) -> Vec<String> {
        vec!["backbone.user".into(), "backbone.item".into()]
    }

    fn cold_start(&self) -> ColdStartLayout {
        ColdStartLayout { id_dim: self.id_dim, scale: 1.0, trailing_zeros: 0 }
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let ds = match args.iter().position(|a| a == "--data").and_then(|i| args.get(i + 1)) {
        Some(dir) => load_dir(std::path::Path::new(dir), &LoadOptions::default())?.0,
        None => generate(&SyntheticConfig::default())?.dataset,
    };
    println!("{}", ds.summary());
    let factory =
        |p: &nn::Path, g: &TrainGraph, c: usize| -> Result<Box<dyn Backbone>> { Ok(Box::new(TwoTower::new(p, g, c))) };
    for method in [Method::Erm, Method::Painvrl] {
        let mut cfg = Config { method, device: DeviceSpec::Cpu, ..Default::default() };
        cfg.train.progress = false;
        cfg.envs.n_envs = 2;
        let parts = Components { backbone: Some(&factory), ..Default::default() };
        let r = run_with(&ds, &cfg, None, false, parts)?;
        println!("{:<8} backbone {}: test recall@20 {:.4}", method.name(), r.backbone, r.metrics["test"]["recall@20"]);
    }
    Ok(())
}
