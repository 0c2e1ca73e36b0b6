//! Run configuration: serde structs with defaults, read from TOML, overridden from the command
//! line, validated before any training starts with errors that name the field.

pub use painvrl_baselines::BaselineConfig as BaselinesConfig;
use painvrl_convert::{Fusion, MaskUse};
use painvrl_core::{DeviceSpec, Error, Result, Validate};
pub use painvrl_data::PopularityOod;
use painvrl_env::{HeteroConfig, Strategy};
use painvrl_graph::{BackboneConfig, BackboneKind, TrainConfig};
use painvrl_mask::{FinalPenalty, GradNormalization, MaskConfig, RiskForm};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The method to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// All features, no invariance.
    Erm,
    /// InvRL: heterogeneous identification (whatever `envs.strategy` says), a gate mask with
    /// the gradient-variance penalty, fixed weights, invariant representation only.
    Invrl,
    /// PaInvRL: Pareto weights, invariant + variant with attention fusion.
    Painvrl,
    /// Ablation: PaInvRL with random environments.
    PainvrlRandomEnvs,
    /// Ablation: PaInvRL with InvRL's fixed weights instead of Pareto weights.
    PainvrlFixedWeights,
    /// Ablation: PaInvRL with the invariant representation only.
    PainvrlInvariantOnly,
    /// Baseline: items ranked by training popularity.
    Popularity,
    /// Baseline: EASE, closed-form item–item regression (Steck 2019); λ chosen on validation
    /// from `baselines.ease_lambda`.
    Ease,
    /// Baseline: ItemKNN, cosine item–item neighbours; k chosen on validation from
    /// `baselines.knn_k`.
    Itemknn,
    /// Baseline: PD, popularity-deconfounded training (Zhang et al. 2021) of the backbone with
    /// `baselines.pd_gamma`; needs a BPR backbone (lightgcn, mf).
    Pd,
    /// Baseline: ERM with post-hoc popularity adjustment, β chosen on validation from
    /// `baselines.posthoc_beta`.
    Posthoc,
}

impl Method {
    /// Every method, in report order: ERM and the invariant methods with their ablations (the
    /// pipeline's own methods, [`Method::INVARIANCE`]) first, then the baselines.
    pub const ALL: [Method; 11] = [
        Method::Erm,
        Method::Invrl,
        Method::Painvrl,
        Method::PainvrlRandomEnvs,
        Method::PainvrlFixedWeights,
        Method::PainvrlInvariantOnly,
        Method::Popularity,
        Method::Ease,
        Method::Itemknn,
        Method::Pd,
        Method::Posthoc,
    ];

    /// ERM and the invariant methods with their ablations: the first six of [`Method::ALL`].
    pub const INVARIANCE: &'static [Method] = Method::ALL.split_at(6).0;

    /// Whether the method learns environments, a mask and a converted representation.
    pub fn is_invariant(self) -> bool {
        self != Method::Erm && Method::INVARIANCE.contains(&self)
    }

    /// Whether the method scores from interaction IDs alone with a closed form (no backbone).
    pub fn is_item_item(self) -> bool {
        matches!(self, Method::Popularity | Method::Ease | Method::Itemknn)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Erm => "erm",
            Method::Invrl => "invrl",
            Method::Painvrl => "painvrl",
            Method::PainvrlRandomEnvs => "painvrl-random-envs",
            Method::PainvrlFixedWeights => "painvrl-fixed-weights",
            Method::PainvrlInvariantOnly => "painvrl-invariant-only",
            Method::Popularity => "popularity",
            Method::Ease => "ease",
            Method::Itemknn => "itemknn",
            Method::Pd => "pd",
            Method::Posthoc => "posthoc",
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

/// Which validation split selects models: the early-stopping epoch and every hyperparameter
/// chosen from a grid (EASE's λ, ItemKNN's k, the post-hoc β). Never a test split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The validation split (an IID sample).
    #[default]
    Val,
    /// The popularity-intervened validation slice `val_ood` (requires `ood.val_slice`).
    ValOod,
}

impl Selection {
    /// The split's name in reports.
    pub fn split(self) -> &'static str {
        match self {
            Selection::Val => "val",
            Selection::ValOod => "val_ood",
        }
    }

