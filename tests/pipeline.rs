//! End-to-end: every method runs on a small synthetic dataset and writes a complete report;
//! bad configurations fail before training; an interrupted run resumes to the same result.

use painvrl::config::{Config, Method};
use std::process::Command;

mod common;
use common::{small_config, small_synthetic};

/// libtorch's random generator is process-wide and the pipeline seeds it: tests that train in
/// this process take turns, so that one test's seeding cannot land in another's run.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The epochs one training stage (`module`: "pretrain", "pretrain_for_final" or "final") of a run logged to the
/// run directory's `epochs.jsonl`, in order.
fn logged_epochs(run_dir: &std::path::Path, module: &str) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(run_dir.join("epochs.jsonl")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["module"] == module)
        .collect()
}

#[test]
fn every_method_writes_a_complete_report() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let top = f64::from(*ds.train.item_degrees(ds.n_items).iter().max().unwrap()).ln_1p();
    for &method in Method::INVARIANCE {
        let dir = tempfile::tempdir().unwrap();
        let r = painvrl::pipeline::run(&ds, &small_config(method), Some(dir.path()), false).unwrap();
        assert_eq!(r.method, method.name());
        for split in ["val", "test", "test_ood"] {
            let m = &r.metrics[split];
            for key in ["recall@20", "ndcg@20", "precision@10", "hit@50", "map@20"] {
                assert!((0.0..=1.0).contains(&m[key]), "{method:?} {split} {key} = {}", m[key]);
            }
        }
        // the lists' popularity: one value per split, between ln 1 and ln(1 + the top count)
        for split in ["val", "test", "test_ood"] {
            let p = r.list_popularity[split];
            assert!((0.0..=top).contains(&p), "{method:?} {split} list popularity {p} outside [0, {top}]");
        }
        if method == Method::Erm {
            assert!(r.mask.is_empty());
        } else {
            assert_eq!(r.mask.len(), ds.features.dim());
            assert!(r.mask.iter().all(|m| (0.0..=1.0).contains(m)));
            assert_eq!(r.environments.iter().sum::<usize>(), ds.train.len());
            assert!(r.pareto.iter().all(|a| (0.0..=1.0).contains(a)));
        }
        let text = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
        let back: painvrl::pipeline::Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back.metrics, r.metrics);
        assert_eq!(back.list_popularity, r.list_popularity);
        assert!(dir.path().join("epochs.jsonl").exists());
        let plots: &[&str] =
            if method == Method::Erm { &["curves.svg"] } else { &["curves.svg", "mask.svg", "pareto.svg"] };
        for p in plots {
            let svg = std::fs::read_to_string(dir.path().join(p)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{p}");
        }
    }
}

#[test]
fn same_seed_same_result_on_cpu() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let a = painvrl::pipeline::run(&ds, &small_config(Method::Painvrl), None, false).unwrap();
    let b = painvrl::pipeline::run(&ds, &small_config(Method::Painvrl), None, false).unwrap();
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.mask, b.mask);
}

#[test]
fn the_inference_variant_weight_changes_the_served_model_and_not_the_training() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let run = |method: Method, gamma: f64| {
        let cfg = Config { inference_variant_weight: gamma, ..small_config(method) };
        painvrl::pipeline::run(&ds, &cfg, None, false).unwrap()
    };
    let (full, invariant_half) = (run(Method::Painvrl, 1.0), run(Method::Painvrl, 0.0));
    // the same training: the mask, where the final training started and the risks of the
    // model it trained (on the content it trained on)
    assert_eq!(full.mask, invariant_half.mask);
    assert_eq!(full.diagnostics.val_final_start, invariant_half.diagnostics.val_final_start);
    assert!(!full.diagnostics.final_env_risk_end.is_empty());
    assert_eq!(full.diagnostics.final_env_risk_end, invariant_half.diagnostics.final_env_risk_end);
    // another model served and evaluated
    assert_ne!(full.metrics, invariant_half.metrics);
    // the validation sweep over the weights: the same in both runs, and its rows at 1 and 0
    // are the two served models' validation metrics
    let sweep = &full.diagnostics.val_by_variant_weight;
    assert_eq!(sweep, &invariant_half.diagnostics.val_by_variant_weight);
    let weights: Vec<f64> = sweep.iter().map(|row| row.variant_weight).collect();
    assert_eq!(weights, painvrl::diagnostics::VARIANT_WEIGHT_GRID);
    assert_eq!(sweep[4].val, full.metrics["val"]);
    assert_eq!(sweep[0].val, invariant_half.metrics["val"]);
    assert_eq!(full.diagnostics.served_variant_weight, None);
    // γ chosen on validation: the sweep's choice is served, and its row is what it validates at
    let tolerance = 0.5;
    let cfg = Config { variant_weight_tolerance: Some(tolerance), ..small_config(Method::Painvrl) };
    let chosen_run = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    let chosen = painvrl::diagnostics::choose_variant_weight(sweep, "ndcg@20", tolerance).unwrap();
    assert!(chosen < 1.0, "at this tolerance the small set's sweep admits a smaller weight: a real choice");
    assert_eq!(chosen_run.diagnostics.served_variant_weight, Some(chosen));
    let row = sweep.iter().find(|row| row.variant_weight == chosen).unwrap();
    assert_eq!(chosen_run.metrics["val"], row.val);
    assert_eq!(chosen_run.diagnostics.val_by_variant_weight, *sweep);
    // invariant-only fusion has no variant half to weigh
    let invariant_only = run(Method::PainvrlInvariantOnly, 0.0);
    assert_eq!(run(Method::PainvrlInvariantOnly, 1.0).metrics, invariant_only.metrics);
    assert!(invariant_only.diagnostics.val_by_variant_weight.is_empty());
}

