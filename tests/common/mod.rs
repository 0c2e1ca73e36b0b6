//! What several integration tests share: a small synthetic set and a configuration that trains
//! every stage on it in seconds (CPU, one thread).

// each test crate compiles its own copy and uses only a part of it
#![allow(dead_code)]

use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::{generate, SyntheticConfig};

/// 80 users × 120 items from the synthetic generator (seed 0), with its OOD test.
pub fn small_synthetic() -> painvrl::core::Dataset {
    generate(&SyntheticConfig { n_users: 80, n_items: 120, ..Default::default() }).unwrap().dataset
}

/// `method` with two epochs per training stage, small batches and two environments.
pub fn small_config(method: Method) -> Config {
    let mut cfg = Config { method, device: DeviceSpec::Cpu, threads: 1, pretrain_epochs: 2, ..Default::default() };
    cfg.train.epochs = 2;
    cfg.train.batch_size = 256;
    cfg.train.progress = false;
    cfg.envs.n_envs = 2;
    cfg.envs.max_iterations = 2;
    cfg.envs.epochs = 1;
    cfg.mask.epochs = 1;
    cfg.mask.min_steps = 0;
    cfg.mask.batch_size = 64;
    cfg.backbone.negatives = 4;
    cfg
}
