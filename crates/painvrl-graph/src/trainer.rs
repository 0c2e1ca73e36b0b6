//! The training loop: Adam with parameter groups, shuffled batches with sampled negatives,
//! validation every N epochs (and of the start, when it is a candidate), early stopping with
//! patience, best-state restore, atomic checkpoints with optimiser state, exact resume, a
//! divergence guard and a JSON-lines log.

use painvrl_core::eval::{evaluate, EmbeddingScorer, EvalConfig};
use painvrl_core::io::{write_atomic, write_safetensors_atomic};
use painvrl_core::optim::{load_checkpoint, save_checkpoint, Adam, GroupHyper};
use painvrl_core::signal::StopHandle;
use painvrl_core::{
    signal, Backbone, Error, Interactions, Result, SplitMetrics, StepObjective, UserItems, EMBEDDING_GROUP,
};
use painvrl_data::{epoch_batches, make_batch, NegativeSampler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::VarStore;
use tch::Tensor;

/// Options of the training loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Maximum epochs: a cap, so that `patience` decides when training ends. The default, 200,
    /// was 30 until session 9, which stopped ERM-LightGCN while its validation NDCG was still
    /// rising (best epoch 25–97 on MovieLens, 28–40 on the `exposure` family) and made every
    /// comparison with a two-stage pipeline (10 + 30 epochs) one of budgets (docs/method.md).
    /// MMRec caps at 1,000 with the same patience.
    pub epochs: usize,
    /// Positives per batch.
    pub batch_size: usize,
    /// Learning rate of the embeddings.
    pub lr: f64,
    /// Learning rate of content parameters (projection, mask, converter).
    pub lr_content: f64,
    /// Weight decay of the embeddings.
    pub weight_decay: f64,
    /// Weight decay of content parameters.
    pub weight_decay_content: f64,
    /// Validate every this many epochs.
    pub eval_every: usize,
    /// Stop after this many validations without improvement. The default, 20, is MMRec's
    /// `stopping_step`: validation metrics often dip for several epochs early in training
    /// before they climb (measured on the synthetic generator: patience 5 stopped the final
    /// stage at epoch 5, at recall@20 0.14 against 0.23 when trained on).
    pub patience: usize,
    /// Validation metric to select on, e.g. `ndcg@20`.
    pub select_metric: String,
    /// Evaluation options.
    pub eval: EvalConfig,
    /// Show a progress bar (only on a terminal, never in CI).
    pub progress: bool,
    /// On CUDA, read the step losses back to the host (and check them for NaN) once every this
    /// many steps instead of every step: each read waits for the GPU to drain its queue. A
    /// non-finite loss is still reported with its exact step. On the CPU every step is checked.
    pub cuda_loss_read_every: usize,
    /// Exponent α of popularity-weighted negatives: item j is drawn with probability ∝
    /// (1 + users who have j in training)^α before the user's own items are rejected
    /// ([`NegativeSampler::popularity_weighted`]). 0, the default, samples uniformly; every
    /// stage trained with sampled negatives (backbones, the mask, ERM baselines) uses the same
    /// sampler, so ERM given the same negatives is the same option on `--method erm`.
    pub negative_popularity: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 200,
            batch_size: 1024,
            lr: 5e-3,
            lr_content: 1e-3,
            weight_decay: 0.0,
            weight_decay_content: 0.0,
            eval_every: 1,
            patience: 20,
            select_metric: "ndcg@20".into(),
            eval: EvalConfig::default(),
            progress: true,
            cuda_loss_read_every: 32,
            negative_popularity: 0.0,
        }
    }
}

impl TrainConfig {
    /// Checks every field.
    pub fn validate(&self, n_items: usize) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("train.epochs", "must be ≥ 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("train.batch_size", "must be ≥ 1"));
        }
        if self.cuda_loss_read_every == 0 {
            return Err(Error::config("train.cuda_loss_read_every", "must be ≥ 1"));
        }
        if self.eval_every == 0 {
            return Err(Error::config("train.eval_every", "must be ≥ 1"));
        }
        for (f, v) in [("train.lr", self.lr), ("train.lr_content", self.lr_content)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(f, format!("{v} is not a positive number")));
            }
        }
        for (f, v) in [
            ("train.weight_decay", self.weight_decay),
            ("train.weight_decay_content", self.weight_decay_content),
            ("train.negative_popularity", self.negative_popularity),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(f, format!("{v} is not a non-negative number")));
            }
        }
        self.eval.validate(n_items)?;
        let (name, k) =
            self.select_metric.split_once('@').and_then(|(n, k)| k.parse::<usize>().ok().map(|k| (n, k))).ok_or_else(
                || Error::config("train.select_metric", format!("'{}' is not of the form name@K", self.select_metric)),
            )?;
        if !painvrl_core::metrics::METRIC_NAMES.contains(&name) || !self.eval.ks.contains(&k) {
            return Err(Error::config(
                "train.select_metric",
                format!(
                    "'{}' is not one of {:?} at a K in eval.ks {:?}",
                    self.select_metric,
                    painvrl_core::metrics::METRIC_NAMES,
                    self.eval.ks
                ),
            ));
        }
        Ok(())
    }
}

