//! The training stages on the bundled TikTok data, on CPU: one UltraGCN epoch (ERM, all features), one mask-learning epoch (IRMv1, Pareto
//! weights, 10 random environments), and one final-training epoch with the invariance penalty
//! balanced by the Pareto weight (PaInvRL's final stage).

use criterion::{criterion_group, criterion_main, Criterion};
use painvrl::core::Validate;
use painvrl::core::{EnvironmentInference, UserItems};
use painvrl::data::{load_dir, LoadOptions, NegativeSampler};
use painvrl::env::{RandomEnvironments, Unit};
use painvrl::graph::{build_backbone, fit, BackboneConfig, Stage, TrainConfig, TrainData, TrainGraph};
use painvrl::mask::{train_mask, InvariancePenalty, Mask, MaskConfig, MaskData, MaskKind};
use std::path::Path;
use tch::{nn::VarStore, Device};

fn benches(c: &mut Criterion) {
    tch::set_num_threads(std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1));
    let (ds, _) =
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiktok"), &LoadOptions::default()).unwrap();
    let graph = TrainGraph::new(ds.n_users, ds.n_items, &ds.train);
    let sampler = NegativeSampler::new(UserItems::build(ds.n_users, &[&ds.train]), ds.n_items).unwrap();
    let val = UserItems::build(ds.n_users, &[&ds.val]);
    let data = TrainData { train: &ds.train, sampler: &sampler, val: &val, objective: None, stop: None };
    let x = ds.features.to_tensor(Device::Cpu);
    let content = || x.shallow_clone();
    let ultragcn =
        BackboneConfig { kind: painvrl::graph::BackboneKind::Ultragcn, ..Default::default() }.check().unwrap();
    let mut g = c.benchmark_group("tiktok");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(ds.train.len() as u64 * 50));
    g.bench_function("negative_sampling_50_per_interaction", |b| b.iter(|| sampler.sample(&ds.train.users, 50, 7)));
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("ultragcn_epoch_with_validation", |b| {
        b.iter(|| {
            let mut vs = VarStore::new(Device::Cpu);
            let bb = build_backbone(&(vs.root() / "backbone"), &graph, ds.features.dim(), &ultragcn).unwrap();
            let cfg = TrainConfig { epochs: 1, progress: false, ..Default::default() };
            fit(&mut vs, bb.as_ref(), &content, &data, &cfg, &Stage { name: "bench", ..Default::default() }).unwrap()
        })
    });
    let envs = RandomEnvironments { n_envs: 10, unit: Unit::Interaction }.infer(&ds, None, 0).unwrap();
    g.bench_function("mask_epoch_irmv1_pareto_e10", |b| {
        b.iter(|| {
            let vs = VarStore::new(Device::Cpu);
            let bb = build_backbone(&(vs.root() / "backbone"), &graph, ds.features.dim(), &ultragcn).unwrap();
            let mask = Mask::new(Device::Cpu, ds.features.dim(), MaskKind::Sigmoid, 0.01);
            let cfg =
                MaskConfig { epochs: 1, min_steps: 0, projection_only_steps: 0, ..Default::default() }.check().unwrap();
            let data = MaskData {
                features: &x,
                modalities: &ds.features,
                train: &ds.train,
                envs: &envs,
                sampler: &sampler,
                stop: None,
                planted_invariant: None,
            };
            train_mask(bb.as_ref(), &mask, &data, &cfg, 0).unwrap()
        })
    });
    let penalty = InvariancePenalty {
        labels: &envs.labels,
        n_envs: envs.sizes.len(),
        kind: Default::default(),
        risk: MaskConfig::default().risk,
        combination: MaskConfig::default().combination(),
    };
    let final_data = TrainData { objective: Some(&penalty), ..data };
    g.bench_function("final_epoch_with_penalty_pareto_e10", |b| {
        b.iter(|| {
            let mut vs = VarStore::new(Device::Cpu);
            let bb = build_backbone(&(vs.root() / "backbone"), &graph, ds.features.dim(), &ultragcn).unwrap();
            let cfg = TrainConfig { epochs: 1, progress: false, ..Default::default() };
            fit(&mut vs, bb.as_ref(), &content, &final_data, &cfg, &Stage { name: "bench", ..Default::default() })
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(train_benches, benches);
criterion_main!(train_benches);