#[test]
fn gamma_chosen_by_the_worse_validation_environment_is_served_and_needs_a_rule_for_new_clicks() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let plain = painvrl::pipeline::run(&ds, &small_config(Method::Painvrl), None, false).unwrap();
    let cfg = Config { variant_weight_worst_environment: true, ..small_config(Method::Painvrl) };
    let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    let sweep = &r.diagnostics.val_by_variant_weight;
    // the default taste-consistency split labels the validation clicks in two environments,
    // and the choice does not change the training: the whole split validates as before
    assert!(sweep.iter().all(|row| row.val_by_environment.len() == 2), "{sweep:?}");
    let whole: Vec<_> = sweep.iter().map(|row| &row.val).collect();
    assert_eq!(whole, plain.diagnostics.val_by_variant_weight.iter().map(|row| &row.val).collect::<Vec<_>>());
    assert!(plain.diagnostics.val_by_variant_weight.iter().all(|row| row.val_by_environment.is_empty()));
    // the sweep's choice is served
    let chosen = painvrl::diagnostics::choose_variant_weight_by_worst_environment(sweep, "ndcg@20").unwrap();
    assert_eq!(r.diagnostics.served_variant_weight, Some(chosen));
    assert_eq!(r.metrics["val"], sweep.iter().find(|row| row.variant_weight == chosen).unwrap().val);
    // an inference without a rule for new clicks is refused before training, as is a second rule
    let mut hetero = cfg.clone();
    hetero.envs.strategy = painvrl::env::Strategy::Heterogeneous;
    let e = painvrl::pipeline::run(&ds, &hetero, None, false).unwrap_err().to_string();
    assert!(e.contains("variant_weight_worst_environment") && e.contains("taste-consistency"), "{e}");
    let both = Config { variant_weight_tolerance: Some(0.02), ..cfg.clone() };
    let e = painvrl::pipeline::run(&ds, &both, None, false).unwrap_err().to_string();
    assert!(e.contains("variant_weight_worst_environment") && e.contains("variant_weight_tolerance"), "{e}");
    let fixed = Config { inference_variant_weight: 0.5, ..cfg.clone() };
    let e = painvrl::pipeline::run(&ds, &fixed, None, false).unwrap_err().to_string();
    assert!(e.contains("variant_weight_worst_environment") && e.contains("inference_variant_weight"), "{e}");
    // named in TOML
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "variant_weight_worst_environment = true\n").unwrap();
    assert!(Config::from_toml_file(&p).unwrap().variant_weight_worst_environment);
}

#[test]
fn a_mask_ensemble_averages_members_whose_first_is_the_single_mask() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let run = |method: Method, members: usize| {
        let cfg = Config { mask_ensemble: members, ..small_config(method) };
        painvrl::pipeline::run(&ds, &cfg, None, false).unwrap()
    };
    let (single, pair) = (run(Method::Painvrl, 1), run(Method::Painvrl, 2));
    // the first member is the single mask's run: its environments (the final penalty's too)
    // and its log are the ones recorded
    assert_eq!(pair.environments, single.environments);
    assert_eq!(pair.mask_log, single.mask_log);
    // the mask is the mean of the two members: the second member, 2 m̄ − m₁, is a mask too,
    // learnt with other seeds
    let second: Vec<f64> =
        pair.mask.iter().zip(&single.mask).map(|(&mean, &first)| 2.0 * f64::from(mean) - f64::from(first)).collect();
    assert!(second.iter().all(|m| (-1e-5..=1.0 + 1e-5).contains(m)), "{second:?}");
    assert!(
        second.iter().zip(&single.mask).any(|(a, &b)| (a - f64::from(b)).abs() > 1e-4),
        "the members are the same mask"
    );
    // each member's own ranking of the planted dimensions, the first member's the single mask's
    assert!(single.diagnostics.mask_auc_by_member.is_empty());
    assert_eq!(pair.diagnostics.mask_auc_by_member.len(), 2);
    assert_eq!(Some(pair.diagnostics.mask_auc_by_member[0]), single.diagnostics.mask_auc_vs_planted);
    // the conversion uses the mean: invariant-only fusion starts the final model from the
    // masked content (attention fusion's start does not depend on the mask)
    assert_ne!(run(Method::PainvrlInvariantOnly, 2).metrics, run(Method::PainvrlInvariantOnly, 1).metrics);
}

