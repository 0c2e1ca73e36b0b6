//! The whole method: ERM pre-training → rounds of (i) environment inference → (ii) mask
//! learning → (iii) conversion → final training with early stopping → evaluation on val, test
//! and test_ood. Composed only through the `painvrl-core` traits.

use crate::config::{Config, FinalObjective, Method};
use crate::recommender::{save_model, TrainedModel};
pub use crate::report::{evaluate_splits, Report};
use painvrl_convert::{binarize, variant, Converter, Fusion, MaskUse};
use painvrl_core::eval::EmbeddingScorer;
use painvrl_core::io::{write_atomic, write_json_atomic};
use painvrl_core::{Backbone, Dataset, EnvironmentInference, Error, Result, StepObjective, UserItems};
use painvrl_data::NegativeSampler;
use painvrl_env::{
    ActivityBands, Eiil, GivenEnvironments, HeterogeneousIdentification, PopularityBands, RandomEnvironments, Strategy,
};
use painvrl_graph::{build_backbone, fit, Checkpointing, EpochLog, TrainData, TrainGraph};
use painvrl_mask::{train_mask, Combination, InvariancePenalty, Mask, MaskKind, PenaltyKind, Weighting};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;
use tch::nn::{self, VarStore};
use tch::Tensor;

/// Trains and evaluates `cfg.method` on `ds`. With `out`, checkpoints, the epoch log and
/// `report.json` are written there (atomically); `resume` continues an interrupted run.
pub fn run(ds: &Dataset, cfg: &Config, out: Option<&Path>, resume: bool) -> Result<Report> {
    run_with(ds, cfg, out, resume, Components::default())
}

/// Builds a backbone under a `VarStore` path for a training graph and a content width. A
/// backbone used with the invariant methods must name its content projection `proj`.
pub type BackboneFactory<'a> = &'a dyn Fn(&nn::Path, &TrainGraph, usize) -> Result<Box<dyn Backbone>>;

/// Caller-supplied parts of the pipeline; `None` takes what the configuration implies.
#[derive(Default)]
pub struct Components<'a> {
    /// Environment inference (e.g. given labels).
    pub inference: Option<Box<dyn EnvironmentInference>>,
    /// Backbone factory (your own recommender).
    pub backbone: Option<BackboneFactory<'a>>,
}

/// The environment inference of an invariant run: the caller's, else the random ablation's or
/// the one `envs.strategy` names. `given` labels must ship with the dataset.
fn environment_inference(
    supplied: Option<Box<dyn EnvironmentInference>>,
    ds: &Dataset,
    cfg: &Config,
    device: tch::Device,
) -> Result<Box<dyn EnvironmentInference>> {
    if let Some(inference) = supplied {
        return Ok(inference);
    }
    let n_envs = cfg.envs.n_envs;
    Ok(match (cfg.method, cfg.envs.strategy) {
        (Method::PainvrlRandomEnvs, _) => Box::new(RandomEnvironments { n_envs }),
        (_, Strategy::Heterogeneous) => Box::new(HeterogeneousIdentification::new(cfg.envs.clone(), device)),
        (_, Strategy::Eiil) => Box::new(Eiil::new(cfg.envs.clone(), device)),
        (_, Strategy::PopularityBands) => Box::new(PopularityBands { n_envs }),
        (_, Strategy::ActivityBands) => Box::new(ActivityBands { n_envs }),
        (_, Strategy::Given) => Box::new(GivenEnvironments {
            labels: ds.truth.train_envs.clone().ok_or_else(|| {
                Error::config("envs.strategy", "'given' needs the dataset's train_env.tsv (docs/data-format.md)")
            })?,
        }),
    })
}

