//! A method decoded once into what each stage does: which environment inference, which mask
//! objective and weighting, which fusion, which final objective. Built from a configuration
//! that was checked against the dataset; the stages read only the plan.

use crate::config::{Config, FinalObjective, Method};
use painvrl_convert::{Fusion, MaskUse};
use painvrl_core::{Checked, Dataset, Error, Result, Validate};
use painvrl_env::{HeteroConfig, Strategy, Unit};
use painvrl_graph::BackboneConfig;
use painvrl_mask::{Combination, FinalPenalty, MaskConfig, MaskKind, PenaltyKind, Weighting};

/// A configuration whose every field was checked against one dataset, with its
/// sub-configurations as [`Checked`] values for the stages; the only way to get one is
/// [`Config::check`]. PD's γ is already in the backbone's configuration. Dereferences to the
/// configuration.
#[derive(Clone, Debug)]
pub struct CheckedConfig {
    cfg: Config,
    /// The backbone's configuration.
    pub backbone: Checked<BackboneConfig>,
    /// Environment inference and mask learning (the invariant methods only).
    pub invariance: Option<(Checked<HeteroConfig>, Checked<MaskConfig>)>,
}

impl std::ops::Deref for CheckedConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.cfg
    }
}

impl Config {
    /// Checks every field (and the dataset's ids) once, before anything trains; errors name the
    /// field.
    pub fn check(&self, ds: &Dataset) -> Result<CheckedConfig> {
        let cfg = self.as_run();
        let backbone = cfg.backbone.clone().check()?;
        let invariance = match cfg.method.is_invariant() {
            true => Some((cfg.envs.clone().check()?, cfg.mask.clone().check()?)),
            false => None,
        };
        cfg.validate_own(ds.n_items)?;
        ds.validate()?;
        if let Some((_, mask)) = &invariance {
            // the ablation's planted truth, before any training rather than after pre-training
            painvrl_mask::planted_mask_logits(
                mask.planted_logit,
                ds.truth.invariant_dims.as_deref(),
                ds.features.dim(),
            )?;
        }
        Ok(CheckedConfig { cfg, backbone, invariance })
    }
}

impl Config {
    /// The configuration a run of `self` records in its report: PD's γ moved into the
    /// backbone's configuration, everything else as given.
    pub fn as_run(&self) -> Config {
        let mut cfg = self.clone();
        if cfg.method == Method::Pd {
            cfg.backbone.pd_gamma = cfg.baselines.pd_gamma;
        }
        cfg
    }
}

/// Where the environments of an invariant run come from, unless the caller supplies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentSource {
    /// Uniformly random labels (the `painvrl-random-envs` ablation).
    Random,
    /// The strategy `envs.strategy` names.
    Strategy(Strategy),
}

impl EnvironmentSource {
    /// Whether the source honours `envs.unit = "user"` (one label for all of a user's clicks).
    pub fn can_label_users(self) -> bool {
        matches!(self, EnvironmentSource::Random | EnvironmentSource::Strategy(Strategy::Heterogeneous))
    }
}

/// How the variant half's weight γ is chosen on validation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VariantWeightChoice {
    /// The smallest γ within this relative tolerance of γ = 1 (`variant_weight_tolerance`).
    WithinTolerance(f64),
    /// The γ best on the worse validation environment (`variant_weight_worst_environment`).
    WorstEnvironment,
}

/// The invariant part of a plan: rounds of inference → mask → conversion, then final training.
#[derive(Clone, Debug, PartialEq)]
pub struct InvariancePlan {
    /// Where environments come from.
    pub environments: EnvironmentSource,
    /// Rounds of environment inference and mask learning.
    pub rounds: usize,
    /// Environment inference's options.
    pub envs: Checked<HeteroConfig>,
    /// Mask learning in the first round (kind, penalty and weighting set by the method).
    pub mask: Checked<MaskConfig>,
    /// How the learned mask enters the conversion.
    pub mask_use: MaskUse,
    /// Masks to average: the run's own and, for members after the first, masks learned on
    /// models pre-trained with their own seeds.
    pub mask_ensemble: usize,
    /// Fusion of the invariant and variant projections.
    pub fusion: Fusion,
    /// The variant half's weight γ in the saved and evaluated model (1 with invariant-only
    /// fusion, which has none).
    pub inference_variant_weight: f64,
    /// With `Some`, how γ is chosen on validation (`None`: fixed at
    /// `inference_variant_weight`, and always with invariant-only fusion).
    pub variant_weight_choice: Option<VariantWeightChoice>,
    /// The invariance penalty's combination with the loss in the final training; `None`: the
    /// recommender's loss alone.
    pub final_penalty: Option<Combination>,
    /// Which penalty the final training carries (with `final_penalty`).
    pub final_penalty_kind: FinalPenalty,
    /// Where the final penalty's environments come from; `None`: the last round's.
    pub final_environments: Option<EnvironmentSource>,
    /// Start the final model from the model mask learning leaves, its converted content at this
    /// multiple of that model's content x W (`Converter::start_from`); `None`: from scratch.
    pub warm_start: Option<f64>,
}