#[test]
fn bad_configuration_fails_before_training() {
    let ds = small_synthetic();
    let mut cfg = small_config(Method::Painvrl);
    cfg.train.select_metric = "auc@20".into();
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("train.select_metric"), "{e}");
    let mut cfg = small_config(Method::Painvrl);
    cfg.mask.preference = [1.0, -1.0];
    assert!(painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string().contains("mask.preference"));
    let mut cfg = small_config(Method::Erm);
    cfg.train.negative_popularity = -1.0;
    assert!(painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string().contains("negative_popularity"));
    let mut cfg = small_config(Method::Painvrl);
    cfg.final_negative_popularity = Some(f64::NAN);
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("final_negative_popularity"), "{e}");
    let mut cfg = small_config(Method::Erm);
    cfg.train.eval.ks = vec![10, 500];
    assert!(painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string().contains("eval.ks"));
    for gamma in [-0.1, 1.5, f64::NAN] {
        let cfg = Config { inference_variant_weight: gamma, ..small_config(Method::Painvrl) };
        let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
        assert!(e.contains("inference_variant_weight") && e.contains("[0, 1]"), "{e}");
    }
    let cfg = Config { mask_ensemble: 0, ..small_config(Method::Painvrl) };
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("mask_ensemble") && e.contains("≥ 1"), "{e}");
    for tolerance in [-0.01, 1.0, f64::NAN] {
        let cfg = Config { variant_weight_tolerance: Some(tolerance), ..small_config(Method::Painvrl) };
        let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
        assert!(e.contains("variant_weight_tolerance") && e.contains("[0, 1)"), "{e}");
    }
    let cfg =
        Config { variant_weight_tolerance: Some(0.02), inference_variant_weight: 0.5, ..small_config(Method::Painvrl) };
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("variant_weight_tolerance") && e.contains("inference_variant_weight"), "{e}");
    let cfg = Config { pretrain_epochs: Some(0), ..small_config(Method::Painvrl) };
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("pretrain_epochs") && e.contains("≥ 1"), "{e}");
    // the mask's pre-training must be shorter than the full one (2 epochs here), and the full
    // one is only used through the warm start
    for epochs in [0, 3] {
        let cfg = Config { mask_pretrain_epochs: Some(epochs), ..small_config(Method::Painvrl) };
        let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
        assert!(e.contains("mask_pretrain_epochs") && e.contains("at most the pre-training's 2 epochs"), "{e}");
    }
    let cfg = Config { mask_pretrain_epochs: Some(1), final_warm_start: false, ..small_config(Method::Painvrl) };
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("mask_pretrain_epochs") && e.contains("final_warm_start"), "{e}");
}

/// With `mask_pretrain_epochs` the mask is learned on the shorter pre-training — the mask and
/// environments of a run whose whole pre-training is that short — and the final training starts
/// from the full one, which runs its own epochs after mask learning.
#[test]
fn a_shorter_pre_training_serves_the_mask_and_the_full_one_the_final_start() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let short = Config { pretrain_epochs: Some(1), final_warm_start_scale: 1.0, ..small_config(Method::Painvrl) };
    let mut split = Config { pretrain_epochs: Some(4), mask_pretrain_epochs: Some(1), ..short.clone() };
    split.train.patience = 100;
    let dir = tempfile::tempdir().unwrap();
    let a = painvrl::pipeline::run(&ds, &short, None, false).unwrap();
    let b = painvrl::pipeline::run(&ds, &split, Some(dir.path()), false).unwrap();
    assert_eq!(a.mask, b.mask);
    assert_eq!(a.environments, b.environments);
    assert_eq!(a.diagnostics.val_pretrained, b.diagnostics.val_pretrained);
    assert_eq!(a.diagnostics.val_after_mask_learning, b.diagnostics.val_after_mask_learning);
    assert!(a.diagnostics.val_pretrained_for_final.is_empty());
    // at scale 1 the final model starts as the full pre-training, not as mask learning left
    // the short one
    let (start, full) = (&b.diagnostics.val_final_start, &b.diagnostics.val_pretrained_for_final);
    assert_eq!(start.keys().collect::<Vec<_>>(), full.keys().collect::<Vec<_>>());
    for (k, x) in start {
        assert!((x - full[k]).abs() < 1e-9, "{k}: final start {x} vs full pre-training {}", full[k]);
    }
    assert_ne!(b.diagnostics.val_final_start, b.diagnostics.val_after_mask_learning);
    assert_eq!(logged_epochs(dir.path(), "pretrain").len(), 1);
    assert_eq!(logged_epochs(dir.path(), "pretrain_for_final").len(), 4);
    assert!(b.timings.contains_key("pretrain_for_final"));
}

#[test]
fn unset_pretraining_length_is_the_backbones_own() {
    use painvrl::graph::BackboneKind;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    // the epochs of the pre-training mask learning used and of the one the final training
    // started from that one run logged (epochs.jsonl; 0: no second pre-training); a budget of 12
    // that patience never cuts short, so that the counts are the configured lengths
    let pretrain_epochs = |kind: BackboneKind, pretrain_epochs: Option<usize>, warm_start: bool| {
        let mut cfg = Config { pretrain_epochs, final_warm_start: warm_start, ..small_config(Method::Painvrl) };
        cfg.backbone.kind = kind;
        cfg.train.epochs = 12;
        cfg.train.patience = 100;
        let dir = tempfile::tempdir().unwrap();
        painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap();
        (logged_epochs(dir.path(), "pretrain").len(), logged_epochs(dir.path(), "pretrain_for_final").len())
    };
    // LightGCN: 10 epochs; VBPR: the whole budget, which patience would end; a set length wins
    assert_eq!(pretrain_epochs(BackboneKind::Lightgcn, None, true), (10, 0));
    assert_eq!(pretrain_epochs(BackboneKind::Mf, None, true), (12, 0));
    assert_eq!(pretrain_epochs(BackboneKind::Mf, Some(3), true), (3, 0));
    // UltraGCN: the mask from 10 epochs, the final start from the whole budget; without the
    // warm start, or with a set length of 10, one pre-training of 10
    assert_eq!(pretrain_epochs(BackboneKind::Ultragcn, None, true), (10, 12));
    assert_eq!(pretrain_epochs(BackboneKind::Ultragcn, None, false), (10, 0));
    assert_eq!(pretrain_epochs(BackboneKind::Ultragcn, Some(10), true), (10, 0));
}

