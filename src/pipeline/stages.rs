//! The stages of a run, each a function with typed inputs and outputs: pre-training → rounds of
//! environment inference and mask learning → final training on the converted representation →
//! evaluation → the saved model and report. [`Context`] holds what every stage shares.

use super::plan::{EnvironmentSource, InvariancePlan, Plan, VariantWeightChoice};
use super::BackboneFactory;
use crate::diagnostics::{
    choose_variant_weight, choose_variant_weight_by_worst_environment, environment_risks, VariantWeightValidation,
    VARIANT_WEIGHT_GRID,
};
use crate::recommender::{ColdStart, TrainedModel};
use crate::report::Report;
use painvrl_convert::{binarize, variant, Converter, Fusion, MaskUse};
use painvrl_core::eval::EmbeddingScorer;
use painvrl_core::signal::StopHandle;
use painvrl_core::{
    Backbone, Dataset, EnvironmentAssignment, EnvironmentInference, Error, Result, StepObjective, UserItems,
};
use painvrl_data::NegativeSampler;
use painvrl_env::{
    ActivityBands, Eiil, GivenEnvironments, HeterogeneousIdentification, PopularityBands, RandomEnvironments, Strategy,
    TasteConsistencySplit, TimePeriods,
};
use painvrl_graph::{fit, validate, Checkpointing, EpochLog, Stage, TrainData, TrainGraph};
use painvrl_mask::{train_mask, InvariancePenalty, Mask, MaskData};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// What every stage of one run shares, built once.
pub(super) struct Context<'a> {
    pub ds: &'a Dataset,
    pub plan: &'a Plan,
    pub device: Device,
    pub graph: TrainGraph,
    pub train_idx: UserItems,
    pub val_idx: UserItems,
    pub sampler: NegativeSampler,
    /// The final training's sampler when `final_negative_popularity` differs from the others'.
    pub final_sampler: Option<NegativeSampler>,
    pub features: Tensor,
    pub ckpt: Option<Checkpointing>,
    pub stop: StopHandle,
    pub make: BackboneFactory<'a>,
}

impl<'a> Context<'a> {
    /// Indexes, sampler, graph and features for `plan` on `ds`.
    pub fn new(
        ds: &'a Dataset,
        plan: &'a Plan,
        device: Device,
        ckpt: Option<Checkpointing>,
        stop: StopHandle,
        make: BackboneFactory<'a>,
    ) -> Result<Self> {
        let train_idx = UserItems::build(ds.n_users, &[&ds.train]);
        let sampler = NegativeSampler::new(train_idx.clone(), ds.n_items)?;
        let final_sampler = match plan.cfg.final_negative_popularity {
            Some(a) if a != plan.cfg.train.negative_popularity => Some(sampler.clone().popularity_weighted(a)?),
            _ => None,
        };
        Ok(Context {
            graph: TrainGraph::new(ds.n_users, ds.n_items, &ds.train),
            val_idx: UserItems::build(ds.n_users, &[plan.cfg.select_on.interactions(ds)?]),
            sampler: sampler.popularity_weighted(plan.cfg.train.negative_popularity)?,
            final_sampler,
            train_idx,
            features: ds.features.to_tensor(device),
            ds,
            plan,
            device,
            ckpt,
            stop,
            make,
        })
    }

    fn train_data(&self) -> TrainData<'_> {
        TrainData {
            train: &self.ds.train,
            sampler: &self.sampler,
            val: &self.val_idx,
            objective: None,
            stop: Some(&self.stop),
        }
    }

    /// A stop between stages ends the run like a stop inside one.
    pub fn check_stop(&self, before: &str) -> Result<()> {
        if self.stop.is_stopped() {
            return Err(Error::Interrupted(format!("stop requested before {before}")));
        }
        Ok(())
    }
}

/// A trained backbone with the variables it owns.
pub(super) struct Trained {
    pub vs: VarStore,
    pub backbone: Box<dyn Backbone>,
    /// Validation metrics at the epoch its training restored.
    pub best_val: BTreeMap<String, f64>,
}

