//! CUDA path: the same computations on CPU and CUDA agree. Compiled only with
//! `--features cuda-tests` (run by `scripts/gpu-check.sh` on a GPU machine).
#![cfg(feature = "cuda-tests")]

use painvrl::core::eval::{evaluate, EmbeddingScorer, EvalConfig};
use painvrl::core::{DeviceSpec, Interactions, UserItems};
use tch::{Device, Kind, Tensor};

#[test]
fn evaluation_agrees_between_cpu_and_cuda() {
    let cuda = DeviceSpec::Cuda(0).resolve().expect("a CUDA device");
    tch::manual_seed(0);
    let u = Tensor::randn([500, 32], (Kind::Float, Device::Cpu));
    let i = Tensor::randn([800, 32], (Kind::Float, Device::Cpu));
    let train = Interactions::from_pairs((0..500u32).map(|x| (x, (x * 7) % 800)));
    let test = Interactions::from_pairs((0..500u32).map(|x| (x, (x * 13 + 1) % 800)));
    let (tr, te) = (UserItems::build(500, &[&train]), UserItems::build(500, &[&test]));
    let cfg = EvalConfig::default();
    let cpu =
        evaluate(&EmbeddingScorer { users: u.shallow_clone(), items: i.shallow_clone() }, &te, &[&tr], &cfg).unwrap();
    let gpu =
        evaluate(&EmbeddingScorer { users: u.to_device(cuda), items: i.to_device(cuda) }, &te, &[&tr], &cfg).unwrap();
    for (k, v) in &cpu.values {
        assert!((gpu.values[k] - v).abs() < 1e-6, "{k}: {v} vs {}", gpu.values[k]);
    }
}

#[test]
fn pipeline_runs_on_cuda() {
    let ds = painvrl::data::generate(&Default::default()).unwrap().dataset;
    let mut cfg = painvrl::config::Config { device: DeviceSpec::Cuda(0), pretrain_epochs: 2, ..Default::default() };
    cfg.train.epochs = 2;
    cfg.train.progress = false;
    cfg.envs.n_envs = 2;
    let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    assert!(r.metrics["test"]["recall@20"] >= 0.0);
}