impl InvariancePlan {
    /// Mask learning in round `round` (0-based): InvRL's schedule grows the penalty weight and
    /// the regulariser by 5 % per round.
    pub fn mask_of_round(&self, round: usize) -> Result<Checked<MaskConfig>> {
        self.mask.with(|m| {
            for _ in 0..round {
                m.irm_weight *= 1.05;
                m.reg_lambda *= 1.05;
            }
        })
    }
}

/// What a run of one method does, stage by stage.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The checked configuration the stages read their hyperparameters from.
    pub cfg: CheckedConfig,
    /// Epochs of the (ERM) pre-training: the whole budget for the non-invariant methods.
    pub pretrain_epochs: usize,
    /// Epochs of the shorter pre-training that mask learning works on when it is not the
    /// final training's start (`mask_pretrain_epochs`; invariant methods only).
    pub mask_pretrain_epochs: Option<usize>,
    /// Post-hoc popularity adjustment of the pre-trained model (β chosen on validation).
    pub posthoc: bool,
    /// The invariant stages, for the invariant methods.
    pub invariance: Option<InvariancePlan>,
}

impl Plan {
    /// Decodes `cfg.method` (a checked configuration of a backbone method).
    pub fn new(cfg: CheckedConfig) -> Result<Plan> {
        let method = cfg.method;
        let invariance = match &cfg.invariance {
            Some((envs, mask)) => Some(Self::invariance(&cfg, method, envs, mask)?),
            None => None,
        };
        let pretrain_epochs = if invariance.is_some() { cfg.resolved_pretrain_epochs() } else { cfg.train.epochs };
        let mask_pretrain_epochs = invariance.as_ref().and_then(|_| cfg.resolved_mask_pretrain_epochs());
        Ok(Plan { posthoc: method == Method::Posthoc, pretrain_epochs, mask_pretrain_epochs, invariance, cfg })
    }

