//! Environment inference on TikTok with E = 10: the environment models trained as one batched
//! model against one after another (InvRL's way), one assign–train iteration each.

use criterion::{criterion_group, criterion_main, Criterion};
use painvrl::core::EnvironmentInference;
use painvrl::core::Validate;
use painvrl::data::{load_dir, LoadOptions};
use painvrl::env::{HeteroConfig, HeterogeneousIdentification, Start};
use std::path::Path;
use tch::Device;

fn benches(c: &mut Criterion) {
    tch::set_num_threads(std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1));
    let (ds, _) =
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiktok"), &LoadOptions::default()).unwrap();
    let mut g = c.benchmark_group("envs_tiktok_e10");
    g.sample_size(10);
    for (name, batched) in [("batched", true), ("sequential", false)] {
        // a random start and no warm start: only the E environment models' training and the
        // reassignment are timed
        let cfg = HeteroConfig {
            n_envs: 10,
            max_iterations: 1,
            warm_start: false,
            start: Start::Random,
            batched,
            ..Default::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                HeterogeneousIdentification::new(cfg.clone().check().unwrap(), Device::Cpu).infer(&ds, None, 0).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(env_benches, benches);
criterion_main!(env_benches);
