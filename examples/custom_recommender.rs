//! Plugging your own recommender into the PaInvRL pipeline: implement `painvrl::core::Backbone`
//! (two required methods) and hand a factory to `pipeline::Run::backbone`. The model here is a
//! two-tower dot product with a BPR loss — small on purpose. Its variables may be named
//! anything: the ID vectors join the embedding learning-rate group through `set_group`, and
//! declaring the content projection lets the mask learning and the final model's warm start
//! use it.
//!
//! ```text
//! cargo run --release --example custom_recommender [-- --data DIR]
//! ```

use painvrl::config::{Config, Method};
use painvrl::core::{Backbone, Batch, DeviceSpec, Result, EMBEDDING_GROUP};
use painvrl::data::{generate, load_dir, LoadOptions, SyntheticConfig};
use painvrl::graph::TrainGraph;
use painvrl::pipeline::Run;
use tch::{nn, Kind, Tensor};

/// Users and items as `[id part ; projected content]`, scored by inner product.
struct TwoTower {
    user: Tensor,
    item: Tensor,
    proj: Tensor,
}

/// The model's variables under `p`; the ID vectors train at `train.lr` (their group).
fn two_tower(p: &nn::Path, g: &TrainGraph, content_in: usize) -> TwoTower {
    let (ids, init) = (p.set_group(EMBEDDING_GROUP), nn::Init::Randn { mean: 0.0, stdev: 0.01 });
    TwoTower {
        user: ids.var("user_vectors", &[g.n_users as i64, 64], init),
        item: ids.var("item_vectors", &[g.n_items as i64, 32], init),
        proj: p.var("content_to_vector", &[content_in as i64, 32], nn::Init::Randn { mean: 0.0, stdev: 0.05 }),
    }
}

impl Backbone for TwoTower {
    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        (self.user.shallow_clone(), Tensor::cat(&[self.item.shallow_clone(), content.matmul(&self.proj)], 1))
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        // BPR against the one sampled negative per positive that the default asks for
        let score = |items: &Tensor| self.score_pairs(&b.users, items, content);
        -(score(&b.pos_items) - score(&b.neg_items.squeeze_dim(1))).log_sigmoid().mean(Kind::Float)
    }

    fn content_projection(&self) -> Option<Tensor> {
        Some(self.proj.shallow_clone())
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
        |p: &nn::Path, g: &TrainGraph, c: usize| -> Result<Box<dyn Backbone>> { Ok(Box::new(two_tower(p, g, c))) };
    for method in [Method::Erm, Method::Painvrl] {
        let mut cfg = Config { method, device: DeviceSpec::Cpu, ..Default::default() };
        cfg.train.progress = false;
        cfg.envs.n_envs = 2;
        let r = Run::new(&ds, &cfg).backbone(&factory).execute()?;
        println!("{:<8} backbone {}: test recall@20 {:.4}", method.name(), r.backbone, r.metrics["test"]["recall@20"]);
    }
    Ok(())
}
