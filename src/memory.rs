//! A peak-memory estimate made before training, so that a run that cannot fit is refused with
//! the figure and the knobs to turn instead of dying hours in.

use crate::config::{Config, Method};
use painvrl_core::{Dataset, Error, Result};
use painvrl_graph::BackboneKind;
use serde::{Deserialize, Serialize};

/// Estimated peak memory of a run, in MiB, by part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Item features on the device.
    pub features_mb: f64,
    /// Parameters with their gradients and Adam moments (pre-training and final model alive together).
    pub parameters_mb: f64,
    /// Activations of one training step.
    pub activations_mb: f64,
    /// Environment models (invariant methods).
    pub environments_mb: f64,
    /// One evaluation block of scores.
    pub evaluation_mb: f64,
    /// Sum of the parts.
    pub total_mb: f64,
}

const MB: f64 = (1 << 20) as f64;

/// Estimates the peak memory of `cfg` on `ds` (f32 everywhere; an upper-leaning estimate).
pub fn estimate(ds: &Dataset, cfg: &Config) -> MemoryEstimate {
    let f = |n: f64| n * 4.0 / MB;
    let (nu, ni, din) = (ds.n_users as f64, ds.n_items as f64, ds.features.dim() as f64);
    let b = &cfg.backbone;
    let d = (b.id_dim + b.content_dim) as f64;
    let backbone_params = |content_in: f64| nu * d + ni * b.id_dim as f64 + content_in * b.content_dim as f64 + ni;
    let invariant = cfg.method != Method::Erm;
    let mut params = backbone_params(din);
    if invariant {
        params += backbone_params(cfg.convert_dim as f64) + 2.0 * din * cfg.convert_dim as f64 + din;
    }
    // parameter, gradient and two Adam moments
    let parameters_mb = f(4.0 * params);
    let negatives = match b.kind {
        BackboneKind::Lightgcn => 1.0,
        _ => b.negatives as f64,
    };
    let rows = cfg.train.batch_size as f64 * (1.0 + negatives);
    let mut activations = 4.0 * rows * d + 3.0 * ni * d;
    if b.kind == BackboneKind::Lightgcn {
        activations += 2.0 * (nu + ni) * d * (b.layers as f64 + 1.0);
    }
    let environments_mb = if invariant {
        let e = cfg.envs.n_envs as f64;
        let per_env = if cfg.envs.shared_preference { 1.0 } else { e };
        f(4.0 * (per_env * (nu + din) * cfg.envs.dim as f64 + e * din)
            + 4.0 * e * cfg.envs.batch_size as f64 * (1.0 + cfg.envs.negatives as f64) * din)
    } else {
        0.0
    };
    let block = cfg.train.eval.block_size(ds.n_items, ds.n_users) as f64;
    let evaluation_mb = f(2.0 * block * ni);
    let features_mb = f(ni * din);
    let activations_mb = f(activations);
    let total_mb = features_mb + parameters_mb + activations_mb + environments_mb + evaluation_mb;
    MemoryEstimate { features_mb, parameters_mb, activations_mb, environments_mb, evaluation_mb, total_mb }
}

/// Memory available to a run, in MiB: `max_memory_mb` when configured, else the CPU's
/// `MemAvailable` (Linux); `None` when unknown (CUDA without an explicit limit).
pub fn available_mb(cfg: &Config, device: tch::Device) -> Option<f64> {
    if let Some(m) = cfg.max_memory_mb {
        return Some(m as f64);
    }
    if device.is_cuda() {
        return None;
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Refuses a run whose estimate exceeds the available memory, naming the figure and the knobs.
pub fn check(ds: &Dataset, cfg: &Config, device: tch::Device) -> Result<MemoryEstimate> {
    let est = estimate(ds, cfg);
    if let Some(avail) = available_mb(cfg, device) {
        if est.total_mb > avail {
            return Err(Error::config(
                "max_memory_mb",
                format!(
                    "the run needs an estimated {:.0} MiB (parameters {:.0}, activations {:.0}, environments {:.0}, evaluation {:.0}, features {:.0}) but {:.0} MiB are available on {device:?}; lower train.batch_size, backbone.negatives, envs.n_envs or train.eval.memory_budget_mb",
                    est.total_mb, est.parameters_mb, est.activations_mb, est.environments_mb, est.evaluation_mb, est.features_mb, avail
                ),
            ));
        }
    }
    Ok(est)
}