#[test]
fn runs_that_cannot_fit_are_refused_before_training() {
    let ds = small_synthetic();
    let mut cfg = small_config(Method::Painvrl);
    let est = painvrl::memory::estimate(&ds, &cfg);
    assert!(est.total_mb > 0.0 && est.total_mb < 1024.0, "{est:?}");
    cfg.max_memory_mb = Some(0);
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("max_memory_mb") && e.contains("train.batch_size"), "{e}");
    // the estimate grows with the batch and the number of negatives
    let mut big = small_config(Method::Painvrl);
    big.train.batch_size *= 8;
    big.backbone.negatives *= 4;
    assert!(painvrl::memory::estimate(&ds, &big).activations_mb > est.activations_mb);
    // a mask ensemble holds a member's pre-trained model beside the run's own: more than a
    // narrow final model needs
    let narrow = Config { convert_dim: 1, ..small_config(Method::Painvrl) };
    let ensemble = Config { mask_ensemble: 3, ..narrow.clone() };
    assert!(
        painvrl::memory::estimate(&ds, &ensemble).parameters_mb > painvrl::memory::estimate(&ds, &narrow).parameters_mb
    );
}

#[test]
fn toml_unknown_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "method = \"invrl\"\n[train]\nepochs = 3\nlearning_rate = 1\n").unwrap();
    let e = Config::from_toml_file(&p).unwrap_err().to_string();
    assert!(e.contains("learning_rate") && e.contains("c.toml"), "{e}");
    std::fs::write(&p, "method = \"invrl\"\n[train]\nepochs = 3\n").unwrap();
    let c = Config::from_toml_file(&p).unwrap();
    assert_eq!((c.method, c.train.epochs), (Method::Invrl, 3));
}

#[test]
fn the_centred_penalty_is_named_in_toml_and_a_wrong_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "final_penalty = \"irmv1-centered\"\n[mask]\npenalty = \"irmv1-centered\"\n").unwrap();
    let c = Config::from_toml_file(&p).unwrap();
    assert_eq!(c.final_penalty, painvrl::mask::FinalPenalty::Irmv1Centered);
    assert_eq!(c.mask.penalty, painvrl::mask::PenaltyKind::Irmv1Centered);
    std::fs::write(&p, "[mask]\npenalty = \"irmv1-centred\"\n").unwrap();
    let e = Config::from_toml_file(&p).unwrap_err().to_string();
    assert!(e.contains("irmv1-centred") && e.contains("irmv1-centered") && e.contains("c.toml"), "{e}");
}

#[test]
fn a_nonsense_warm_start_scale_is_named() {
    let ds = small_synthetic();
    for scale in [0.0, -0.5, f64::NAN] {
        let cfg = Config { final_warm_start_scale: scale, ..small_config(Method::Painvrl) };
        let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
        assert!(e.contains("final_warm_start_scale") && e.contains("> 0"), "{e}");
    }
}

/// Where the final training starts, as the report records it: with the warm start at scale 1
/// the final model is the one mask learning leaves (the pre-trained ID embeddings with the
/// content projection trained alongside the mask), and the pre-trained model itself when mask
/// learning leaves the projection alone.
#[test]
fn the_report_records_where_the_final_training_starts() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let run = |train_projection: bool| {
        let mut cfg = Config { final_warm_start_scale: 1.0, ..small_config(Method::Painvrl) };
        cfg.mask.train_projection = train_projection;
        painvrl::pipeline::run(&ds, &cfg, None, false).unwrap().diagnostics
    };
    let same = |a: &std::collections::BTreeMap<String, f64>, b: &std::collections::BTreeMap<String, f64>| {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, x) in a {
            assert!((x - b[k]).abs() < 1e-9, "{k}: {x} vs {}", b[k]);
        }
    };
    let trained = run(true);
    assert!(trained.val_final_start.contains_key("recall@20"));
    same(&trained.val_final_start, &trained.val_after_mask_learning);
    let kept = run(false);
    same(&kept.val_after_mask_learning, &kept.val_pretrained);
    same(&kept.val_final_start, &kept.val_pretrained);
    // the non-invariant methods have no such stages
    let erm = painvrl::pipeline::run(&ds, &small_config(Method::Erm), None, false).unwrap().diagnostics;
    assert!(erm.val_pretrained.is_empty() && erm.val_final_start.is_empty());
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_painvrl"))
}