/// Epochs of the pre-training that mask learning works on: the shorter one when
/// `mask_pretrain_epochs` sets it apart from the final training's start.
fn mask_pretrain_epochs(cx: &Context) -> usize {
    cx.plan.mask_pretrain_epochs.unwrap_or(cx.plan.pretrain_epochs)
}

/// ERM on all raw features (the whole budget for the non-invariant methods); with
/// `mask_pretrain_epochs`, the shorter pre-training mask learning works on.
pub(super) fn pretrain(cx: &Context, history: &mut Vec<EpochLog>) -> Result<Trained> {
    let (pre, epochs) =
        pretrain_with_seed(cx, "pretrain", mask_pretrain_epochs(cx), cx.plan.cfg.seed, cx.ckpt.as_ref())?;
    history.extend(epochs);
    Ok(pre)
}

/// With `mask_pretrain_epochs`, the full pre-training (`pretrain_epochs`, the same seed) that
/// the final training starts from, trained after mask learning; its validation metrics go to
/// `report.diagnostics.val_pretrained_for_final`.
pub(super) fn pretrain_for_final(cx: &Context, history: &mut Vec<EpochLog>, report: &mut Report) -> Result<Trained> {
    let (pre, epochs) =
        pretrain_with_seed(cx, "pretrain_for_final", cx.plan.pretrain_epochs, cx.plan.cfg.seed, cx.ckpt.as_ref())?;
    history.extend(epochs);
    report.diagnostics.val_pretrained_for_final = pre.best_val.clone();
    Ok(pre)
}

/// ERM pre-training as the stage `name` (its log and checkpoint names) for `epochs` with its
/// own training seed and checkpoints; returns the model and its epochs.
fn pretrain_with_seed(
    cx: &Context,
    name: &str,
    epochs: usize,
    seed: u64,
    ckpt: Option<&Checkpointing>,
) -> Result<(Trained, Vec<EpochLog>)> {
    let mut vs = VarStore::new(cx.device);
    let backbone = (cx.make)(&(vs.root() / "backbone"), &cx.graph, cx.ds.features.dim())?;
    let raw = || cx.features.shallow_clone();
    let train = painvrl_graph::TrainConfig { epochs, ..cx.plan.cfg.train.clone() };
    let data = cx.train_data();
    let stage = Stage { name, seed, ckpt, ..Default::default() };
    let outcome = fit(&mut vs, backbone.as_ref(), &raw, &data, &train, &stage)?;
    Ok((Trained { vs, backbone, best_val: outcome.best_val.values }, outcome.history))
}

/// The model of a non-invariant method: the pre-trained embeddings, with the post-hoc
/// popularity adjustment when planned (β chosen on validation, recorded in `report.selected`).
pub(super) fn plain_model(cx: &Context, pre: &Trained, report: &mut Report) -> Result<TrainedModel> {
    let (mut users, mut items) = tch::no_grad(|| pre.backbone.embeddings(&cx.features));
    let mut cold_start = ColdStart::of(pre.backbone.as_ref(), items.size()[1] as usize)?;
    if cx.plan.posthoc {
        // the adjustment joins the embeddings as one more column (users 1, items
        // −β·log(1 + popularity)), so the saved model scores it too
        let scorer = EmbeddingScorer { users: users.shallow_clone(), items: items.shallow_clone() };
        let (beta, pop) =
            crate::baselines::choose_posthoc_beta(&scorer, cx.ds, &cx.plan.cfg, &cx.val_idx, &cx.train_idx)?;
        report.selected.insert("posthoc_beta".into(), beta);
        let (user_col, item_col) = crate::recommender::popularity_columns(cx.ds.n_users, &pop, beta, cx.device);
        users = Tensor::cat(&[users, user_col], 1);
        items = Tensor::cat(&[items, item_col], 1);
        // a new item has no training popularity: log(1 + 0) = 0
        if let Some(c) = cold_start.as_mut() {
            c.layout.trailing_zeros += 1;
        }
    }
    Ok(TrainedModel { users, items, mask: None, converter: vec![], fusion: None, variant_weight: 1.0, cold_start })
}