    fn invariance(
        cfg: &Config,
        method: Method,
        envs: &Checked<HeteroConfig>,
        mask: &Checked<MaskConfig>,
    ) -> Result<InvariancePlan> {
        let mask = mask.with(|mask| match method {
            Method::Invrl => {
                mask.kind = MaskKind::Gate;
                mask.penalty = PenaltyKind::Variance;
                mask.weighting = Weighting::Fixed;
            }
            Method::PainvrlFixedWeights => mask.weighting = Weighting::Fixed,
            _ => {}
        })?;
        let environments = match method {
            Method::PainvrlRandomEnvs => EnvironmentSource::Random,
            // InvRL is its own heterogeneous identification, as its mask is its gate
            Method::Invrl => EnvironmentSource::Strategy(Strategy::Heterogeneous),
            _ => EnvironmentSource::Strategy(cfg.envs.strategy),
        };
        if cfg.envs.unit == Unit::User && !environments.can_label_users() {
            return Err(Error::config(
                "envs.unit",
                "'user' applies to heterogeneous identification (set envs.strategy = \"heterogeneous\"; the \
                 default is \"taste-consistency\") and the random-environment ablation; taste consistency, \
                 EIIL, bands, time periods and given labels label each interaction",
            ));
        }
        let fusion = match method {
            Method::Invrl | Method::PainvrlInvariantOnly => Fusion::InvariantOnly,
            _ => cfg.fusion,
        };
        let mut plan = InvariancePlan {
            environments,
            rounds: cfg.rounds,
            envs: envs.clone(),
            mask,
            mask_use: cfg.conversion_mask,
            mask_ensemble: cfg.mask_ensemble,
            fusion,
            inference_variant_weight: match fusion {
                Fusion::InvariantOnly => 1.0,
                Fusion::Attention | Fusion::Scalar => cfg.inference_variant_weight,
            },
            variant_weight_choice: match fusion {
                Fusion::InvariantOnly => None,
                Fusion::Attention | Fusion::Scalar if cfg.variant_weight_worst_environment => {
                    Some(VariantWeightChoice::WorstEnvironment)
                }
                Fusion::Attention | Fusion::Scalar => {
                    cfg.variant_weight_tolerance.map(VariantWeightChoice::WithinTolerance)
                }
            },
            final_penalty: None,
            final_penalty_kind: cfg.final_penalty,
            final_environments: cfg.final_environments.map(EnvironmentSource::Strategy),
            // invariant-only fusion starts from W itself, (m ⊙ x) W: the scale is the fused
            // methods' (InvRL's start is not a PaInvRL knob)
            warm_start: cfg.final_warm_start.then_some(match fusion {
                Fusion::InvariantOnly => 1.0,
                Fusion::Attention | Fusion::Scalar => cfg.final_warm_start_scale,
            }),
        };
        // the PaInvRL methods keep the invariance penalty in the final training (design),
        // with the schedule's weight after the last round
        plan.final_penalty = match (method, cfg.final_objective) {
            (Method::Invrl, _) | (_, FinalObjective::Erm) => None,
            _ => Some(Combination {
                weighting: if method == Method::PainvrlFixedWeights { Weighting::Fixed } else { Weighting::Pareto },
                normalization: cfg.final_normalization,
                ..plan.mask_of_round(plan.rounds)?.combination()
            }),
        };
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of `method` with the final penalty on (`final_objective = "pareto"`).
    fn plan(method: Method) -> Plan {
        plan_with(Config { method, final_objective: FinalObjective::Pareto, ..Default::default() })
    }

    fn plan_with(cfg: Config) -> Plan {
        let syn = painvrl_data::SyntheticConfig { n_users: 80, n_items: 120, ..Default::default() };
        let ds = painvrl_data::generate(&syn).unwrap().dataset;
        Plan::new(cfg.check(&ds).unwrap()).unwrap()
    }

    #[test]
    fn each_method_decodes_to_its_stages() {
        assert!(plan(Method::Erm).invariance.is_none() && !plan(Method::Erm).posthoc);
        assert!(plan(Method::Posthoc).posthoc);
        let invrl = plan(Method::Invrl).invariance.unwrap();
        assert_eq!((invrl.mask.kind, invrl.mask.penalty), (MaskKind::Gate, PenaltyKind::Variance));
        assert_eq!((invrl.fusion, invrl.final_penalty), (Fusion::InvariantOnly, None));
        let pa = plan(Method::Painvrl).invariance.unwrap();
        assert_eq!(pa.final_penalty.unwrap().weighting, Weighting::Pareto);
        assert_eq!(pa.environments, EnvironmentSource::Strategy(Strategy::TasteConsistency));
        // InvRL keeps its own inference whatever the strategy
        assert_eq!(invrl.environments, EnvironmentSource::Strategy(Strategy::Heterogeneous));
        let fixed = plan(Method::PainvrlFixedWeights).invariance.unwrap();
        assert_eq!(
            (fixed.mask.weighting, fixed.final_penalty.unwrap().weighting),
            (Weighting::Fixed, Weighting::Fixed)
        );
        assert_eq!(plan(Method::PainvrlRandomEnvs).invariance.unwrap().environments, EnvironmentSource::Random);
        assert_eq!(plan(Method::PainvrlInvariantOnly).invariance.unwrap().fusion, Fusion::InvariantOnly);
        assert_eq!(plan(Method::Pd).cfg.backbone.pd_gamma, Config::default().baselines.pd_gamma);
        // `final_objective = "erm"` leaves the penalty out
        let erm =
            plan_with(Config { method: Method::Painvrl, final_objective: FinalObjective::Erm, ..Default::default() });
        assert_eq!(erm.invariance.unwrap().final_penalty, None);
        // the final penalty's kind and environments as configured; by default IRMv1 across the
        // mask's environments
        assert_eq!((pa.final_penalty_kind, pa.final_environments), (FinalPenalty::Irmv1, None));
        let rex = plan_with(Config {
            final_penalty: FinalPenalty::RiskVariance,
            final_environments: Some(Strategy::PopularityBands),
            ..Default::default()
        })
        .invariance
        .unwrap();
        assert_eq!(rex.final_penalty_kind, FinalPenalty::RiskVariance);
        assert_eq!(rex.final_environments, Some(EnvironmentSource::Strategy(Strategy::PopularityBands)));
    }

    #[test]
    fn per_user_labels_are_refused_only_where_the_environments_cannot_honour_them() {
        let syn = painvrl_data::SyntheticConfig { n_users: 80, n_items: 120, ..Default::default() };
        let ds = painvrl_data::generate(&syn).unwrap().dataset;
        let with = |method: Method, strategy: Strategy| {
            let mut cfg = Config { method, ..Default::default() };
            cfg.envs.unit = Unit::User;
            cfg.envs.strategy = strategy;
            Plan::new(cfg.check(&ds).unwrap())
        };
        assert!(with(Method::Painvrl, Strategy::Heterogeneous).is_ok());
        assert!(with(Method::PainvrlRandomEnvs, Strategy::TasteConsistency).is_ok());
        assert!(with(Method::Invrl, Strategy::Eiil).is_ok());
        for strategy in [Strategy::TasteConsistency, Strategy::Eiil, Strategy::PopularityBands] {
            let e = with(Method::Painvrl, strategy).unwrap_err().to_string();
            assert!(e.contains("envs.unit") && e.contains("envs.strategy = \"heterogeneous\""), "{e}");
        }
    }

    #[test]
    fn the_schedule_grows_the_penalty_five_percent_a_round() {
        let pa = plan(Method::PainvrlFixedWeights).invariance.unwrap();
        let w0 = pa.mask.irm_weight;
        assert_eq!(pa.mask_of_round(0).unwrap().irm_weight, w0);
        assert!((pa.mask_of_round(2).unwrap().irm_weight - w0 * 1.05 * 1.05).abs() < 1e-12);
        // one round: the final penalty carries the weight after it
        assert!((pa.final_penalty.unwrap().fixed_weight - w0 * 1.05).abs() < 1e-12);
    }
}