#[test]
fn cli_rejects_nonsense_options_clearly() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiktok");
    let out = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let o = cli().args(["train", "--data", data, "--out"]).arg(out.path().join("r")).args(extra).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(run(&["--method", "magic"]).contains("method"));
    assert!(run(&["--backbone", "transformer"]).contains("backbone"));
    assert!(run(&["--device", "tpu"]).contains("device"));
    let o = cli().args(["info", "--data", "/no/such/dir"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"));
    // bench refuses a tolerance outside [0, 1) before loading or training anything
    let o = cli()
        .args(["bench", "--data", data, "--methods", "popularity", "--iid-tolerance", "1.5", "--out"])
        .arg(out.path().join("b"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--iid-tolerance 1.5"));
    assert!(!out.path().join("b").exists());
}

#[test]
fn cli_info_prints_the_summary() {
    let o = cli().args(["info", "--data", concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiktok")]).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && s.contains("9308 users") && s.contains("6710 items"), "{s}");
}

#[test]
fn cli_split_writes_a_canonical_directory_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let ml = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ml-latest-small");
    for (ood, extra) in [("temporal", vec!["--split", "random"]), ("popularity", vec![]), ("none", vec![])] {
        let out = tmp.path().join(ood);
        let o = cli().args(["split", "--data", ml, "--ood", ood]).args(&extra).arg("--out").arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let (ds, report) = painvrl::data::load_dir(&out, &Default::default()).unwrap();
        assert_eq!(report.layout, "canonical");
        assert_eq!(ds.n_items, 9724);
        assert_eq!(ds.test_ood.is_some(), ood != "none", "{ood}");
        if ood != "none" {
            assert!(out.join("test_ood.json").exists());
        }
        // the training clicks keep their times; the temporal OOD set holds only later ones
        let times = ds.train_times.as_ref().unwrap_or_else(|| panic!("{ood}: no training timestamps"));
        if ood == "temporal" {
            let info: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("test_ood.json")).unwrap()).unwrap();
            let cutoff = info["params"]["cutoff_timestamp"].as_i64().unwrap();
            assert!(times.iter().all(|&t| t < cutoff), "a training click at or after the cutoff");
        }
    }
    let o = cli().args(["info", "--data", ml]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("with training timestamps"));
    let o =
        cli().args(["split", "--data", ml, "--ood", "sideways", "--out"]).arg(tmp.path().join("x")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--ood"));
}

#[test]
fn cli_eval_and_pareto_on_a_small_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    painvrl::data::write_dataset(&data, &small_synthetic(), None).unwrap();
    let cfg = tmp.path().join("c.toml");
    // heterogeneous identification, with which the front's shape below was checked: with
    // taste-consistency environments PaInvRL validates more than 2 % above every ERM point
    // on this small set, and ERM would have no operating point to compare
    std::fs::write(
        &cfg,
        "threads = 1\ndevice = \"cpu\"\npretrain_epochs = 1\n[train]\nepochs = 1\nprogress = false\n\
         [envs]\nstrategy = \"heterogeneous\"\nn_envs = 2\nmax_iterations = 1\nepochs = 1\n[mask]\nepochs = 1\nbatch_size = 32\n[backbone]\nnegatives = 4\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let o = cli()
        .args(["train", "--method", "erm", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli().args(["eval", "--run"]).arg(&run).arg("--data").arg(&data).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    // re-evaluating the saved vectors gives the numbers the run reported
    for split in ["val", "test", "test_ood"] {
        let (a, b) = (v[split]["recall@20"].as_f64().unwrap(), report["metrics"][split]["recall@20"].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{split}: {a} vs {b}");
    }
    let front = tmp.path().join("front");
    let o = cli()
        .args(["pareto", "--points", "2", "--seeds", "0,1", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&front)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(front.join("front.json")).unwrap()).unwrap();
    let points = v["points"].as_array().unwrap();
    let betas = painvrl::reference::BaselineConfig::default().posthoc_beta;
    // erm, invrl, two preference vectors, the post-hoc adjustment of ERM at every β of the grid
    // and of the InvRL and each PaInvRL model at every β > 0
    let positive = betas.iter().filter(|&&b| b > 0.0).count();
    assert_eq!(points.len(), 4 + betas.len() + 3 * positive);
    let find = |label: &str| points.iter().find(|p| p["label"] == label).unwrap_or_else(|| panic!("no {label}"));
    for p in points {
        // every point is the mean of both seeds' values
        let per_seed = p["per_seed"].as_object().unwrap();
        assert_eq!(per_seed.len(), 2, "{}", p["label"]);
        let mean = per_seed.values().map(|s| s["ood"].as_f64().unwrap()).sum::<f64>() / 2.0;
        assert!((mean - p["ood"].as_f64().unwrap()).abs() < 1e-12);
    }
    // β = 0 leaves the ERM ranking as it is: the same numbers as the ERM run, seed by seed
    assert_eq!(find("posthoc beta 0")["per_seed"], find("erm")["per_seed"]);
    let erm_run = front.join("runs").join("erm-seed1").join("report.json");
    let erm_report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(erm_run).unwrap()).unwrap();
    assert_eq!(erm_report["metrics"]["test_ood"]["recall@20"], find("erm")["per_seed"]["1"]["ood"]);
    assert!(v["dominance"]["posthoc_points"].as_u64() == Some(betas.len() as u64));
    // the adjusted PaInvRL points can only add to what the preference sweep dominates
    let count = |k: &str, f: &str| v[k][f].as_u64().unwrap();
    assert!(count("dominance_with_posthoc", "posthoc_dominated") >= count("dominance", "posthoc_dominated"));
    let pref = points.iter().find(|p| p["family"] == "painvrl").unwrap()["label"].as_str().unwrap().to_string();
    let adjusted = find(&format!("{pref} + posthoc beta {}", betas.iter().find(|&&b| b > 0.0).unwrap()));
    assert_eq!(adjusted["family"], "painvrl+posthoc");
    // each method's operating point: its best point on val_ood among those whose validation
    // recall is within 2 % of the front's best (recomputed here from the points)
    let chosen = &v["operating_points"]["chosen"];
    let f = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    let best_val = points.iter().map(|p| f(p, "val")).fold(f64::NEG_INFINITY, f64::max);
    for (method, families) in [("erm", ["erm", "posthoc"]), ("painvrl", ["painvrl", "painvrl+posthoc"])] {
        let expected = points
            .iter()
            .filter(|p| families.contains(&p["family"].as_str().unwrap()) && f(p, "val") >= 0.98 * best_val)
            .max_by(|a, b| f(a, "val_ood").total_cmp(&f(b, "val_ood")));
        assert_eq!(expected.map(|p| &p["label"]), chosen[method].get("label"), "{method}");
    }
    assert!(chosen["erm"].get("label").is_some(), "ERM's own point is within the tolerance here");
    assert!(std::fs::read_to_string(front.join("front.svg")).unwrap().contains("</svg>"));
    // a second sweep into the same directory reads the finished runs back: the same front
    let pareto_again = |config: &std::path::Path| {
        cli()
            .args(["pareto", "--points", "2", "--seeds", "0,1", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(&front)
            .output()
            .unwrap()
    };
    let before = std::fs::read_to_string(front.join("front.json")).unwrap();
    let o = pareto_again(&cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(front.join("front.json")).unwrap(), before);
    // … and refuses runs of another configuration instead of mixing them in
    let other = tmp.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&cfg).unwrap().replace("pretrain_epochs = 1", "pretrain_epochs = 2"),
    )
    .unwrap();
    let o = pareto_again(&other);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("another configuration"));
    let o = cli().args(["pareto", "--points", "1", "--data"]).arg(&data).arg("--out").arg(&front).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("points"));
}

#[test]
fn eiil_strategy_runs_in_the_pipeline_with_two_environments() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = small_config(Method::Painvrl);
    cfg.envs.strategy = painvrl::env::Strategy::Eiil;
    cfg.envs.n_envs = 5; // EIIL makes two whatever the count
    cfg.envs.eiil_steps = 20;
    let r = painvrl::pipeline::run(&small_synthetic(), &cfg, None, false).unwrap();
    assert_eq!(r.environments.len(), 2);
    assert_eq!(r.environments.iter().sum::<usize>(), r.dataset.train);
}

#[test]
fn taste_consistency_halves_every_user_is_named_in_toml_and_labels_clicks_only() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[envs]\nstrategy = \"taste-consistency\"\n").unwrap();
    let strategy = Config::from_toml_file(&p).unwrap().envs.strategy;
    assert_eq!(strategy, painvrl::env::Strategy::TasteConsistency);
    let mut cfg = small_config(Method::Painvrl);
    cfg.envs.strategy = strategy;
    cfg.envs.n_envs = 5;
    let ds = small_synthetic();
    let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    // two environments whatever envs.n_envs says; each user's clicks halved, the odd one in 1
    let halves: usize = ds.train.user_degrees(ds.n_users).iter().map(|&d| d as usize / 2).sum();
    assert_eq!(r.environments, vec![halves, ds.train.len() - halves]);
    // deterministic: another seed gives the same environments
    let again = painvrl::pipeline::run(&ds, &Config { seed: cfg.seed + 1, ..cfg.clone() }, None, false).unwrap();
    assert_eq!(again.environments, r.environments);
    assert_eq!(again.diagnostics.env_nmi_vs_planted, r.diagnostics.env_nmi_vs_planted);
    cfg.envs.unit = painvrl::env::Unit::User;
    let e = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("envs.unit"), "{e}");
}

