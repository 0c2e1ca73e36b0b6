//! One body per check, run on two devices: each computation runs on the CPU in every test run,
//! and with `--features cuda-tests` (on a GPU machine, `scripts/gpu-check.sh`) also on CUDA,
//! where the test asserts that both devices agree.

use painvrl::config::{Config, Method};
use painvrl::core::eval::{evaluate, EmbeddingScorer, EvalConfig};
use painvrl::core::Validate;
use painvrl::core::{Batch, DeviceSpec, Interactions, UserItems};
use painvrl::graph::{build_backbone, BackboneConfig, BackboneKind, TrainGraph};
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// libtorch's random generator is process-wide: the tests that train take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Full-ranking metrics of fixed random embeddings (drawn on the CPU, moved to `device`).
fn evaluation_on(device: Device) -> BTreeMap<String, f64> {
    tch::manual_seed(0);
    let u = Tensor::randn([500, 32], (Kind::Float, Device::Cpu));
    let i = Tensor::randn([800, 32], (Kind::Float, Device::Cpu));
    let train = Interactions::from_pairs((0..500u32).map(|x| (x, (x * 7) % 800)));
    let test = Interactions::from_pairs((0..500u32).map(|x| (x, (x * 13 + 1) % 800)));
    let (tr, te) = (UserItems::build(500, &[&train]), UserItems::build(500, &[&test]));
    let scorer = EmbeddingScorer { users: u.to_device(device), items: i.to_device(device) };
    evaluate(&scorer, &te, &[&tr], &EvalConfig::default()).unwrap().values
}

/// Loss and gradient norms of one training step of each backbone from the same initial weights
/// (made on the CPU, copied to `device`).
fn training_step_on(device: Device) -> Vec<f64> {
    let train = Interactions::from_pairs((0..60u32).flat_map(|u| [(u, u % 40), (u, (u * 3 + 1) % 40)]));
    let graph = TrainGraph::new(60, 40, &train);
    let mut out = vec![];
    for kind in [BackboneKind::Ultragcn, BackboneKind::Lightgcn, BackboneKind::Mf] {
        let cfg = BackboneConfig { kind, negatives: 3, ..Default::default() }.check().unwrap();
        tch::manual_seed(1);
        let cpu = VarStore::new(Device::Cpu);
        let _ = build_backbone(&(cpu.root() / "backbone"), &graph, 16, &cfg).unwrap();
        let vs = VarStore::new(device);
        let model = build_backbone(&(vs.root() / "backbone"), &graph, 16, &cfg).unwrap();
        tch::no_grad(|| {
            for (name, v) in vs.variables() {
                v.shallow_clone().copy_(&cpu.variables()[&name]);
            }
        });
        let content = (Tensor::arange(40 * 16, (Kind::Float, Device::Cpu)).reshape([40, 16]) / 640.0).to_device(device);
        let batch = Batch {
            users: Tensor::from_slice(&[0i64, 5, 9, 33]).to_device(device),
            pos_items: Tensor::from_slice(&[0i64, 5, 9, 33]).to_device(device),
            neg_items: Tensor::from_slice(&[1i64, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14])
                .reshape([4, 3])
                .to_device(device),
        };
        let loss = model.loss(&batch, &content);
        loss.backward();
        out.push(loss.double_value(&[]));
        let mut names: Vec<String> = vs.variables().keys().cloned().collect();
        names.sort();
        for n in names {
            let grad = vs.variables()[&n].grad();
            out.push(if grad.defined() { grad.norm().double_value(&[]) } else { 0.0 });
        }
    }
    out
}

/// Test and OOD metrics of ERM and PaInvRL runs, and EASE's, on a small synthetic set.
fn pipeline_on(spec: DeviceSpec) -> BTreeMap<String, f64> {
    let ds = painvrl::data::generate(&Default::default()).unwrap().dataset;
    let mut out = BTreeMap::new();
    for method in [Method::Erm, Method::Painvrl, Method::Ease] {
        let mut cfg = Config { method, device: spec, threads: 1, pretrain_epochs: Some(2), ..Default::default() };
        cfg.train.epochs = 3;
        cfg.train.progress = false;
        cfg.envs.n_envs = 2;
        cfg.baselines.ease_lambda = vec![10.0];
        let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
        for split in ["test", "test_ood"] {
            out.insert(format!("{}/{split}", method.name()), r.metrics[split]["recall@20"]);
        }
    }
    out
}

#[test]
fn evaluation_on_cpu_is_in_range() {
    let m = evaluation_on(Device::Cpu);
    assert!(m.values().all(|v| (0.0..=1.0).contains(v)) && !m.is_empty());
}

#[test]
fn training_step_on_cpu_has_finite_nonzero_gradients() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v = training_step_on(Device::Cpu);
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x > 0.0), "{v:?}");
}

#[test]
fn pipeline_on_cpu_runs_every_path() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = pipeline_on(DeviceSpec::Cpu);
    assert_eq!(m.len(), 6);
    assert!(m.values().all(|v| (0.0..=1.0).contains(v)), "{m:?}");
}

#[cfg(feature = "cuda-tests")]
mod on_cuda {
    use super::*;

    fn cuda() -> Device {
        DeviceSpec::Cuda(0).resolve().expect("a CUDA device (is libtorch_cuda.so linked? scripts/check-cuda-link.sh)")
    }

    #[test]
    fn evaluation_agrees_between_cpu_and_cuda() {
        let (cpu, gpu) = (evaluation_on(Device::Cpu), evaluation_on(cuda()));
        for (k, v) in &cpu {
            assert!((gpu[k] - v).abs() < 1e-6, "{k}: {v} vs {}", gpu[k]);
        }
    }

    #[test]
    fn training_step_agrees_between_cpu_and_cuda() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (cpu, gpu) = (training_step_on(Device::Cpu), training_step_on(cuda()));
        assert_eq!(cpu.len(), gpu.len());
        for (a, b) in cpu.iter().zip(&gpu) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{cpu:?}\nvs\n{gpu:?}");
        }
    }

    #[test]
    fn pipeline_agrees_between_cpu_and_cuda() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (cpu, gpu) = (pipeline_on(DeviceSpec::Cpu), pipeline_on(DeviceSpec::Cuda(0)));
        // EASE is deterministic; the trained models draw their initial weights from the
        // device's own generator (the negatives come from the same host sampler), so they
        // agree within training noise
        for (k, v) in &cpu {
            let tol = if k.starts_with("ease") { 1e-5 } else { 0.05 };
            assert!((gpu[k] - v).abs() <= tol, "{k}: cpu {v} vs cuda {}", gpu[k]);
        }
    }
}
