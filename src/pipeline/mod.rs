//! The whole method as a plan of stages: a method is decoded once into a [`Plan`]; a run
//! context is built once; then pre-training → rounds of (i) environment inference → (ii) mask
//! learning → (iii) conversion → (with `mask_pretrain_epochs`, the full pre-training the final
//! model starts from) → final training with early stopping → evaluation on val, test
//! and test_ood → the saved model and `report.json`. Composed only through the `painvrl-core`
//! traits; [`Run`] takes your own [`EnvironmentInference`] or [`Backbone`].
//!
//! ```no_run
//! # use painvrl::{config::Config, pipeline::Run, core::signal::StopHandle};
//! # let (ds, _) = painvrl::data::load_dir(std::path::Path::new("data/tiktok"), &Default::default())?;
//! let stop = StopHandle::new(); // stop.stop() from another thread ends the run cleanly
//! let report = Run::new(&ds, &Config::default()).output(std::path::Path::new("runs/a")).stop_handle(stop).execute()?;
//! # Ok::<(), painvrl::core::Error>(())
//! ```

mod plan;
mod stages;

pub use crate::report::{evaluate_splits, Report};
pub use plan::{CheckedConfig, EnvironmentSource, InvariancePlan, Plan, VariantWeightChoice};

use crate::config::Config;
use crate::recommender::{save_model, TrainedModel};
use painvrl_core::io::{write_atomic, write_json_atomic};
use painvrl_core::signal::StopHandle;
use painvrl_core::{Backbone, Dataset, EnvironmentInference, Error, Result};
use painvrl_graph::{build_backbone, Checkpointing, EpochLog, TrainGraph};
use stages::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::nn;

/// Builds a backbone under a `VarStore` path for a training graph and a content width.
pub type BackboneFactory<'a> = &'a dyn Fn(&nn::Path, &TrainGraph, usize) -> Result<Box<dyn Backbone>>;

/// Trains and evaluates `cfg.method` on `ds`. With `out`, checkpoints, the epoch log, the model
/// and `report.json` are written there (atomically); `resume` continues an interrupted run.
/// [`Run`] takes the same and more.
pub fn run(ds: &Dataset, cfg: &Config, out: Option<&Path>, resume: bool) -> Result<Report> {
    let mut r = Run::new(ds, cfg).resume(resume);
    if let Some(dir) = out {
        r = r.output(dir);
    }
    r.execute()
}

/// How [`finished_or_run`] came by its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOrigin {
    /// A run had finished in the directory before: its `report.json` was read back.
    DoneBefore,
    /// An interrupted run was continued from its checkpoints.
    Resumed,
    /// The run was trained from the start.
    Ran,
}

/// The report of `cfg` on `ds` in the run directory `dir`: read back when a run of the same
/// configuration finished there before, resumed when one was interrupted, trained otherwise —
/// what makes the runner and the front resumable. A finished run of another configuration is
/// an error, so that a changed option never mixes old results into new tables.
pub fn finished_or_run(ds: &Dataset, cfg: &Config, dir: &Path) -> Result<(Report, RunOrigin)> {
    let path = dir.join("report.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let r: Report = serde_json::from_str(&text).map_err(|e| Error::parse(&path, Some(e.line()), e.to_string()))?;
        if r.config != cfg.as_run() {
            return Err(Error::config(
                "out",
                format!("{} holds a run of another configuration; remove it or choose another --out", dir.display()),
            ));
        }
        return Ok((r, RunOrigin::DoneBefore));
    }
    let resume = dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let origin = if resume { RunOrigin::Resumed } else { RunOrigin::Ran };
    Ok((run(ds, cfg, Some(dir), resume)?, origin))
}

/// One run of a method on a dataset, configured step by step and started by [`Run::execute`].
pub struct Run<'a> {
    ds: &'a Dataset,
    cfg: &'a Config,
    out: Option<&'a Path>,
    resume: bool,
    inference: Option<Box<dyn EnvironmentInference>>,
    backbone: Option<BackboneFactory<'a>>,
    stop: StopHandle,
}

impl<'a> Run<'a> {
    /// A run of `cfg` on `ds` that writes nothing and uses the configured parts.
    pub fn new(ds: &'a Dataset, cfg: &'a Config) -> Self {
        Run { ds, cfg, out: None, resume: false, inference: None, backbone: None, stop: StopHandle::new() }
    }

    /// Writes checkpoints, the epoch log, plots, the model and `report.json` to `dir`.
    pub fn output(mut self, dir: &'a Path) -> Self {
        self.out = Some(dir);
        self
    }

    /// Continues an interrupted run from the checkpoints in the output directory.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Uses `inference` for the environments of an invariant method (e.g. given labels).
    pub fn inference(mut self, inference: Box<dyn EnvironmentInference>) -> Self {
        self.inference = Some(inference);
        self
    }