/// The environment inference of an invariant run: the caller's, else the plan's. `given`
/// labels must ship with the dataset.
pub(super) fn environment_inference(
    supplied: Option<Box<dyn EnvironmentInference>>,
    ds: &Dataset,
    inv: &InvariancePlan,
    device: Device,
) -> Result<Box<dyn EnvironmentInference>> {
    match supplied {
        Some(inference) => Ok(inference),
        None => inference_of(inv.environments, "envs.strategy", ds, inv, device),
    }
}

/// The environments of the final penalty when they are not the mask's
/// (`final_environments`); built before any training, like the mask's.
pub(super) fn final_environment_inference(
    ds: &Dataset,
    inv: &InvariancePlan,
    device: Device,
) -> Result<Option<Box<dyn EnvironmentInference>>> {
    inv.final_environments.map(|source| inference_of(source, "final_environments", ds, inv, device)).transpose()
}

/// The inference `source` names; errors about the dataset name `field`.
fn inference_of(
    source: EnvironmentSource,
    field: &str,
    ds: &Dataset,
    inv: &InvariancePlan,
    device: Device,
) -> Result<Box<dyn EnvironmentInference>> {
    let envs = &inv.envs;
    let n_envs = envs.n_envs;
    Ok(match source {
        EnvironmentSource::Random => Box::new(RandomEnvironments { n_envs, unit: envs.unit }),
        EnvironmentSource::Strategy(Strategy::Heterogeneous) => {
            Box::new(HeterogeneousIdentification::new(envs.clone(), device))
        }
        EnvironmentSource::Strategy(Strategy::Eiil) => Box::new(Eiil::new(envs.clone(), device)),
        EnvironmentSource::Strategy(Strategy::PopularityBands) => Box::new(PopularityBands { n_envs }),
        EnvironmentSource::Strategy(Strategy::ActivityBands) => Box::new(ActivityBands { n_envs }),
        EnvironmentSource::Strategy(Strategy::TasteConsistency) => Box::new(TasteConsistencySplit),
        EnvironmentSource::Strategy(Strategy::TimePeriods) => match ds.train_times {
            Some(_) => Box::new(TimePeriods { n_envs }),
            None => {
                return Err(Error::config(
                    field,
                    "'time-periods' needs timestamps: a rating log (interactions.tsv) or train_time.tsv beside \
                     train.tsv (docs/data-format.md)",
                ))
            }
        },
        EnvironmentSource::Strategy(Strategy::Given) => Box::new(GivenEnvironments {
            labels: ds.truth.train_envs.clone().ok_or_else(|| {
                Error::config(field, "'given' needs the dataset's train_env.tsv (docs/data-format.md)")
            })?,
        }),
    })
}

/// The selection split's clicks grouped by environment when γ is chosen by the worse one
/// (empty otherwise), labelled by `inference`'s rule for clicks it did not train on. Errors,
/// before any training, when the inference has no such rule or an environment gets no click.
pub(super) fn validation_environments(
    ds: &Dataset,
    plan: &Plan,
    inference: Option<&dyn EnvironmentInference>,
) -> Result<Vec<UserItems>> {
    let by_worst = plan.invariance.as_ref().and_then(|inv| inv.variant_weight_choice)
        == Some(VariantWeightChoice::WorstEnvironment);
    let Some(inference) = inference.filter(|_| by_worst) else { return Ok(vec![]) };
    let clicks = plan.cfg.select_on.interactions(ds)?;
    let labels = inference.label_heldout(ds, clicks).ok_or_else(|| {
        Error::config(
            "variant_weight_worst_environment",
            format!(
                "environment inference '{}' has no rule for validation clicks; envs.strategy = \"taste-consistency\" has one",
                inference.name()
            ),
        )
    })??;
    let n_envs = labels.iter().max().map_or(0, |&l| l as usize + 1).max(2);
    (0..n_envs)
        .map(|e| {
            let positions: Vec<usize> = (0..labels.len()).filter(|&k| labels[k] as usize == e).collect();
            if positions.is_empty() {
                return Err(Error::config(
                    "variant_weight_worst_environment",
                    format!("no validation click falls in environment {e} of {n_envs}"),
                ));
            }
            Ok(UserItems::build(ds.n_users, &[&clicks.select(&positions)]))
        })
        .collect()
}