    /// The split's interactions in `ds`; `val_ood` must exist (built with `ood.val_slice`).
    pub fn interactions(self, ds: &painvrl_core::Dataset) -> Result<&painvrl_core::Interactions> {
        match self {
            Selection::Val => Ok(&ds.val),
            Selection::ValOod => ds.val_ood.as_ref().ok_or_else(|| {
                Error::config(
                    "select_on",
                    "'val_ood' selected but the dataset has no val_ood (set ood.val_slice = true)",
                )
            }),
        }
    }
}

/// The objective of the final training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalObjective {
    /// The recommender's loss and an IRMv1 penalty across the last round's environments,
    /// balanced at every step like the mask's objectives (min-norm weight; the
    /// `painvrl-fixed-weights` ablation uses the mask's fixed `irm_weight`). The default: on
    /// validation it wins on both bundled sets (docs/method.md, "Final training objective").
    #[default]
    Pareto,
    /// The recommender's loss alone, on the converted representation (as the method's
    /// description has it); about 40 % faster.
    Erm,
}

/// Everything a run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Method.
    pub method: Method,
    /// Seed of every random choice of training (initialisation, sampling, environments). It never
    /// changes the data: runs with different seeds are evaluated on the same test sets.
    pub seed: u64,
    /// Seed of the data split and of the OOD sets built from it (fixed across training seeds).
    pub split_seed: u64,
    /// The validation split that selects models and hyperparameters.
    pub select_on: Selection,
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
    /// Masks to learn and average (≥ 1): members after the first pre-train their own model
    /// with their own seed and learn a mask on it (environment inference included); the
    /// conversion uses the mean of the members' weights, the final penalty the run's own
    /// environments, and the final model's warm start the run's own pre-trained model. A mask
    /// learnt from inferred environments ranks the dimensions differently from seed to seed;
    /// the mean of several can rank them better where the seeds disagree by chance. Measured
    /// in session 24 (docs/method.md): five masks ranked no better on average than one, since
    /// members also disagree in sign. Pre-training and mask learning take that many times longer.
    pub mask_ensemble: usize,
    /// γ ∈ [0, 1], the weight of the variant half in the model the final training saves and
    /// evaluates: h = β h_inv + γ (1 − β) h_var. The final training itself runs with γ = 1,
    /// so that the variant half absorbs what the masked-out dimensions predict; γ < 1 leaves
    /// that out at inference (0: the invariant half alone). 1, the default, serves the model
    /// as trained. Attention and scalar fusion only (invariant-only fusion has no variant
    /// half). Lower γ trades IID for OOD recall when the mask separates the dimensions; with
    /// a mask near ½ everywhere it only shrinks the content (docs/method.md, session 23).
    /// `report.json` → `diagnostics.val_by_variant_weight` shows the validation side.
    pub inference_variant_weight: f64,
    /// When set, γ is chosen on validation instead of fixed by `inference_variant_weight`
    /// (which must then stay 1): the smallest γ of the report's grid (0, ¼, ½, ¾, 1) whose
    /// validation `train.select_metric` is at least (1 − tolerance) × that of γ = 1, the model
    /// as trained. A tolerance in [0, 1); 0 picks the best γ on validation, the smallest on
    /// ties. Leaving out part of the variant half is a bet that what validation loses is
    /// spurious; with learnt masks it bought no OOD recall over 17 seeds (docs/method.md,
    /// session 24). Attention and scalar fusion only. `report.json`
    /// → `diagnostics.served_variant_weight` records the choice.
    pub variant_weight_tolerance: Option<f64>,
    /// Choose γ on validation by its worse environment instead: the γ of the report's grid
    /// whose validation `train.select_metric` is highest on the environment where it is lowest,
    /// the validation clicks labelled by the environment inference's own rule for new clicks
    /// (`EnvironmentInference::label_heldout`; taste consistency has one), ties to the larger
    /// γ. An invariant model should do well in every environment; a variant half that helps
    /// one environment at the other's cost is left out. Excludes `variant_weight_tolerance`;
    /// attention and scalar fusion only. `report.json` → `diagnostics.val_by_variant_weight`
    /// shows each environment's side.
    pub variant_weight_worst_environment: bool,
    /// Epochs of ERM pre-training (the final training uses `train.epochs`). Unset, the
    /// backbone's default ([`Config::resolved_pretrain_epochs`]): 10 on LightGCN,
    /// `train.epochs` (so that patience ends it) on VBPR, which converges late, and on UltraGCN,
    /// whose mask then comes from a shorter pre-training (`mask_pretrain_epochs`).
    pub pretrain_epochs: Option<usize>,
    /// Epochs of a second, shorter ERM pre-training that environment inference and mask
    /// learning work on, while the final training starts from the full one (`pretrain_epochs`):
    /// the mask from an early model, which still separates what the environments share from
    /// what they do not, the final model from a converged one. The shorter pre-training runs
    /// first with the run's seed, so its model, environments and mask are those of a run with
    /// `pretrain_epochs` equal to this value; the full pre-training follows and costs its own
    /// epochs. The converter then starts from the full pre-training's content projection, which
    /// mask learning did not train. Unset, the backbone's default
    /// ([`Config::resolved_mask_pretrain_epochs`]): 10 on UltraGCN, none elsewhere. Equal to
    /// the resolved `pretrain_epochs`, one pre-training serves both. Invariant methods only;
    /// needs `final_warm_start`. `report.json` → `diagnostics.val_pretrained_for_final`
    /// records the full pre-training's validation metrics.
    pub mask_pretrain_epochs: Option<usize>,
    /// Start the final model from the model mask learning leaves instead of from scratch: the
    /// pre-trained ID embeddings copied, the converter's projections from the content projection
    /// W as mask learning left it (pre-training's, trained on alongside the mask and then alone
    /// for `mask.projection_only_steps` when `mask.train_projection`, the default).
    /// `report.json` → `diagnostics` records the validation metrics of the pre-trained model,
    /// of that model and of the final start.
    pub final_warm_start: bool,
    /// With the warm start, the converted content the final training starts from, as a multiple
    /// of x W (attention and scalar fusion, any mask; the invariant-only fusion of `invrl` and
    /// `painvrl-invariant-only` always starts from (m ⊙ x) W): 1 starts the final model as the
    /// model mask learning leaves (the pre-trained model itself with `mask.train_projection =
    /// false`), ½ with the content pathway halved (the start before session 10). The default
    /// 0.75 was chosen on validation recall over six data sets (session 10): significantly above
    /// ½ on `affinity`, level elsewhere; 1 was below on `exposure` (docs/method.md).
    /// `painvrl bench --grid final_warm_start_scale=0.5,0.75,1` chooses per data set on
    /// validation.
    pub final_warm_start_scale: f64,
    /// What the final training of the PaInvRL methods minimises (InvRL always trains on the
    /// recommender's loss alone).
    pub final_objective: FinalObjective,
    /// Gradient scaling before the final training's Pareto weighting (its preference vector is
    /// `mask.preference`).
    pub final_normalization: GradNormalization,
    /// The invariance penalty of the final training: `"irmv1"` (the default, as in mask
    /// learning), `"irmv1-centered"` (IRMv1 without the part every environment shares) or
    /// `"risk-variance"` (V-REx: the variance of the environments' mean risks).
    pub final_penalty: FinalPenalty,
    /// The form of the risk the final penalty reads: `"pointwise"` (the default, logistic loss
    /// of each score), `"pairwise"` (BPR of each positive against its negatives) or
    /// `"backbone"` (the backbone's own loss form: pairwise on LightGCN and VBPR, pointwise on
    /// UltraGCN). `mask.risk` is the same choice for mask learning.
    pub final_risk: RiskForm,
    /// The environments the final penalty is taken across, by `envs.strategy`'s names (e.g.
    /// `"popularity-bands"`: the shift a popularity-drawn test makes); unset: the last round's
    /// environments, those the mask learnt from.
    pub final_environments: Option<Strategy>,
    /// The popularity exponent of the final training's negatives (as `train.negative_popularity`,
    /// which the other stages keep); unset: `train.negative_popularity`. Lets the mask learn
    /// against uniform negatives while the final model ranks against popular competitors.
    pub final_negative_popularity: Option<f64>,
    /// Backbone.
    pub backbone: BackboneConfig,
    /// Training loop.
    pub train: TrainConfig,
    /// Environment inference.
    pub envs: HeteroConfig,
    /// Mask learning.
    pub mask: MaskConfig,
    /// OOD test (and validation slice) construction.
    pub ood: PopularityOod,
    /// The reference methods' hyperparameters.
    pub baselines: BaselinesConfig,
    /// Memory the run may use, in MiB; unset: the CPU's available memory (no check on CUDA).
    pub max_memory_mb: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            method: Method::Painvrl,
            seed: 0,
            split_seed: 0,
            select_on: Selection::Val,
            device: DeviceSpec::Auto,
            threads: 0,
            rounds: 1,
            convert_dim: 64,
            fusion: Fusion::Attention,
            conversion_mask: MaskUse::Soft,
            mask_ensemble: 1,
            inference_variant_weight: 1.0,
            variant_weight_tolerance: None,
            variant_weight_worst_environment: false,
            pretrain_epochs: None,
            mask_pretrain_epochs: None,
            final_warm_start: true,
            final_warm_start_scale: 0.75,
            final_objective: FinalObjective::Pareto,
            final_normalization: GradNormalization::L2,
            final_penalty: FinalPenalty::Irmv1,
            final_risk: RiskForm::Pointwise,
            final_environments: None,
            final_negative_popularity: None,
            backbone: BackboneConfig::default(),
            train: TrainConfig::default(),
            envs: HeteroConfig::default(),
            mask: MaskConfig::default(),
            ood: PopularityOod::default(),
            baselines: BaselinesConfig::default(),
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

    /// Epochs of the invariant methods' ERM pre-training, the one the final training starts
    /// from: `pretrain_epochs`, or unset the backbone's default. On LightGCN 10: pre-training to
    /// convergence gave up validation recall on the `exposure` family (docs/method.md, session
    /// 11), and with the mask from a 10-epoch model it was lower on all six per-click sets
    /// (session 30). On VBPR the whole budget `train.epochs`, which patience ends: VBPR
    /// converges late, and 10 epochs leave mask learning and the final training an
    /// under-trained model (on TikTok its validation recall peaks at epoch 1–2, dips and passes
    /// that peak only after about 30 epochs; on MovieLens it is still climbing at epoch 10;
    /// docs/method.md, session 27). On UltraGCN the whole budget too (at least 10), with the
    /// mask from 10 epochs ([`Config::resolved_mask_pretrain_epochs`]) when the final training
    /// is warm-started, else 10.
    pub fn resolved_pretrain_epochs(&self) -> usize {
        self.pretrain_epochs.unwrap_or(match self.backbone.kind {
            BackboneKind::Mf => self.train.epochs,
            // never below the mask's 10, so that a short budget keeps the mask's pre-training
            BackboneKind::Ultragcn if self.final_warm_start => self.train.epochs.max(10),
            BackboneKind::Lightgcn | BackboneKind::Ultragcn => 10,
        })
    }

    /// Epochs of the shorter pre-training that mask learning works on when it is not the one
    /// the final training starts from; `None` when one pre-training serves both.
    /// `mask_pretrain_epochs`, or unset the backbone's default: 10 on UltraGCN with the warm
    /// start, where pre-training until patience alone raised validation on the affinity
    /// generator's sets but made the mask rank worse on the exposure families (session 28),
    /// and the split raised validation on all seven synthetic settings with the mask unchanged
    /// (docs/method.md, session 30); none elsewhere.
    pub fn resolved_mask_pretrain_epochs(&self) -> Option<usize> {
        let epochs = self.mask_pretrain_epochs.or(match self.backbone.kind {
            BackboneKind::Ultragcn if self.final_warm_start => Some(10),
            BackboneKind::Ultragcn | BackboneKind::Lightgcn | BackboneKind::Mf => None,
        })?;
        (epochs < self.resolved_pretrain_epochs()).then_some(epochs)
    }

    /// Checks every field against the catalogue size.
    pub fn validate(&self, n_items: usize) -> Result<()> {
        self.backbone.validate()?;
        if self.method.is_invariant() {
            self.envs.validate()?;
            self.mask.validate()?;
        }
        self.validate_own(n_items)
    }

    /// Checks the fields that are not sub-configurations with their own [`Validate`] (backbone,
    /// environments, mask): `Config::check` checks those into `Checked` values instead.
    pub(crate) fn validate_own(&self, n_items: usize) -> Result<()> {
        self.train.validate(n_items)?;
        self.baselines.validate()?;
        if self.select_on == Selection::ValOod && !self.ood.val_slice {
            return Err(Error::config("select_on", "'val_ood' needs ood.val_slice = true"));
        }
        if self.method.is_invariant() && self.rounds == 0 {
            return Err(Error::config("rounds", "must be ≥ 1"));
        }
        if self.mask_ensemble == 0 {
            return Err(Error::config("mask_ensemble", "must be ≥ 1 (1: a single mask)"));
        }
        if self.convert_dim == 0 {
            return Err(Error::config("convert_dim", "must be ≥ 1"));
        }
        if self.pretrain_epochs == Some(0) {
            return Err(Error::config("pretrain_epochs", "must be ≥ 1"));
        }
        if let Some(epochs) = self.mask_pretrain_epochs.filter(|_| self.method.is_invariant()) {
            let full = self.resolved_pretrain_epochs();
            if epochs == 0 || epochs > full {
                return Err(Error::config(
                    "mask_pretrain_epochs",
                    format!("must be ≥ 1 and at most the pre-training's {full} epochs (pretrain_epochs), got {epochs}"),
                ));
            }
            if epochs < full && !self.final_warm_start {
                return Err(Error::config(
                    "mask_pretrain_epochs",
                    "needs final_warm_start = true: without it the final training never uses the full pre-training",
                ));
            }
        }
        if let Some(a) = self.final_negative_popularity.filter(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(Error::config(
                "final_negative_popularity",
                format!("{a} is not a finite non-negative exponent"),
            ));
        }
        if !(0.0..=1.0).contains(&self.inference_variant_weight) {
            return Err(Error::config(
                "inference_variant_weight",
                format!("must be in [0, 1], got {}", self.inference_variant_weight),
            ));
        }
        if let Some(tolerance) = self.variant_weight_tolerance {
            if !(0.0..1.0).contains(&tolerance) {
                return Err(Error::config("variant_weight_tolerance", format!("must be in [0, 1), got {tolerance}")));
            }
            if self.variant_weight_worst_environment {
                return Err(Error::config(
                    "variant_weight_worst_environment",
                    "chooses γ by the worse validation environment, variant_weight_tolerance within a tolerance of \
                     γ = 1; set one of the two",
                ));
            }
        }
        // a rule that chooses γ on validation leaves no fixed γ to serve
        let choosing = match (self.variant_weight_tolerance, self.variant_weight_worst_environment) {
            (Some(_), _) => Some("variant_weight_tolerance"),
            (None, true) => Some("variant_weight_worst_environment"),
            (None, false) => None,
        };
        if let Some(rule) = choosing.filter(|_| self.inference_variant_weight != 1.0) {
            return Err(Error::config(
                rule,
                format!(
                    "chooses γ on validation, so inference_variant_weight must stay 1 (got {}); set one of the two",
                    self.inference_variant_weight
                ),
            ));
        }
        if !(self.final_warm_start_scale.is_finite() && self.final_warm_start_scale > 0.0) {
            return Err(Error::config(
                "final_warm_start_scale",
                format!("must be finite and > 0, got {}", self.final_warm_start_scale),
            ));
        }
        self.ood.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (the final training's pre-training, the mask's when apart) for `kind` and the given
    /// settings, with a budget of 200 epochs.
    fn resolved(kind: BackboneKind, full: Option<usize>, mask: Option<usize>, warm: bool) -> (usize, Option<usize>) {
        let mut cfg =
            Config { pretrain_epochs: full, mask_pretrain_epochs: mask, final_warm_start: warm, ..Default::default() };
        cfg.backbone.kind = kind;
        cfg.train.epochs = 200;
        (cfg.resolved_pretrain_epochs(), cfg.resolved_mask_pretrain_epochs())
    }

    #[test]
    fn pre_training_lengths_resolve_per_backbone() {
        use BackboneKind::{Lightgcn, Mf, Ultragcn};
        assert_eq!(resolved(Lightgcn, None, None, true), (10, None));
        assert_eq!(resolved(Mf, None, None, true), (200, None));
        assert_eq!(resolved(Ultragcn, None, None, true), (200, Some(10)));
        // without the warm start the full pre-training would go unused
        assert_eq!(resolved(Ultragcn, None, None, false), (10, None));
        // a set length wins; one that the mask's is not shorter than leaves one pre-training
        assert_eq!(resolved(Ultragcn, Some(10), None, true), (10, None));
        assert_eq!(resolved(Ultragcn, Some(200), Some(200), true), (200, None));
        assert_eq!(resolved(Ultragcn, None, Some(20), true), (200, Some(20)));
        assert_eq!(resolved(Lightgcn, None, Some(5), true), (10, Some(5)));
        assert_eq!(resolved(Mf, Some(50), Some(10), true), (50, Some(10)));
        // a budget below 10 leaves UltraGCN's one 10-epoch pre-training, as before the split
        let mut short = Config { train: TrainConfig { epochs: 3, ..Default::default() }, ..Default::default() };
        short.backbone.kind = Ultragcn;
        assert_eq!((short.resolved_pretrain_epochs(), short.resolved_mask_pretrain_epochs()), (10, None));
    }
}