    /// Builds the recommender with `factory` (your own [`Backbone`]) instead of `cfg.backbone`.
    pub fn backbone(mut self, factory: BackboneFactory<'a>) -> Self {
        self.backbone = Some(factory);
        self
    }

    /// Stops the run cleanly (after the current step, checkpoint first) when `handle` is stopped.
    pub fn stop_handle(mut self, handle: StopHandle) -> Self {
        self.stop = handle;
        self
    }

    /// Checks the configuration, then trains, evaluates and (with an output) saves.
    pub fn execute(self) -> Result<Report> {
        let Run { ds, cfg, out, resume, inference, backbone, stop } = self;
        if cfg.method.is_item_item() {
            return crate::baselines::run_item_item(ds, cfg, out);
        }
        let plan = Plan::new(cfg.check(ds)?)?;
        let device = plan.cfg.device.resolve()?;
        // before any training, so that a strategy the dataset cannot serve fails at once
        let mut inference = match &plan.invariance {
            Some(inv) => Some(stages::environment_inference(inference, ds, inv, device)?),
            None => None,
        };
        let val_environments = stages::validation_environments(ds, &plan, inference.as_deref())?;
        let mut final_inference = match &plan.invariance {
            Some(inv) => stages::final_environment_inference(ds, inv, device)?,
            None => None,
        };
        let default_factory = |p: &nn::Path, g: &TrainGraph, c: usize| build_backbone(p, g, c, &plan.cfg.backbone);
        let make: BackboneFactory = backbone.unwrap_or(&default_factory);
        let t_all = Instant::now();
        let memory = crate::memory::check(ds, &plan.cfg, device)?;
        painvrl_core::init_runtime(plan.cfg.threads, plan.cfg.seed);
        let ckpt = out.map(|d| Checkpointing { dir: d.to_path_buf(), resume });
        let cx = Context::new(ds, &plan, device, ckpt, stop, make)?;
        let mut history: Vec<EpochLog> = Vec::new();

        let t = Instant::now();
        let mut pre = stages::pretrain(&cx, &mut history)?;
        let mut timings = BTreeMap::from([("pretrain".to_string(), t.elapsed().as_secs_f64())]);
        let mut report = Report::new(ds, &plan.cfg, pre.backbone.name(), memory);

        let model = match (&plan.invariance, inference.as_deref_mut()) {
            (Some(inv), Some(inference)) => {
                let mut invariance = stages::learn_invariance(&cx, inv, &mut pre, inference, &mut report)?;
                if let Some(final_inference) = final_inference.as_deref_mut() {
                    let t = Instant::now();
                    invariance.envs = final_inference.infer(ds, None, plan.cfg.seed.wrapping_add(500))?;
                    report.final_environments = Some(invariance.envs.sizes.clone());
                    *report.timings.entry("environments".into()).or_insert(0.0) += t.elapsed().as_secs_f64();
                }
                let full;
                let start = match plan.mask_pretrain_epochs {
                    Some(_) => {
                        cx.check_stop("the full pre-training")?;
                        let t = Instant::now();
                        full = stages::pretrain_for_final(&cx, &mut history, &mut report)?;
                        timings.insert("pretrain_for_final".into(), t.elapsed().as_secs_f64());
                        &full
                    }
                    None => &pre,
                };
                cx.check_stop("the final training")?;
                let t = Instant::now();
                let model =
                    stages::final_training(&cx, inv, start, &invariance, &val_environments, &mut history, &mut report)?;
                timings.insert("final".into(), t.elapsed().as_secs_f64());
                model
            }
            _ => stages::plain_model(&cx, &pre, &mut report)?,
        };
        stages::evaluate(&cx, &model, &mut report)?;
        timings.extend(std::mem::take(&mut report.timings));
        timings.insert("total".into(), t_all.elapsed().as_secs_f64());
        report.timings = timings;
        if let Some(dir) = out {
            write_run(dir, ds, &report, &history, &model)?;
        }
        Ok(report)
    }
}

/// The run directory's outputs: `epochs.jsonl`, the model, the plots, then `report.json` (last,
/// so that its presence marks a finished run).
fn write_run(dir: &Path, ds: &Dataset, report: &Report, history: &[EpochLog], model: &TrainedModel) -> Result<()> {
    let mut log = Vec::new();
    for h in history {
        log.extend(serde_json::to_vec(h).map_err(|e| Error::io(dir, std::io::Error::other(e)))?);
        log.push(b'\n');
    }
    write_atomic(&dir.join("epochs.jsonl"), &log)?;
    save_model(dir, &report.method, &report.backbone, ds, model)?;
    crate::plots::write_run_plots(dir, report, history)?;
    write_json_atomic(&dir.join("report.json"), report)
}