/// What the rounds of inference and mask learning leave (the learned weights themselves are in
/// `report.mask`).
pub(super) struct Invariance {
    /// The mask the conversion uses (`mask_use` applied).
    pub conversion: Tensor,
    /// The environments of the final penalty: the last round's (the pipeline swaps in
    /// `final_environments`' when set).
    pub envs: EnvironmentAssignment,
}

/// One member of the mask ensemble: its learned weights and the environments of its last round.
struct MaskMember {
    weights: Tensor,
    envs: EnvironmentAssignment,
}

/// Rounds of environment inference → mask learning on `pre` with one seed; the variant
/// representation of one round feeds the next round's inference. Timings accumulate in
/// `report`; the mask's log, its Pareto weights and the environments' sizes are recorded for
/// the first member (`record`).
fn learn_mask(
    cx: &Context,
    inv: &InvariancePlan,
    pre: &mut Trained,
    inference: &mut dyn EnvironmentInference,
    seed: u64,
    record: bool,
    report: &mut Report,
) -> Result<MaskMember> {
    pre.vs.freeze();
    if let Some(proj) = pre.backbone.content_projection() {
        let _ = proj.set_requires_grad(true);
    }
    let mask = Mask::new(cx.device, cx.ds.features.dim(), inv.mask.kind, inv.mask.gate_sigma);
    let mut variant_repr: Option<Tensor> = None;
    let mut last_envs = None;
    for round in 0..inv.rounds {
        cx.check_stop("environment inference")?;
        let t = Instant::now();
        let envs = inference.infer(cx.ds, variant_repr.as_ref(), seed.wrapping_add(round as u64))?;
        *report.timings.entry("environments".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let data = MaskData {
            features: &cx.features,
            modalities: &cx.ds.features,
            train: &cx.ds.train,
            envs: &envs,
            sampler: &cx.sampler,
            stop: Some(&cx.stop),
            planted_invariant: cx.ds.truth.invariant_dims.as_deref(),
        };
        let log = train_mask(
            pre.backbone.as_ref(),
            &mask,
            &data,
            &inv.mask_of_round(round)?,
            seed.wrapping_add(1000 + round as u64),
        )?;
        *report.timings.entry("mask".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
        if record {
            report.pareto.extend(log.iter().map(|l| l.alpha));
            report.mask_log.extend(log);
            report.environments = envs.sizes.clone();
        }
        last_envs = Some(envs);
        variant_repr = Some(tch::no_grad(|| variant(&cx.features, &mask.values(false))));
    }
    let envs = last_envs.ok_or_else(|| Error::config("rounds", "must be ≥ 1"))?;
    Ok(MaskMember { weights: tch::no_grad(|| mask.values(false)).detach(), envs })
}

/// Rounds of environment inference → mask learning on the pre-trained model; with a mask
/// ensemble (`mask_ensemble` > 1) also on models pre-trained with other seeds, and the mask is
/// the members' mean. The pre-trained model is frozen (tch's `VarStore::freeze`: no gradients
/// flow into its embeddings) except its content projection, which trains with the mask (and
/// then alone for `mask.projection_only_steps`) under the planned `mask.train_projection` and
/// carries InvRL's variance penalty. The final training's warm start copies the run's own
/// pre-trained model as its mask learning left it (unless `mask_pretrain_epochs` sets the full
/// pre-training apart); the other members' models are dropped.
pub(super) fn learn_invariance(
    cx: &Context,
    inv: &InvariancePlan,
    pre: &mut Trained,
    inference: &mut dyn EnvironmentInference,
    report: &mut Report,
) -> Result<Invariance> {
    let seed = cx.plan.cfg.seed;
    let mut members = vec![learn_mask(cx, inv, pre, inference, seed, true, report)?];
    for member in 1..inv.mask_ensemble {
        let member_seed = seed.wrapping_add(member as u64 * 0x9e37_79b9);
        // the member's initialisation draws from libtorch's global generator
        tch::manual_seed(member_seed as i64);
        let t = Instant::now();
        let (mut member_pre, _) = pretrain_with_seed(cx, "pretrain", mask_pretrain_epochs(cx), member_seed, None)?;
        *report.timings.entry("mask_ensemble_pretrain".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
        members.push(learn_mask(cx, inv, &mut member_pre, inference, member_seed, false, report)?);
    }
    if inv.mask_ensemble > 1 {
        // the final model's initialisation then draws the same for any ensemble of this seed
        tch::manual_seed(seed.wrapping_add(0x5eed) as i64);
    }
    let weights: Vec<Tensor> = members.iter().map(|m| m.weights.shallow_clone()).collect();
    let learned = Tensor::stack(&weights, 0).mean_dim(0, false, tch::Kind::Float);
    let mut member_aucs = vec![];
    if members.len() > 1 {
        for member in &members {
            let weights = Vec::<f32>::try_from(member.weights.to_device(Device::Cpu))?;
            member_aucs.extend(crate::diagnostics::mask_auc_vs_planted(cx.ds, &weights));
        }
    }
    // the environments of the first member, whose seeds are those of a single mask
    let envs = members.swap_remove(0).envs;
    report.mask = Vec::<f32>::try_from(learned.to_device(Device::Cpu))?;
    report.diagnostics = crate::diagnostics::invariant_run(
        cx.ds,
        pre.backbone.as_ref(),
        &cx.features,
        &learned,
        &envs,
        &cx.sampler,
        seed.wrapping_add(3),
    )?;
    report.diagnostics.mask_auc_by_member = member_aucs;
    report.diagnostics.val_pretrained = pre.best_val.clone();
    let raw = || cx.features.shallow_clone();
    report.diagnostics.val_after_mask_learning =
        validate(pre.backbone.as_ref(), &raw, &cx.train_data(), &cx.plan.cfg.train)?.values;
    let conversion = match inv.mask_use {
        MaskUse::Soft => learned.shallow_clone(),
        MaskUse::Binary => binarize(&learned),
    };
    Ok(Invariance { conversion, envs })
}

/// Final training of a fresh backbone on the converted representation (invariant and variant
/// projections fused), with the planned invariance penalty; returns the model to save and
/// records where it started in `report.diagnostics`.
pub(super) fn final_training(
    cx: &Context,
    inv: &InvariancePlan,
    pre: &Trained,
    invariance: &Invariance,
    val_environments: &[UserItems],
    history: &mut Vec<EpochLog>,
    report: &mut Report,
) -> Result<TrainedModel> {
    let cfg = &cx.plan.cfg;
    let mut vs = VarStore::new(cx.device);
    let converter = Converter::new(&(vs.root() / "convert"), cx.ds.features.dim(), cfg.convert_dim, inv.fusion)?;
    let backbone = (cx.make)(&(vs.root() / "backbone"), &cx.graph, cfg.convert_dim)?;
    if let Some(scale) = inv.warm_start {
        warm_start_final(pre, &vs, backbone.as_ref(), &converter, scale)?;
    }
    let m = &invariance.conversion;
    let content = || converter.encode(&cx.features, m);
    let penalty = inv.final_penalty.map(|combination| InvariancePenalty {
        labels: &invariance.envs.labels,
        n_envs: invariance.envs.sizes.len(),
        kind: inv.final_penalty_kind,
        risk: cfg.final_risk,
        combination,
    });
    let sampler = cx.final_sampler.as_ref().unwrap_or(&cx.sampler);
    let data = TrainData { objective: penalty.as_ref().map(|p| p as &dyn StepObjective), sampler, ..cx.train_data() };
    // the training risk on each of the penalty's environments, on the converted content
    let penalty_risks = |converted: &Tensor| match &penalty {
        Some(_) => environment_risks(
            backbone.as_ref(),
            converted,
            &cx.ds.train,
            &invariance.envs,
            sampler,
            4096,
            cfg.seed ^ 0x5eed,
        ),
        None => vec![],
    };
    report.diagnostics.final_env_risk_start = penalty_risks(&tch::no_grad(content));
    // the start competes with the epochs: a warm start that no epoch improves on validation
    // is kept as it is
    let stage = Stage {
        name: "final",
        seed: cfg.seed.wrapping_add(7),
        ckpt: cx.ckpt.as_ref(),
        hook: None,
        candidate_start: true,
    };
    let outcome = fit(&mut vs, backbone.as_ref(), &content, &data, &cfg.train, &stage)?;
    report.diagnostics.val_final_start = outcome.start_val.map(|m| m.values).unwrap_or_default();
    history.extend(outcome.history);
    let converted = tch::no_grad(content);
    report.diagnostics.final_env_risk_end = penalty_risks(&converted);
    if inv.fusion != Fusion::InvariantOnly {
        report.diagnostics.val_by_variant_weight = VARIANT_WEIGHT_GRID
            .iter()
            .map(|&gamma| {
                let served = || converter.encode_with_variant_weight(&cx.features, m, gamma);
                let val = validate(backbone.as_ref(), &served, &data, &cfg.train)?.values;
                let val_by_environment = val_environments
                    .iter()
                    .map(|share| {
                        Ok(validate(backbone.as_ref(), &served, &TrainData { val: share, ..data }, &cfg.train)?.values)
                    })
                    .collect::<Result<_>>()?;
                Ok(VariantWeightValidation { variant_weight: gamma, val, val_by_environment })
            })
            .collect::<Result<_>>()?;
    }
    // the model as served: the variant half at its inference weight, fixed or chosen on
    // validation
    let rows = &report.diagnostics.val_by_variant_weight;
    let chosen = match inv.variant_weight_choice {
        Some(VariantWeightChoice::WithinTolerance(tolerance)) => {
            Some(choose_variant_weight(rows, &cfg.train.select_metric, tolerance)?)
        }
        Some(VariantWeightChoice::WorstEnvironment) => {
            Some(choose_variant_weight_by_worst_environment(rows, &cfg.train.select_metric)?)
        }
        None => None,
    };
    report.diagnostics.served_variant_weight = chosen;
    let variant_weight = chosen.unwrap_or(inv.inference_variant_weight);
    let served = tch::no_grad(|| converter.encode_with_variant_weight(&cx.features, m, variant_weight));
    let (users, items) = tch::no_grad(|| backbone.embeddings(&served));
    let cold_start = ColdStart::of(backbone.as_ref(), items.size()[1] as usize)?;
    Ok(TrainedModel {
        users,
        items,
        mask: Some(m.shallow_clone()),
        converter: converter.variables(),
        fusion: Some(inv.fusion),
        variant_weight,
        cold_start,
    })
}

/// Starts the final model from `pre` as it is now — after mask learning, which trains its
/// content projection W alongside the mask and then alone under `mask.train_projection`, or
/// with `mask_pretrain_epochs` the full pre-training, which mask learning did not touch: every
/// backbone variable whose name and shape match is copied (both backbones come from the same
/// factory), the final backbone's own content projection is the identity and the converter
/// starts from W ([`Converter::start_from`]), when the widths allow. The converted content then starts as
/// `scale` × x W for any mask (attention and scalar fusion): with `scale = 1` the final model
/// starts as `pre` is now (`tests/pipeline.rs` checks this on validation through the report).
fn warm_start_final(
    pre: &Trained,
    fin_vs: &VarStore,
    fin: &dyn Backbone,
    converter: &Converter,
    scale: f64,
) -> Result<()> {
    let src = pre.vs.variables();
    let pre_proj = pre.backbone.content_projection();
    let fin_proj = fin.content_projection();
    let is = |t: &Tensor, p: &Option<Tensor>| p.as_ref().is_some_and(|p| p.data_ptr() == t.data_ptr());
    tch::no_grad(|| {
        for (name, dst) in fin_vs.variables() {
            if is(&dst, &fin_proj) {
                if dst.dim() == 2 && dst.size()[0] == dst.size()[1] {
                    dst.shallow_clone().copy_(&Tensor::eye(dst.size()[0], (dst.kind(), dst.device())));
                }
                continue;
            }
            if let Some(t) = src.get(&name).filter(|t| !is(t, &pre_proj) && t.size() == dst.size()) {
                dst.shallow_clone().copy_(t);
            }
        }
    });
    match pre_proj {
        Some(w) if w.size() == converter.projection_shape() => converter.start_from(&w, scale),
        _ => Ok(()),
    }
}

/// Evaluates a model's embeddings on every split into the report.
pub(super) fn evaluate(cx: &Context, model: &TrainedModel, report: &mut Report) -> Result<()> {
    let scorer = EmbeddingScorer { users: model.users.shallow_clone(), items: model.items.shallow_clone() };
    report.record_metrics(&scorer, cx.ds, &cx.plan.cfg.train.eval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use painvrl_convert::Fusion;
    use painvrl_core::{Batch, ColdStartLayout};
    use tch::{nn, Kind};

    /// A backbone that only owns variables, named unlike the built-in ones.
    struct Towers {
        proj: Tensor,
    }

    impl Backbone for Towers {
        fn loss(&self, _: &Batch, content: &Tensor) -> Tensor {
            content.matmul(&self.proj).sum(Kind::Float)
        }
        fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
            (content.shallow_clone(), content.matmul(&self.proj))
        }
        fn content_projection(&self) -> Option<Tensor> {
            Some(self.proj.shallow_clone())
        }
        fn cold_start(&self) -> Option<ColdStartLayout> {
            Some(ColdStartLayout { id_dim: 0, scale: 1.0, trailing_zeros: 0 })
        }
    }

    fn towers(p: &nn::Path, d_in: i64, d_out: i64, init: nn::Init) -> (Tensor, Box<dyn Backbone>) {
        let who = p.var("who", &[3, 4], init);
        let proj = p.var("w_content", &[d_in, d_out], init);
        (who, Box::new(Towers { proj }))
    }

    /// A pre-trained model with random variables: 5 content features projected to 2.
    fn pre_trained() -> (Tensor, Trained) {
        let vs = VarStore::new(Device::Cpu);
        let (who, backbone) = towers(&(vs.root() / "backbone"), 5, 2, nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        (who, Trained { vs, backbone, best_val: BTreeMap::new() })
    }

    #[test]
    fn warm_start_copies_matching_variables_and_sets_the_identity() {
        let (who, pre) = pre_trained();
        let fin_vs = VarStore::new(Device::Cpu);
        let (f_who, fin) = towers(&(fin_vs.root() / "backbone"), 2, 2, nn::Init::Const(0.0));
        let converter = Converter::new(&(fin_vs.root() / "convert"), 5, 2, Fusion::Attention).unwrap();
        warm_start_final(&pre, &fin_vs, fin.as_ref(), &converter, 1.0).unwrap();
        let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-6;
        assert!(close(&f_who, &who));
        assert!(close(&fin.content_projection().unwrap(), &Tensor::eye(2, (Kind::Float, Device::Cpu))));
        // with scale 1 the final model's content is the pre-trained model's, whatever the mask
        let x = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let m = Tensor::from_slice(&[0.9f32, 0.1, 0.5, 0.0, 1.0]);
        let pre_content = x.matmul(&pre.backbone.content_projection().unwrap());
        assert!(close(&converter.encode(&x, &m), &pre_content));
    }

    #[test]
    fn warm_start_leaves_a_converter_of_another_width_alone() {
        let (_, pre) = pre_trained();
        let fin_vs = VarStore::new(Device::Cpu);
        let (_, fin) = towers(&(fin_vs.root() / "backbone"), 3, 3, nn::Init::Const(0.0));
        let converter = Converter::new(&(fin_vs.root() / "convert"), 5, 3, Fusion::Attention).unwrap();
        let before: Vec<Tensor> = converter.variables().into_iter().map(|(_, t)| t.copy()).collect();
        warm_start_final(&pre, &fin_vs, fin.as_ref(), &converter, 1.0).unwrap();
        for ((_, after), before) in converter.variables().into_iter().zip(before) {
            assert_eq!(after.size(), before.size());
            assert_eq!((after - before).abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
    }
}
