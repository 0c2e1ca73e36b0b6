//! Stopping a training run at an epoch boundary and resuming from its checkpoint reproduces the
//! uninterrupted run's metrics exactly on CPU; a NaN loss stops with the documented error; a
//! warm start that no epoch improves is kept when the start is a candidate.

use painvrl::core::Validate;
use painvrl::core::{signal, UserItems};
use painvrl::data::{generate, NegativeSampler, SyntheticConfig};
use painvrl::graph::{build_backbone, fit, BackboneConfig, Checkpointing, Stage, TrainConfig, TrainData, TrainGraph};
use tch::{nn::VarStore, Device, Tensor};

struct Setup {
    ds: painvrl::core::Dataset,
    graph: TrainGraph,
    sampler: NegativeSampler,
    val: UserItems,
}

fn setup() -> Setup {
    let ds = generate(&SyntheticConfig { n_users: 60, n_items: 90, ..Default::default() }).unwrap().dataset;
    let graph = TrainGraph::new(ds.n_users, ds.n_items, &ds.train);
    let sampler = NegativeSampler::new(UserItems::build(ds.n_users, &[&ds.train]), ds.n_items).unwrap();
    let val = UserItems::build(ds.n_users, &[&ds.val]);
    Setup { ds, graph, sampler, val }
}

/// The stop flag is process-wide: tests in this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A freshly initialised backbone on one thread, the same for every call.
fn fresh_model(s: &Setup) -> (VarStore, Box<dyn painvrl::core::Backbone>) {
    tch::manual_seed(3);
    tch::set_num_threads(1);
    let vs = VarStore::new(Device::Cpu);
    let cfg = BackboneConfig { negatives: 4, ..Default::default() }.check().unwrap();
    let b = build_backbone(&(vs.root() / "backbone"), &s.graph, s.ds.features.dim(), &cfg).unwrap();
    (vs, b)
}

type Hook<'a> = Option<&'a dyn Fn(usize, usize, &Tensor) -> Option<Tensor>>;

fn train(
    s: &Setup,
    dir: Option<&std::path::Path>,
    resume: bool,
    hook: Hook,
) -> painvrl::core::Result<painvrl::graph::TrainOutcome> {
    let (mut vs, b) = fresh_model(s);
    let x = s.ds.features.to_tensor(Device::Cpu);
    let content = || x.shallow_clone();
    let tcfg = TrainConfig { epochs: 4, batch_size: 128, patience: 10, progress: false, ..Default::default() };
    let data = TrainData { train: &s.ds.train, sampler: &s.sampler, val: &s.val, objective: None, stop: None };
    let ck = dir.map(|d| Checkpointing { dir: d.to_path_buf(), resume });
    fit(
        &mut vs,
        b.as_ref(),
        &content,
        &data,
        &tcfg,
        &Stage { name: "final", seed: 11, ckpt: ck.as_ref(), hook, ..Default::default() },
    )
}

#[test]
fn interrupted_then_resumed_equals_uninterrupted() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let full = train(&s, None, false, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // request a stop during epoch 2's first step: the run stops at that step boundary
    let stopper = |epoch: usize, step: usize, _: &Tensor| {
        if epoch == 2 && step == 0 {
            signal::request_stop();
        }
        None
    };
    let err = train(&s, Some(dir.path()), false, Some(&stopper)).unwrap_err();
    signal::clear_stop();
    assert!(err.to_string().contains("interrupted"), "{err}");
    let resumed = train(&s, Some(dir.path()), true, None).unwrap();
    assert_eq!(resumed.best_val, full.best_val);
    assert_eq!(resumed.epochs_run, full.epochs_run);
    let losses = |o: &painvrl::graph::TrainOutcome| o.history.iter().map(|h| h.loss).collect::<Vec<_>>();
    assert_eq!(losses(&resumed), losses(&full));
}

#[test]
fn nan_loss_names_module_epoch_and_step_and_keeps_the_checkpoint() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let inject = |epoch: usize, step: usize, l: &Tensor| (epoch == 1 && step == 1).then(|| l * f64::NAN);
    let err = train(&s, Some(dir.path()), false, Some(&inject)).unwrap_err().to_string();
    assert!(err.contains("final") && err.contains("epoch 1") && err.contains("step 1"), "{err}");
    assert!(dir.path().join("final.checkpoint.safetensors").exists());
    let failed = std::fs::read_to_string(dir.path().join("final.state.failed.json")).unwrap();
    assert!(failed.contains("not finite"));
    // the checkpoint of epoch 0 is intact and resumable
    let resumed = train(&s, Some(dir.path()), true, None).unwrap();
    assert_eq!(resumed.epochs_run, 4);
}

/// A trained model, then trained on at a learning rate that wrecks it: with the start as a
/// candidate, early stopping returns the model as it started; without, the best wrecked epoch.
#[test]
fn a_start_that_no_epoch_improves_is_kept_when_it_is_a_candidate() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let continued = |candidate_start: bool| {
        let (mut vs, b) = fresh_model(&s);
        let x = s.ds.features.to_tensor(Device::Cpu);
        let content = || x.shallow_clone();
        let data = TrainData { train: &s.ds.train, sampler: &s.sampler, val: &s.val, objective: None, stop: None };
        let warm = TrainConfig { epochs: 4, batch_size: 128, progress: false, ..Default::default() };
        let trained = fit(&mut vs, b.as_ref(), &content, &data, &warm, &Stage { name: "pre", ..Default::default() });
        let trained = trained.unwrap();
        let wreck = TrainConfig { epochs: 3, lr: 10.0, lr_content: 10.0, ..warm };
        let stage = Stage { name: "on", candidate_start, ..Default::default() };
        let outcome = fit(&mut vs, b.as_ref(), &content, &data, &wreck, &stage).unwrap();
        let returned = painvrl::graph::validate(b.as_ref(), &content, &data, &wreck).unwrap();
        (trained.best_val, outcome, returned)
    };
    let (trained, kept, returned) = continued(true);
    assert_eq!(kept.best_epoch, None);
    assert_eq!(kept.start_val.as_ref(), Some(&trained));
    assert_eq!(kept.best_val, trained);
    assert_eq!(returned, trained, "the returned state is the start");
    assert_eq!(kept.history.len(), 3, "the epochs still ran");
    let (trained, wrecked, returned) = continued(false);
    assert!(wrecked.best_epoch.is_some() && wrecked.start_val.is_none());
    assert_eq!(returned, wrecked.best_val);
    let ndcg = |m: &painvrl::core::SplitMetrics| m.values["ndcg@20"];
    assert!(ndcg(&wrecked.best_val) < ndcg(&trained), "{} vs {}", ndcg(&wrecked.best_val), ndcg(&trained));
}