#[test]
fn given_strategy_trains_on_the_datasets_labels_and_fails_at_once_without_them() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = small_config(Method::Painvrl);
    cfg.envs.strategy = painvrl::env::Strategy::Given;
    let mut ds = small_synthetic();
    let planted = ds.truth.train_envs.clone().expect("the generator ships its environments");
    let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    let mut sizes = vec![0usize; r.environments.len()];
    planted.iter().for_each(|&e| sizes[e as usize] += 1);
    assert_eq!(r.environments, sizes);
    assert_eq!(r.diagnostics.env_nmi_vs_planted.map(|v| (v * 1e6).round()), Some(1e6));
    // without labels: an error naming the file, before anything is trained or written
    ds.truth.train_envs = None;
    let dir = tempfile::tempdir().unwrap();
    let e = painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap_err().to_string();
    assert!(e.contains("envs.strategy") && e.contains("train_env.tsv"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
}

#[test]
fn the_planted_mask_ablation_fails_before_pretraining_without_the_planted_truth() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = small_config(Method::Painvrl);
    cfg.mask.planted_logit = 4.0;
    let mut ds = small_synthetic();
    assert!(cfg.check(&ds).is_ok(), "the generator ships its invariant dimensions");
    // a column outside the features: the file and the column named (the dataset's own check)
    let width = ds.features.dim();
    ds.truth.invariant_dims = Some(vec![0, width]);
    let e = cfg.check(&ds).unwrap_err().to_string();
    assert!(e.contains("invariant_dims.json") && e.contains(&format!("dimension {width}")), "{e}");
    // no planted dimensions: the option named, and nothing trained or written (pre-training
    // would have written its checkpoint)
    ds.truth.invariant_dims = None;
    let dir = tempfile::tempdir().unwrap();
    let e = painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap_err().to_string();
    assert!(e.contains("mask.planted_logit") && e.contains("invariant_dims.json"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
    // the non-invariant methods never read the option
    let erm = Config { method: Method::Erm, ..cfg };
    assert!(erm.check(&ds).is_ok());
}

#[test]
fn popularity_weighted_negatives_reach_every_stage_or_the_final_training_alone() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    // the mask and the final stage's training losses (epochs.jsonl) of one run
    let run = |train_alpha: f64, final_alpha: Option<f64>| {
        let mut cfg = small_config(Method::Painvrl);
        cfg.train.negative_popularity = train_alpha;
        cfg.final_negative_popularity = final_alpha;
        let dir = tempfile::tempdir().unwrap();
        let r = painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap();
        let final_losses: Vec<f64> =
            logged_epochs(dir.path(), "final").iter().map(|e| e["loss"].as_f64().unwrap()).collect();
        assert!(!final_losses.is_empty());
        (r.mask, final_losses)
    };
    let uniform = run(0.0, None);
    // the final training's own exponent leaves mask learning as it was and trains on other negatives
    let final_only = run(0.0, Some(1.0));
    assert_eq!(final_only.0, uniform.0);
    assert_ne!(final_only.1, uniform.1);
    // the training exponent reaches mask learning too; the final one can take it back
    let everywhere = run(1.0, None);
    assert_ne!(everywhere.0, uniform.0);
    let mask_only = run(1.0, Some(0.0));
    assert_eq!(mask_only.0, everywhere.0);
    assert_ne!(mask_only.1, everywhere.1);
}

#[test]
fn the_final_penalty_can_take_other_environments_than_the_mask() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = small_config(Method::Painvrl);
    cfg.final_penalty = painvrl::mask::FinalPenalty::RiskVariance;
    cfg.final_environments = Some(painvrl::env::Strategy::Given);
    let mut ds = small_synthetic();
    let planted = ds.truth.train_envs.clone().expect("the generator ships its environments");
    let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
    // the mask learnt from the inferred environments, the final penalty took the planted ones
    assert_eq!(r.environments.len(), cfg.envs.n_envs);
    let mut sizes = vec![0usize; 1 + *planted.iter().max().unwrap() as usize];
    planted.iter().for_each(|&e| sizes[e as usize] += 1);
    assert_eq!(r.final_environments.as_ref(), Some(&sizes));
    assert!(r.metrics["test"]["recall@20"].is_finite());
    // the risks across the penalty's environments, before and after the final training
    for risks in [&r.diagnostics.final_env_risk_start, &r.diagnostics.final_env_risk_end] {
        assert_eq!(risks.len(), sizes.len());
        assert!(risks.iter().all(|x| x.is_finite() && *x > 0.0), "{risks:?}");
    }
    // without a final penalty there is nothing to report
    let erm_final = Config { final_objective: painvrl::config::FinalObjective::Erm, ..small_config(Method::Painvrl) };
    let r = painvrl::pipeline::run(&ds, &erm_final, None, false).unwrap();
    assert!(r.diagnostics.final_env_risk_start.is_empty() && r.diagnostics.final_env_risk_end.is_empty());
    // by default the final penalty takes the mask's environments and the report says nothing
    let plain = painvrl::pipeline::run(&ds, &small_config(Method::Painvrl), None, false).unwrap();
    assert_eq!(plain.final_environments, None);
    // a source the dataset cannot serve: the field named, before anything is written
    ds.truth.train_envs = None;
    let dir = tempfile::tempdir().unwrap();
    let e = painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap_err().to_string();
    assert!(e.contains("final_environments") && e.contains("train_env.tsv"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
}

#[test]
fn a_stop_handle_ends_its_own_run_and_no_other() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let cfg = small_config(Method::Painvrl);
    let stopped = painvrl::core::signal::StopHandle::new();
    stopped.stop();
    let dir = tempfile::tempdir().unwrap();
    let e = painvrl::pipeline::Run::new(&ds, &cfg)
        .output(dir.path())
        .stop_handle(stopped.clone())
        .execute()
        .unwrap_err()
        .to_string();
    assert!(e.contains("stop requested"), "{e}");
    assert!(!dir.path().join("report.json").exists(), "a stopped run writes no report");
    // another run in the same process, with its own handle, is not affected
    let r = painvrl::pipeline::Run::new(&ds, &cfg).stop_handle(painvrl::core::signal::StopHandle::new()).execute();
    assert!(r.is_ok(), "{:?}", r.err());
}

#[test]
fn environments_can_hold_per_user() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg =
        painvrl::data::SyntheticConfig { n_users: 80, n_items: 120, per_user_environments: true, ..Default::default() };
    let ds = painvrl::data::generate(&cfg).unwrap().dataset;
    let clicks = 4 * cfg.per_user;
    assert!(ds.train.user_degrees(ds.n_users).iter().all(|&d| d as usize == clicks));
    // every user has the same number of training clicks, so an environment made of whole
    // users holds a multiple of it; one label per click almost never does
    let sizes = |method: Method, unit: painvrl::env::Unit| {
        let mut c = small_config(method);
        c.envs.strategy = painvrl::env::Strategy::Heterogeneous;
        c.envs.unit = unit;
        painvrl::pipeline::run(&ds, &c, None, false).unwrap().environments
    };
    for method in [Method::Painvrl, Method::PainvrlRandomEnvs] {
        let by_user = sizes(method, painvrl::env::Unit::User);
        assert_eq!(by_user.iter().sum::<usize>(), ds.train.len());
        assert!(by_user.iter().all(|&s| s % clicks == 0), "{method:?}: {by_user:?}");
        let by_click = sizes(method, painvrl::env::Unit::Interaction);
        assert!(by_click.iter().any(|&s| s % clicks != 0), "{method:?}: {by_click:?}");
    }
    // named in TOML; a wrong name, or a strategy that labels clicks, is refused
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[envs]\nunit = \"user\"\n").unwrap();
    assert_eq!(Config::from_toml_file(&p).unwrap().envs.unit, painvrl::env::Unit::User);
    std::fs::write(&p, "[envs]\nunit = \"session\"\n").unwrap();
    let e = Config::from_toml_file(&p).unwrap_err().to_string();
    assert!(e.contains("session") && e.contains("c.toml"), "{e}");
    let mut eiil = small_config(Method::Painvrl);
    eiil.envs.unit = painvrl::env::Unit::User;
    eiil.envs.strategy = painvrl::env::Strategy::Eiil;
    let e = painvrl::pipeline::run(&ds, &eiil, None, false).unwrap_err().to_string();
    assert!(e.contains("envs.unit") && e.contains("heterogeneous"), "{e}");
    // the default inference splits each user's clicks, so it refuses per-user labels too
    let mut taste = small_config(Method::Painvrl);
    taste.envs.unit = painvrl::env::Unit::User;
    let e = painvrl::pipeline::run(&ds, &taste, None, false).unwrap_err().to_string();
    assert!(e.contains("envs.unit") && e.contains("taste-consistency"), "{e}");
}

