//! A peak-memory estimate made before training, so that a run that cannot fit is refused with
//! the figure and the knobs to turn instead of dying hours in.

use crate::config::Config;
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
    let invariant = cfg.method.is_invariant();
    let mut params = backbone_params(din);
    if invariant {
        let final_model = backbone_params(cfg.convert_dim as f64) + 2.0 * din * cfg.convert_dim as f64 + din;
        // a mask ensemble's members pre-train, one at a time, a second raw-feature model beside
        // the run's own, before the final model exists
        let member = if cfg.mask_ensemble > 1 { backbone_params(din) } else { 0.0 };
        params += final_model.max(member);
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

/// Memory available to a run, in MiB: `max_memory_mb` when configured; on CUDA the device's
/// free memory as `nvidia-smi` reports it; on CPU `MemAvailable` (Linux); `None` when unknown
/// (then no check is made).
pub fn available_mb(cfg: &Config, device: tch::Device) -> Option<f64> {
    if let Some(m) = cfg.max_memory_mb {
        return Some(m as f64);
    }
    if let tch::Device::Cuda(index) = device {
        return cuda_free_mb(index);
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Free memory of CUDA device `index` (as libtorch numbers it) from `nvidia-smi`, honouring
/// `CUDA_VISIBLE_DEVICES`; `None` when `nvidia-smi` is missing or its answer is unreadable.
fn cuda_free_mb(index: usize) -> Option<f64> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let id = physical_gpu_id(visible.as_deref(), index)?;
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", &id])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_free_mib(&String::from_utf8_lossy(&out.stdout))
}

/// The `nvidia-smi -i` argument for libtorch's device `index` under `CUDA_VISIBLE_DEVICES`
/// (an index or a UUID from that list; the index itself when the variable is unset).
fn physical_gpu_id(visible: Option<&str>, index: usize) -> Option<String> {
    match visible {
        None => Some(index.to_string()),
        Some(list) => list.split(',').map(str::trim).filter(|s| !s.is_empty()).nth(index).map(str::to_string),
    }
}

/// Parses `nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits` output (MiB).
fn parse_free_mib(text: &str) -> Option<f64> {
    text.lines().next()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_answers_are_parsed_or_rejected() {
        assert_eq!(parse_free_mib("80614\n"), Some(80614.0));
        assert_eq!(parse_free_mib(" 1024 \n 2048\n"), Some(1024.0));
        assert_eq!(parse_free_mib("[N/A]\n"), None);
        assert_eq!(parse_free_mib(""), None);
    }

    #[test]
    fn visible_devices_map_libtorch_indices_to_physical_ones() {
        assert_eq!(physical_gpu_id(None, 1).as_deref(), Some("1"));
        assert_eq!(physical_gpu_id(Some("3,1"), 1).as_deref(), Some("1"));
        assert_eq!(physical_gpu_id(Some("3, GPU-abc"), 1).as_deref(), Some("GPU-abc"));
        assert_eq!(physical_gpu_id(Some("3"), 1), None);
        assert_eq!(physical_gpu_id(Some(""), 0), None);
    }
}
