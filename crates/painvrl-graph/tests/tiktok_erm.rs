//! On the bundled TikTok data, every backbone trained with ERM on all features beats a
//! popularity ranking on test Recall@20 and NDCG@20 (small budgets for the graph models, the
//! full 30 epochs for VBPR, in the acceptance tier; `full_budget_figures`, ignored, runs all
//! three with the full budget).

use painvrl_core::eval::{evaluate, EmbeddingScorer, EvalConfig};
use painvrl_core::Validate;
use painvrl_core::{SplitMetrics, UserItems};
use painvrl_data::{load_dir, LoadOptions, NegativeSampler};
use painvrl_graph::{build_backbone, fit, BackboneConfig, BackboneKind, Stage, TrainConfig, TrainData, TrainGraph};
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn popularity(ds: &painvrl_core::Dataset, test: &UserItems, seen: &[&UserItems]) -> SplitMetrics {
    let deg: Vec<f32> = ds.train.item_degrees(ds.n_items).iter().map(|&d| d as f32).collect();
    let scorer = EmbeddingScorer {
        users: Tensor::ones([ds.n_users as i64, 1], (Kind::Float, Device::Cpu)),
        items: Tensor::from_slice(&deg).reshape([-1, 1]),
    };
    evaluate(&scorer, test, seen, &EvalConfig::default()).unwrap()
}

fn erm(kind: BackboneKind, epochs: usize) -> (SplitMetrics, SplitMetrics) {
    tch::manual_seed(0);
    tch::set_num_threads(2);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tiktok");
    let (ds, _) = load_dir(&dir, &LoadOptions::default()).unwrap();
    let graph = TrainGraph::new(ds.n_users, ds.n_items, &ds.train);
    let train_idx = UserItems::build(ds.n_users, &[&ds.train]);
    let val_idx = UserItems::build(ds.n_users, &[&ds.val]);
    let test_idx = UserItems::build(ds.n_users, &[&ds.test]);
    let tv = UserItems::build(ds.n_users, &[&ds.train, &ds.val]);
    let sampler = NegativeSampler::new(train_idx.clone(), ds.n_items).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let features = ds.features.to_tensor(Device::Cpu);
    let cfg = BackboneConfig { kind, ..Default::default() }.check().unwrap();
    let backbone = build_backbone(&(vs.root() / "backbone"), &graph, ds.features.dim(), &cfg).unwrap();
    let tcfg = TrainConfig { epochs, progress: false, ..Default::default() };
    let data = TrainData { train: &ds.train, sampler: &sampler, val: &val_idx, objective: None, stop: None };
    let content = || features.shallow_clone();
    fit(&mut vs, backbone.as_ref(), &content, &data, &tcfg, &Stage { name: "erm", ..Default::default() }).unwrap();
    let (u, i) = tch::no_grad(|| backbone.embeddings(&features));
    let got = evaluate(&EmbeddingScorer { users: u, items: i }, &test_idx, &[&tv], &EvalConfig::default()).unwrap();
    (got, popularity(&ds, &test_idx, &[&tv]))
}

fn assert_beats_popularity(kind: BackboneKind, epochs: usize) {
    let (m, pop) = erm(kind, epochs);
    eprintln!(
        "{kind:?}: recall@20 {:.4} ndcg@20 {:.4}; popularity {:.4} {:.4}",
        m.get("recall", 20).unwrap(),
        m.get("ndcg", 20).unwrap(),
        pop.get("recall", 20).unwrap(),
        pop.get("ndcg", 20).unwrap()
    );
    assert!(m.get("recall", 20).unwrap() > pop.get("recall", 20).unwrap());
    assert!(m.get("ndcg", 20).unwrap() > pop.get("ndcg", 20).unwrap());
}

/// Measured (session 32): Recall@20 / NDCG@20 0.0790 / 0.0395 after 4 epochs, against
/// popularity's 0.0596 / 0.0254 (0.0787 / 0.0396 after the 10 epochs this test ran before).
#[test]
fn ultragcn_beats_popularity() {
    assert_beats_popularity(BackboneKind::Ultragcn, 4);
}

/// Measured (session 32): 0.0860 / 0.0418 after 2 epochs (0.0965 / 0.0429 after the 5 this
/// test ran before).
#[test]
fn lightgcn_beats_popularity() {
    assert_beats_popularity(BackboneKind::Lightgcn, 2);
}

/// VBPR's full 30 epochs take about 2.5 minutes on 2 cores: the acceptance tier (CI runs it;
/// `cargo test --workspace -- --ignored acceptance::` runs it by hand).
mod acceptance {
    use super::*;

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn mf_beats_popularity() {
        // VBPR learns more slowly than the graph models: measured recall@20 / NDCG@20 after 10
        // epochs 0.0599 / 0.0262, after 20 0.0668 / 0.0261, after 30 0.0707 / 0.0281 (popularity
        // 0.0596 / 0.0254); the full budget keeps the margin clear of thread-order noise
        assert_beats_popularity(BackboneKind::Mf, 30);
    }
}

#[test]
#[ignore = "full budget, for the docs (about 5 minutes)"]
fn full_budget_figures() {
    for kind in [BackboneKind::Ultragcn, BackboneKind::Lightgcn, BackboneKind::Mf] {
        assert_beats_popularity(kind, 30);
    }
}