/// What the trainer needs of the data: the training interactions and validation targets.
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    /// Training interactions (positives).
    pub train: &'a Interactions,
    /// Negative sampler excluding each user's training items.
    pub sampler: &'a NegativeSampler,
    /// Validation items per user.
    pub val: &'a UserItems,
    /// A second objective balanced against the backbone's loss at every step (`None`: the
    /// backbone's loss alone).
    pub objective: Option<&'a dyn StepObjective>,
    /// This run's stop flag (`None`: only the process-wide one stops it).
    pub stop: Option<&'a StopHandle>,
}

/// One line of the per-epoch log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Module that trained (`pretrain`, `final`, ...).
    pub module: String,
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Seconds of training in this epoch (evaluation excluded).
    pub seconds: f64,
    /// Validation metrics, when evaluated.
    pub val: Option<BTreeMap<String, f64>>,
    /// Mean weight on the backbone's loss when a [`StepObjective`] combined it with another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_weight: Option<f64>,
}

/// Result of a training run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Epoch of the best validation score; `None` when nothing was validated or the state
    /// before the first epoch scored best ([`Stage::candidate_start`]).
    pub best_epoch: Option<usize>,
    /// Validation metrics of the state before the first epoch, when it was a candidate.
    #[serde(default)]
    pub start_val: Option<SplitMetrics>,
    /// Best validation metrics.
    pub best_val: SplitMetrics,
    /// Epochs run in total.
    pub epochs_run: usize,
    /// The log.
    pub history: Vec<EpochLog>,
    /// Seconds spent training (evaluation excluded).
    pub train_seconds: f64,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// Where a run keeps its checkpoint and log; `None` trains in memory only.
#[derive(Clone, Debug)]
pub struct Checkpointing {
    /// Directory for `<module>.checkpoint.safetensors`, `<module>.state.json`, `<module>.best.safetensors`.
    pub dir: PathBuf,
    /// Continue from an existing checkpoint of this module.
    pub resume: bool,
}

#[derive(Serialize, Deserialize)]
struct LoopState {
    next_epoch: usize,
    best_score: f64,
    bad_evals: usize,
    outcome: TrainOutcome,
}

/// A hook called once per step with (epoch, step, loss); tests use it to inject faults.
pub type StepHook<'a> = &'a dyn Fn(usize, usize, &Tensor) -> Option<Tensor>;

/// Which training stage this is and how it is kept.
#[derive(Default)]
pub struct Stage<'a> {
    /// Name in the log and in checkpoint file names (`pretrain`, `final`, ...).
    pub name: &'a str,
    /// Seed of the batch order and the negatives.
    pub seed: u64,
    /// Where checkpoints go (`None`: none are written).
    pub ckpt: Option<&'a Checkpointing>,
    /// Called at every step (tests inject faults with it).
    pub hook: Option<StepHook<'a>>,
    /// Validate the state before the first step and let it compete for the best state, so that
    /// a warm-started model that no epoch improves on validation is returned as it started.
    pub candidate_start: bool,
}