#[test]
fn gains_on_content_are_named_in_toml_and_a_wrong_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[envs]\ngain_on = \"content\"\n").unwrap();
    assert_eq!(Config::from_toml_file(&p).unwrap().envs.gain_on, painvrl::env::GainOn::Content);
    assert_eq!(Config::default().envs.gain_on, painvrl::env::GainOn::Factor);
    std::fs::write(&p, "[envs]\ngain_on = \"items\"\n").unwrap();
    let e = Config::from_toml_file(&p).unwrap_err().to_string();
    assert!(e.contains("items") && e.contains("factor") && e.contains("content") && e.contains("c.toml"), "{e}");
}

#[test]
fn the_risk_forms_are_named_in_toml_and_a_wrong_name_is_refused() {
    use painvrl::mask::RiskForm;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.toml");
    std::fs::write(&p, "final_risk = \"pairwise\"\n[mask]\nrisk = \"pointwise\"\n").unwrap();
    let cfg = Config::from_toml_file(&p).unwrap();
    assert_eq!((cfg.mask.risk, cfg.final_risk), (RiskForm::Pointwise, RiskForm::Pairwise));
    for (toml, field) in [("[mask]\nrisk = \"listwise\"\n", "risk"), ("final_risk = \"listwise\"\n", "final_risk")] {
        std::fs::write(&p, toml).unwrap();
        let e = Config::from_toml_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("listwise") && e.contains("backbone") && e.contains("pairwise") && e.contains("r.toml"),
            "{field}: {e}"
        );
    }
}

#[test]
fn the_mask_follows_the_risk_form_and_backbone_means_pairwise_on_lightgcn() {
    use painvrl::mask::RiskForm;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = small_synthetic();
    let mask_with = |risk: RiskForm| {
        let mut cfg = small_config(Method::Painvrl);
        cfg.backbone.kind = painvrl::graph::BackboneKind::Lightgcn;
        cfg.mask.risk = risk;
        painvrl::pipeline::run(&ds, &cfg, None, false).unwrap().mask
    };
    let (pointwise, pairwise, backbone) =
        (mask_with(RiskForm::Pointwise), mask_with(RiskForm::Pairwise), mask_with(RiskForm::Backbone));
    assert_eq!(backbone, pairwise, "LightGCN trains on BPR: its own risk is the pairwise one");
    let moved = pointwise.iter().zip(&pairwise).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(moved > 1e-4, "the risk form must reach mask learning: masks differ by at most {moved}");
}
