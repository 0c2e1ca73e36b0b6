//! What several integration tests share: a small synthetic set and a configuration that trains
//! every stage on it in seconds (CPU, one thread).

// each test crate compiles its own copy and uses only a part of it
#![allow(dead_code)]

use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::{generate, SyntheticConfig};
use std::process::{Command, Stdio};

/// 80 users × 120 items from the synthetic generator (seed 0), with its OOD test.
pub fn small_synthetic() -> painvrl::core::Dataset {
    generate(&SyntheticConfig { n_users: 80, n_items: 120, ..Default::default() }).unwrap().dataset
}

/// `method` with two epochs per training stage, small batches and two environments.
pub fn small_config(method: Method) -> Config {
    let mut cfg =
        Config { method, device: DeviceSpec::Cpu, threads: 1, pretrain_epochs: Some(2), ..Default::default() };
    cfg.train.epochs = 2;
    cfg.train.batch_size = 256;
    cfg.train.progress = false;
    cfg.envs.n_envs = 2;
    cfg.envs.max_iterations = 2;
    cfg.envs.epochs = 1;
    cfg.mask.epochs = 1;
    cfg.mask.min_steps = 0;
    // a few, so that the projection-only steps after the mask's are exercised
    cfg.mask.projection_only_steps = 8;
    cfg.mask.batch_size = 64;
    cfg.backbone.negatives = 4;
    cfg
}

/// Runs every `(label, command)` in a process of its own, as many at a time as there are cores,
/// and returns their standard output in input order; a command that fails panics with its
/// label and its standard error. One process per run keeps every run exactly what it is when
/// run alone (libtorch's random generator is process-wide).
pub fn outputs_in_parallel(commands: Vec<(String, Command)>) -> Vec<String> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut queue = commands.into_iter().peekable();
    let mut out = Vec::new();
    while queue.peek().is_some() {
        let running: Vec<_> = queue
            .by_ref()
            .take(jobs)
            .map(|(label, mut cmd)| {
                let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                (label, child)
            })
            .collect();
        for (label, child) in running {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{label} failed ({}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
            out.push(String::from_utf8_lossy(&o.stdout).into_owned());
        }
    }
    out
}