/// Trains `backbone` (variables in `vs`) on `content()` until the epoch budget or early stop,
/// then restores the best validated state. Variables in the [`EMBEDDING_GROUP`] use `lr`, all
/// others `lr_content`.
pub fn fit(
    vs: &mut VarStore,
    backbone: &dyn Backbone,
    content: &dyn Fn() -> Tensor,
    data: &TrainData,
    cfg: &TrainConfig,
    stage: &Stage,
) -> Result<TrainOutcome> {
    let Stage { name: module, seed, ckpt, hook, candidate_start } = *stage;
    let emb = GroupHyper { lr: cfg.lr, weight_decay: cfg.weight_decay };
    let cont = GroupHyper { lr: cfg.lr_content, weight_decay: cfg.weight_decay_content };
    // group 0 holds the content parameters, EMBEDDING_GROUP the ID embeddings
    let mut groups = [cont; EMBEDDING_GROUP + 1];
    groups[EMBEDDING_GROUP] = emb;
    let mut opt = Adam::new(vs, &groups);
    let device = vs.device();
    let k_neg = backbone.negatives_per_positive();
    let files = ckpt.map(|c| ModuleFiles::new(&c.dir, module));

    let mut state =
        LoopState { next_epoch: 0, best_score: f64::NEG_INFINITY, bad_evals: 0, outcome: TrainOutcome::default() };
    if let (Some(c), Some(f)) = (ckpt, &files) {
        if c.resume && f.state.exists() {
            let text = std::fs::read_to_string(&f.state).map_err(|e| Error::io(&f.state, e))?;
            state = serde_json::from_str(&text).map_err(|e| Error::parse(&f.state, None, e.to_string()))?;
            let extra = load_checkpoint(&f.checkpoint, vs)?;
            opt.load_state(&extra, device)?;
        }
    }
    let mut best_vars: Option<Vec<(String, Tensor)>> = match &files {
        Some(f) if f.best.exists() && state.next_epoch > 0 => Some(read_vars(&f.best)?),
        _ => None,
    };

    if candidate_start && state.next_epoch == 0 {
        let t1 = Instant::now();
        let metrics = validate(backbone, content, data, cfg)?;
        state.outcome.eval_seconds += t1.elapsed().as_secs_f64();
        let score = metrics.values.get(&cfg.select_metric).copied().unwrap_or(f64::NAN);
        if score.is_finite() {
            state.best_score = score;
            state.outcome.best_val = metrics.clone();
            best_vars = Some(keep_best(vs, &files)?);
        }
        state.outcome.start_val = Some(metrics);
    }
    let bar = progress_bar(cfg, module);
    bar.set_position(state.next_epoch as u64);
    for epoch in state.next_epoch..cfg.epochs {
        let t0 = Instant::now();
        let batches = epoch_batches(data.train.len(), cfg.batch_size, mix(seed, epoch as u64, 0));
        let mut loss_sum = 0.0;
        let mut weights = Vec::new();
        // step losses not yet read back to the host, from step `unread_from` on
        let read_every = if device.is_cuda() { cfg.cuda_loss_read_every.max(1) } else { 1 };
        let mut unread: Vec<Tensor> = Vec::with_capacity(read_every);
        let mut unread_from = 0;
        for (step, positions) in batches.iter().enumerate() {
            let batch = make_batch(
                data.train,
                positions,
                data.sampler,
                k_neg,
                mix(seed, epoch as u64, step as u64 + 1),
                device,
            );
            opt.zero_grad();
            let content_now = content();
            let mut loss = backbone.loss(&batch, &content_now);
            if let Some(h) = hook {
                if let Some(replaced) = h(epoch, step, &loss) {
                    loss = replaced;
                }
            }
            unread.push(loss.detach());
            if unread.len() == read_every || step + 1 == batches.len() {
                // one device-to-host read for the pending steps, checked before this step's update
                let values = read_losses(&unread)?;
                if let Some(k) = values.iter().position(|v| !v.is_finite()) {
                    return Err(fail(
                        &files,
                        &state,
                        Error::Diverged {
                            module: module.into(),
                            epoch,
                            step: unread_from + k,
                            what: "training loss".into(),
                        },
                    ));
                }
                loss_sum += values.iter().sum::<f64>();
                unread.clear();
                unread_from = step + 1;
            }
            match data.objective {
                Some(objective) => {
                    weights.extend(objective.backward(vs, backbone, &content_now, &batch, positions, &loss)?);
                }
                None => loss.backward(),
            }
            opt.step();
            if signal::should_stop(data.stop) && step + 1 < batches.len() {
                // finish cleanly at a step boundary: the checkpoint holds the last completed epoch
                return Err(fail(
                    &files,
                    &state,
                    Error::Interrupted(format!(
                        "{module}: stop requested during epoch {epoch}; resume continues from epoch {}",
                        state.next_epoch
                    )),
                ));
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        state.outcome.train_seconds += seconds;
        let mut log = EpochLog {
            module: module.into(),
            epoch,
            loss: loss_sum / batches.len().max(1) as f64,
            seconds,
            val: None,
            loss_weight: (!weights.is_empty()).then(|| weights.iter().sum::<f64>() / weights.len() as f64),
        };
        let last = epoch + 1 == cfg.epochs;
        if (epoch + 1) % cfg.eval_every == 0 || last {
            let t1 = Instant::now();
            let metrics = validate(backbone, content, data, cfg)?;
            state.outcome.eval_seconds += t1.elapsed().as_secs_f64();
            let score = metrics.values.get(&cfg.select_metric).copied().unwrap_or(f64::NAN);
            if !score.is_finite() {
                return Err(fail(
                    &files,
                    &state,
                    Error::Diverged {
                        module: module.into(),
                        epoch,
                        step: batches.len(),
                        what: cfg.select_metric.clone(),
                    },
                ));
            }
            log.val = Some(metrics.values.clone());
            if score > state.best_score {
                state.best_score = score;
                state.bad_evals = 0;
                state.outcome.best_epoch = Some(epoch);
                state.outcome.best_val = metrics;
                best_vars = Some(keep_best(vs, &files)?);
            } else {
                state.bad_evals += 1;
            }
        }
        bar.set_message(format!("loss {:.4} best {} {:.4}", log.loss, cfg.select_metric, state.best_score));
        bar.inc(1);
        state.outcome.history.push(log);
        state.outcome.epochs_run = epoch + 1;
        state.next_epoch = epoch + 1;
        if let Some(f) = &files {
            save_checkpoint(&f.checkpoint, vs, &opt.state())?;
            f.write_state(&state)?;
        }
        if state.bad_evals >= cfg.patience || signal::should_stop(data.stop) {
            if signal::should_stop(data.stop) && !last {
                return Err(Error::Interrupted(format!(
                    "{module}: stop requested after epoch {epoch}; checkpoint written"
                )));
            }
            break;
        }
    }
    bar.finish_and_clear();
    if let Some(vars) = &best_vars {
        restore(vs, vars);
    }
    Ok(state.outcome)
}

/// Validation metrics of the current model state.
pub fn validate(
    backbone: &dyn Backbone,
    content: &dyn Fn() -> Tensor,
    data: &TrainData,
    cfg: &TrainConfig,
) -> Result<SplitMetrics> {
    let (users, items) = tch::no_grad(|| backbone.embeddings(&content()));
    evaluate(&EmbeddingScorer { users, items }, data.val, &[data.sampler.seen()], &cfg.eval)
}

/// Deterministic seed for (run seed, epoch, step).
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

struct ModuleFiles {
    checkpoint: PathBuf,
    state: PathBuf,
    best: PathBuf,
}

impl ModuleFiles {
    fn new(dir: &Path, module: &str) -> Self {
        ModuleFiles {
            checkpoint: dir.join(format!("{module}.checkpoint.safetensors")),
            state: dir.join(format!("{module}.state.json")),
            best: dir.join(format!("{module}.best.safetensors")),
        }
    }

    fn write_state(&self, state: &LoopState) -> Result<()> {
        let text = serde_json::to_vec_pretty(state).map_err(|e| Error::io(&self.state, std::io::Error::other(e)))?;
        write_atomic(&self.state, &text)
    }
}

/// On a fault the last good checkpoint stays; the state file is marked failed for reports.
/// The values of scalar loss tensors, read back in one transfer.
fn read_losses(losses: &[Tensor]) -> Result<Vec<f64>> {
    let stacked = Tensor::stack(losses, 0).to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    Ok(Vec::<f64>::try_from(stacked)?)
}

fn fail(files: &Option<ModuleFiles>, state: &LoopState, err: Error) -> Error {
    if let Some(f) = files {
        let failed = f.state.with_extension("failed.json");
        let body =
            serde_json::json!({ "error": err.to_string(), "last_completed_epoch": state.next_epoch.checked_sub(1) });
        let _ = write_atomic(&failed, body.to_string().as_bytes());
    }
    err
}

fn snapshot(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A snapshot of the current state as the best so far, also written to the module's best file
/// when the run keeps files.
fn keep_best(vs: &VarStore, files: &Option<ModuleFiles>) -> Result<Vec<(String, Tensor)>> {
    let vars = snapshot(vs);
    if let Some(f) = files {
        write_safetensors_atomic(&f.best, &vars)?;
    }
    Ok(vars)
}

fn restore(vs: &VarStore, vars: &[(String, Tensor)]) {
    let live = vs.variables();
    tch::no_grad(|| {
        for (n, t) in vars {
            if let Some(dst) = live.get(n) {
                dst.shallow_clone().copy_(t);
            }
        }
    });
}

fn read_vars(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Tensor::read_safetensors(path).map_err(|e| Error::parse(path, None, format!("not a readable checkpoint: {e}")))
}

fn progress_bar(cfg: &TrainConfig, module: &str) -> indicatif::ProgressBar {
    let visible = cfg.progress && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(cfg.epochs as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} epochs {elapsed} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(module.to_string());
    bar
}