/// [`run`] with caller-supplied components: any [`EnvironmentInference`] and any [`Backbone`].
pub fn run_with(ds: &Dataset, cfg: &Config, out: Option<&Path>, resume: bool, parts: Components) -> Result<Report> {
    if cfg.method.is_item_item() {
        return crate::baselines::run_item_item(ds, cfg, out);
    }
    let pd_cfg;
    let cfg = if cfg.method == Method::Pd {
        let mut c = cfg.clone();
        c.backbone.pd_gamma = cfg.baselines.pd_gamma;
        pd_cfg = c;
        &pd_cfg
    } else {
        cfg
    };
    let Components { inference, backbone } = parts;
    cfg.validate(ds.n_items)?;
    ds.validate()?;
    let device = cfg.device.resolve()?;
    // before any training, so that a strategy the dataset cannot serve fails at once
    let inference = cfg.method.is_invariant().then(|| environment_inference(inference, ds, cfg, device)).transpose()?;
    let default_factory = |p: &nn::Path, g: &TrainGraph, c: usize| build_backbone(p, g, c, &cfg.backbone);
    let make: BackboneFactory = backbone.unwrap_or(&default_factory);
    let t_all = Instant::now();
    let memory = crate::memory::check(ds, cfg, device)?;
    painvrl_core::init_runtime(cfg.threads, cfg.seed);
    let mut timings = BTreeMap::new();
    let graph = TrainGraph::new(ds.n_users, ds.n_items, &ds.train);
    let train_idx = UserItems::build(ds.n_users, &[&ds.train]);
    let val_idx = UserItems::build(ds.n_users, &[cfg.select_on.interactions(ds)?]);
    let sampler = NegativeSampler::new(train_idx.clone(), ds.n_items)?;
    let data = TrainData { train: &ds.train, sampler: &sampler, val: &val_idx, objective: None };
    let features = ds.features.to_tensor(device);
    let ckpt = out.map(|d| Checkpointing { dir: d.to_path_buf(), resume });
    let mut history: Vec<EpochLog> = Vec::new();

    // ERM pre-training on all features
    let t = Instant::now();
    let mut vs0 = VarStore::new(device);
    let pre = make(&(vs0.root() / "backbone"), &graph, ds.features.dim())?;
    let raw = || features.shallow_clone();
    let mut pre_cfg = cfg.train.clone();
    if cfg.method.is_invariant() {
        pre_cfg.epochs = cfg.pretrain_epochs;
    }
    let outcome =
        fit("pretrain", &mut vs0, pre.as_ref(), &raw, &data, &pre_cfg, cfg.seed, &HashSet::new(), ckpt.as_ref(), None)?;
    history.extend(outcome.history);
    timings.insert("pretrain".into(), t.elapsed().as_secs_f64());

    let mut report = Report::new(ds, cfg, pre.name(), memory);

    // what the saved model needs: final embeddings, content projection, mask and converter
    let model: TrainedModel;
    if !cfg.method.is_invariant() {
        let (mut u, mut i) = tch::no_grad(|| pre.embeddings(&features));
        let mut cold_start = pre.cold_start();
        if cfg.method == Method::Posthoc {
            // β chosen on validation; the adjustment joins the embeddings as one more column
            // (users 1, items −β·log(1 + popularity)), so the saved model scores it too
            let scorer = EmbeddingScorer { users: u.shallow_clone(), items: i.shallow_clone() };
            let (beta, pop) = crate::baselines::choose_posthoc_beta(&scorer, ds, cfg, &val_idx, &train_idx)?;
            report.selected.insert("posthoc_beta".into(), beta);
            let adj: Vec<f32> = pop.iter().map(|&p| -(beta as f32) * (1.0 + p as f32).ln()).collect();
            let adj = Tensor::from_slice(&adj).to_device(device).unsqueeze(1);
            u = Tensor::cat(&[u, Tensor::ones([ds.n_users as i64, 1], (tch::Kind::Float, device))], 1);
            i = Tensor::cat(&[i, adj], 1);
            // a new item has no training popularity: log(1 + 0) = 0
            cold_start.trailing_zeros += 1;
        }
        evaluate_all(ds, &u, &i, cfg, &mut report)?;
        let proj = vs0.variables()["backbone.proj"].detach();
        model = TrainedModel { users: u, items: i, proj, mask: None, converter: vec![], fusion: None, cold_start };
    } else {
        let mut mcfg = cfg.mask.clone();
        let mut inference = inference.expect("built before pre-training for the invariant methods");
        match cfg.method {
            Method::Invrl => {
                mcfg.kind = MaskKind::Gate;
                mcfg.penalty = PenaltyKind::Variance;
                mcfg.weighting = Weighting::Fixed;
            }
            Method::PainvrlFixedWeights => mcfg.weighting = Weighting::Fixed,
            _ => {}
        }
        let mask = Mask::new(&(vs0.root() / "mask"), ds.features.dim(), mcfg.kind, mcfg.gate_sigma);
        let mut variant_repr: Option<Tensor> = None;
        let mut last_envs = None;
        for round in 0..cfg.rounds {
            let t = Instant::now();
            let envs = inference.infer(ds, variant_repr.as_ref(), cfg.seed.wrapping_add(round as u64))?;
            *timings.entry("environments".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let log = train_mask(
                &vs0,
                pre.as_ref(),
                &mask,
                &features,
                &ds.features,
                &ds.train,
                &envs,
                &sampler,
                &mcfg,
                cfg.seed.wrapping_add(1000 + round as u64),
            )?;
            *timings.entry("mask".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
            report.pareto.extend(log.iter().map(|l| l.alpha));
            report.mask_log.extend(log);
            report.environments = envs.sizes.clone();
            last_envs = Some(envs);
            variant_repr = Some(tch::no_grad(|| variant(&features, &mask.values(false))));
            // InvRL's schedule: both weights grow by 5 % per round
            mcfg.irm_weight *= 1.05;
            mcfg.reg_lambda *= 1.05;
        }
        let learned = tch::no_grad(|| mask.values(false)).detach();
        report.mask = Vec::<f32>::try_from(learned.to_device(tch::Device::Cpu))?;
        if let Some(envs) = &last_envs {
            report.diagnostics = crate::diagnostics::invariant_run(
                ds,
                pre.as_ref(),
                &features,
                &learned,
                &report.mask,
                &envs.labels,
                envs.sizes.len(),
                &sampler,
                cfg.seed.wrapping_add(3),
            )?;
        }
        // the mask the conversion (and the saved model) uses
        let m = match cfg.conversion_mask {
            MaskUse::Soft => learned,
            MaskUse::Binary => binarize(&learned),
        };

        // final training on the converted representation
        let t = Instant::now();
        let mut vs1 = VarStore::new(device);
        let fusion = match cfg.method {
            Method::Invrl | Method::PainvrlInvariantOnly => Fusion::InvariantOnly,
            _ => cfg.fusion,
        };
        let converter = Converter::new(&(vs1.root() / "convert"), ds.features.dim(), cfg.convert_dim, fusion)?;
        let fin = make(&(vs1.root() / "backbone"), &graph, cfg.convert_dim)?;
        if cfg.final_warm_start {
            warm_start_final(&vs0, &vs1);
        }
        let content = || converter.encode(&features, &m);
        // the PaInvRL methods keep the invariance penalty in the final training (design)
        let weighting = match cfg.method {
            Method::PainvrlFixedWeights => Weighting::Fixed,
            _ => Weighting::Pareto,
        };
        let combination = Combination { weighting, normalization: cfg.final_normalization, ..mcfg.combination() };
        let penalty = match (cfg.method, cfg.final_objective) {
            (Method::Invrl, _) | (_, FinalObjective::Erm) => None,
            _ => last_envs.as_ref().map(|envs| InvariancePenalty {
                labels: &envs.labels,
                n_envs: envs.sizes.len(),
                combination,
            }),
        };
        let final_data = TrainData { objective: penalty.as_ref().map(|p| p as &dyn StepObjective), ..data };
        let outcome = fit(
            "final",
            &mut vs1,
            fin.as_ref(),
            &content,
            &final_data,
            &cfg.train,
            cfg.seed.wrapping_add(7),
            &HashSet::new(),
            ckpt.as_ref(),
            None,
        )?;
        history.extend(outcome.history);
        timings.insert("final".into(), t.elapsed().as_secs_f64());
        let converted = tch::no_grad(content);
        let (u, i) = tch::no_grad(|| fin.embeddings(&converted));
        evaluate_all(ds, &u, &i, cfg, &mut report)?;
        let vars = vs1.variables();
        let conv: Vec<(String, Tensor)> =
            vars.iter().filter_map(|(n, t)| n.strip_prefix("convert.").map(|k| (k.to_string(), t.detach()))).collect();
        model = TrainedModel {
            users: u,
            items: i,
            proj: vars["backbone.proj"].detach(),
            mask: Some(m),
            converter: conv,
            fusion: Some(fusion),
            cold_start: fin.cold_start(),
        };
    }
    timings.insert("total".into(), t_all.elapsed().as_secs_f64());
    report.timings = timings;
    if let Some(dir) = out {
        let mut log = Vec::new();
        for h in &history {
            log.extend(serde_json::to_vec(h).map_err(|e| Error::io(dir, std::io::Error::other(e)))?);
            log.push(b'\n');
        }
        write_atomic(&dir.join("epochs.jsonl"), &log)?;
        save_model(dir, &report.method, &report.backbone, ds, &model)?;
        crate::plots::write_run_plots(dir, &report, &history)?;
        write_json_atomic(&dir.join("report.json"), &report)?;
    }
    Ok(report)
}

/// Starts the final model where pre-training ended: every backbone variable whose name and shape
/// match is copied; the converter's projections start as the pre-trained content projection and
/// the final backbone's own projection as the identity, when the widths allow. With β = ½ and
/// W_inv = W_var the converted content is then ½ (x W) — the pre-trained model's content, halved.
fn warm_start_final(pre: &VarStore, fin: &VarStore) {
    let src = pre.variables();
    tch::no_grad(|| {
        for (name, dst) in fin.variables() {
            let from = match name.as_str() {
                "convert.w_inv" | "convert.w_var" => src.get("backbone.proj"),
                "backbone.proj" => None,
                n if n.starts_with("backbone.") => src.get(n),
                _ => None,
            };
            match from {
                Some(t) if t.size() == dst.size() => {
                    dst.shallow_clone().copy_(t);
                }
                _ if name == "backbone.proj" && dst.dim() == 2 && dst.size()[0] == dst.size()[1] => {
                    dst.shallow_clone().copy_(&Tensor::eye(dst.size()[0], (dst.kind(), dst.device())));
                }
                _ => {}
            }
        }
    });
}

fn evaluate_all(ds: &Dataset, users: &Tensor, items: &Tensor, cfg: &Config, report: &mut Report) -> Result<()> {
    let scorer = EmbeddingScorer { users: users.shallow_clone(), items: items.shallow_clone() };
    report.record_metrics(&scorer, ds, &cfg.train.eval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn warm_start_copies_matching_variables_and_sets_the_identity() {
        let pre = VarStore::new(Device::Cpu);
        let user = (pre.root() / "backbone").var("user", &[3, 4], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let proj = (pre.root() / "backbone").var("proj", &[5, 2], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let _other = (pre.root() / "backbone").var("item", &[7, 2], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
        let fin = VarStore::new(Device::Cpu);
        let f_user = (fin.root() / "backbone").var("user", &[3, 4], nn::Init::Const(0.0));
        let f_item = (fin.root() / "backbone").var("item", &[6, 2], nn::Init::Const(0.0)); // shape differs: kept
        let f_proj = (fin.root() / "backbone").var("proj", &[2, 2], nn::Init::Const(0.0));
        let w_inv = (fin.root() / "convert").var("w_inv", &[5, 2], nn::Init::Const(0.0));
        warm_start_final(&pre, &fin);
        let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-7;
        assert!(close(&f_user, &user));
        assert!(close(&w_inv, &proj));
        assert!(close(&f_proj, &Tensor::eye(2, (Kind::Float, Device::Cpu))));
        assert_eq!(f_item.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
