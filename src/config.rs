//! Run configuration: serde structs with defaults, read from TOML, overridden from the command
//! line, validated before any training starts with errors that name the field.

use painvrl_convert::{Fusion, MaskUse};
use painvrl_core::{DeviceSpec, Error, Result};
use painvrl_env::HeteroConfig;
use painvrl_graph::{BackboneConfig, TrainConfig};
use painvrl_mask::{GradNormalization, MaskConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The method to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// All features, no invariance.
    Erm,
    /// InvRL: gradient-variance penalty, fixed weights, invariant representation only.
    Invrl,
    /// PaInvRL: Pareto weights, invariant + variant with attention fusion.
    Painvrl,
    /// Ablation: PaInvRL with random environments.
    PainvrlRandomEnvs,
    /// Ablation: PaInvRL with InvRL's fixed weights instead of Pareto weights.
    PainvrlFixedWeights,
    /// Ablation: PaInvRL with the invariant representation only.
    PainvrlInvariantOnly,
}

impl Method {
    /// Every method, in report order.
    pub const ALL: [Method; 6] = [
        Method::Erm,
        Method::Invrl,
        Method::Painvrl,
        Method::PainvrlRandomEnvs,
        Method::PainvrlFixedWeights,
        Method::PainvrlInvariantOnly,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Erm => "erm",
            Method::Invrl => "invrl",
            Method::Painvrl => "painvrl",
            Method::PainvrlRandomEnvs => "painvrl-random-envs",
            Method::PainvrlFixedWeights => "painvrl-fixed-weights",
            Method::PainvrlInvariantOnly => "painvrl-invariant-only",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
            Error::config("method", format!("'{s}' is not one of {}", names.join(", ")))
        })
    }
}

/// How a missing OOD test set is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OodConfig {
    /// Build a popularity-intervened `test_ood` when the dataset has none.
    pub build_if_missing: bool,
    /// Fraction of the test split moved to `test_ood`.
    pub fraction: f64,
    /// At most this many OOD interactions per item.
    pub cap_per_item: usize,
}

impl Default for OodConfig {
    fn default() -> Self {
        OodConfig { build_if_missing: true, fraction: 0.5, cap_per_item: 5 }
    }
}

/// The objective of the final training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalObjective {
    /// The recommender's loss and an IRMv1 penalty across the last round's environments,
    /// balanced at every step like the mask's objectives (min-norm weight; the
    /// `painvrl-fixed-weights` ablation uses the mask's fixed `irm_weight`).
    #[default]
    Pareto,
    /// The recommender's loss alone.
    Erm,
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Method.
    pub method: Method,
    /// Seed of every random choice.
    pub seed: u64,
    /// Device.
    pub device: DeviceSpec,
    /// libtorch intra-op threads (0 = libtorch's default).
    pub threads: usize,
    /// Rounds of environment inference → mask → conversion.
    pub rounds: usize,
    /// Width of the converted representation.
    pub convert_dim: usize,
    /// Fusion of the invariant and variant projections (PaInvRL).
    pub fusion: Fusion,
    /// How the learned mask enters the conversion: `soft` (as learned) or `binary` (Otsu split).
    pub conversion_mask: MaskUse,
    /// Epochs of ERM pre-training (the final training uses `train.epochs`).
    pub pretrain_epochs: usize,
    /// Start the final model from the pre-trained one (ID embeddings copied, the converter's
    /// projections from the pre-trained content projection) instead of from scratch.
    pub final_warm_start: bool,
    /// What the final training of the PaInvRL methods minimises (InvRL always trains on the
    /// recommender's loss alone).
    pub final_objective: FinalObjective,
    /// Gradient scaling before the final training's Pareto weighting (its preference vector is
    /// `mask.preference`).
    pub final_normalization: GradNormalization,
    /// Backbone.
    pub backbone: BackboneConfig,
    /// Training loop.
    pub train: TrainConfig,
    /// Environment inference.
    pub envs: HeteroConfig,
    /// Mask learning.
    pub mask: MaskConfig,
    /// OOD test construction.
    pub ood: OodConfig,
    /// Memory the run may use, in MiB; unset: the CPU's available memory (no check on CUDA).
    pub max_memory_mb: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            method: Method::Painvrl,
            seed: 0,
            device: DeviceSpec::Auto,
            threads: 0,
            rounds: 1,
            convert_dim: 64,
            fusion: Fusion::Attention,
            conversion_mask: MaskUse::Soft,
            pretrain_epochs: 10,
            final_warm_start: true,
            final_objective: FinalObjective::Pareto,
            final_normalization: GradNormalization::L2,
            backbone: BackboneConfig::default(),
            train: TrainConfig::default(),
            envs: HeteroConfig::default(),
            mask: MaskConfig::default(),
            ood: OodConfig::default(),
            max_memory_mb: None,
        }
    }
}

impl Config {
    /// Reads a TOML file over the defaults; unknown keys are errors.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::parse(path, None, e.to_string()))
    }

    /// Checks every field against the catalogue size.
    pub fn validate(&self, n_items: usize) -> Result<()> {
        self.backbone.validate()?;
        self.train.validate(n_items)?;
        if self.method != Method::Erm {
            self.envs.validate()?;
            self.mask.validate()?;
            if self.rounds == 0 {
                return Err(Error::config("rounds", "must be ≥ 1"));
            }
        }
        if self.convert_dim == 0 {
            return Err(Error::config("convert_dim", "must be ≥ 1"));
        }
        if self.pretrain_epochs == 0 {
            return Err(Error::config("pretrain_epochs", "must be ≥ 1"));
        }
        if !(0.0 < self.ood.fraction && self.ood.fraction < 1.0) {
            return Err(Error::config("ood.fraction", "must be in (0, 1)"));
        }
        Ok(())
    }
}
