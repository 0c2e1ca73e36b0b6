//! The evaluation protocol: the IID test stays a uniform sample of the held-out interactions, the
//! OOD sets never depend on the training seed, every baseline runs through the pipeline, and
//! `bench` resumes without re-running finished runs.

use painvrl::bench::{BenchPlan, GridChoice, MethodSpec};
use painvrl::config::{Config, Method};
use painvrl::core::{DeviceSpec, Interactions};
use painvrl::data::{generate, load_dir, prepare_ood, LoadOptions, SyntheticConfig};
use std::path::Path;
use std::process::Command;

/// libtorch's random generator is process-wide: the tests here that train take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Mean training popularity of the items of `split` and its standard error.
fn mean_popularity(pop: &[u32], split: &Interactions) -> (f64, f64) {
    let xs: Vec<f64> = split.items.iter().map(|&i| pop[i as usize] as f64).collect();
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[test]
fn iid_test_has_the_popularity_of_validation_and_test_ood_is_shifted() {
    let (mut ds, _) =
        load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiktok").as_path(), &LoadOptions::default()).unwrap();
    let held_out = ds.test.len();
    prepare_ood(&mut ds, &Config::default().ood, 0).unwrap();
    let pop = ds.train.item_degrees(ds.n_items);
    let (val, val_se) = mean_popularity(&pop, &ds.val);
    let (test, test_se) = mean_popularity(&pop, &ds.test);
    let (ood, _) = mean_popularity(&pop, ds.test_ood.as_ref().unwrap());
    // val is a uniform sample of the held-out interactions: the IID test must match it within
    // sampling error (3 standard errors of the difference)
    let tolerance = 3.0 * (val_se.powi(2) + test_se.powi(2)).sqrt();
    assert!((test - val).abs() < tolerance, "IID test mean popularity {test:.2} vs val {val:.2} (±{tolerance:.2})");
    assert!(ood < 0.5 * val, "test_ood mean popularity {ood:.2} should be far below val's {val:.2}");
    assert_eq!(ds.test.len(), held_out - (held_out as f64 * 0.5).round() as usize);
    assert!(ds.val_ood.as_ref().is_some_and(|v| !v.is_empty()));
}

/// `painvrl train --method popularity` with a training seed: popularity ignores the seed, so equal
/// test_ood metrics across seeds mean the OOD set itself was the same.
fn popularity_run(seed: u64, dir: &Path) -> serde_json::Value {
    let out = dir.join(format!("seed-{seed}"));
    let status = Command::new(env!("CARGO_BIN_EXE_painvrl"))
        .args(["train", "--method", "popularity", "--device", "cpu", "--seed", &seed.to_string(), "--data"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tiktok"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn test_ood_is_the_same_for_every_training_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (popularity_run(0, dir.path()), popularity_run(1, dir.path()));
    assert_eq!(a["dataset"], b["dataset"]);
    assert_eq!(a["metrics"]["test_ood"], b["metrics"]["test_ood"]);
    assert_eq!(a["metrics"]["val_ood"], b["metrics"]["val_ood"]);
    assert!(a["metrics"]["test_ood"]["recall@20"].as_f64().unwrap() >= 0.0);
}

fn tiny_config() -> Config {
    let mut cfg = Config { device: DeviceSpec::Cpu, threads: 1, pretrain_epochs: Some(1), ..Default::default() };
    cfg.train.epochs = 1;
    cfg.train.batch_size = 256;
    cfg.train.progress = false;
    cfg.backbone.negatives = 4;
    cfg.baselines.ease_lambda = vec![1.0, 10.0];
    cfg.baselines.knn_k = vec![5, 20];
    cfg
}

fn synthetic() -> painvrl::core::Dataset {
    let mut ds = generate(&SyntheticConfig { n_users: 80, n_items: 120, ..Default::default() }).unwrap().dataset;
    prepare_ood(&mut ds, &Config::default().ood, 0).unwrap();
    ds
}

#[test]
fn every_baseline_runs_and_records_its_validation_choice() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ds = synthetic();
    for (method, backbone, chosen) in [
        (Method::Popularity, None, None),
        (Method::Ease, None, Some("ease_lambda")),
        (Method::Itemknn, None, Some("knn_k")),
        (Method::Pd, Some(painvrl::graph::BackboneKind::Mf), None),
        (Method::Posthoc, None, Some("posthoc_beta")),
    ] {
        let cfg = MethodSpec { method, backbone }.apply(&tiny_config());
        let r = painvrl::pipeline::run(&ds, &cfg, None, false).unwrap();
        for split in ["val", "test", "test_ood", "val_ood"] {
            let v = r.metrics[split]["recall@20"];
            assert!((0.0..=1.0).contains(&v), "{method:?} {split}: {v}");
        }
        if let Some(key) = chosen {
            assert!(r.selected.contains_key(key), "{method:?} records {key}: {:?}", r.selected);
        }
    }
    // PD on UltraGCN is refused with the field named
    let on_ultragcn = MethodSpec { method: Method::Pd, backbone: Some(painvrl::graph::BackboneKind::Ultragcn) };
    let e = painvrl::pipeline::run(&ds, &on_ultragcn.apply(&tiny_config()), None, false).unwrap_err();
    assert!(e.to_string().contains("backbone.pd_gamma"), "{e}");
}

#[test]
fn bench_skips_finished_runs_reruns_only_the_missing_one_and_refuses_another_configuration() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let mut plan = BenchPlan {
        datasets: vec![("synthetic".into(), synthetic())],
        methods: vec!["popularity".parse().unwrap(), "erm".parse().unwrap()],
        seeds: 2,
        grid: vec![],
        base: tiny_config(),
        out: out.path().to_path_buf(),
        reference: Some("erm".into()),
        choice: GridChoice::default(),
        blend_ease: false,
    };
    let first = painvrl::bench::run(&plan).unwrap();
    assert_eq!(first.len(), 4);
    let runs = out.path().join("runs/synthetic");
    let kept = runs.join("erm/default/seed-0/report.json");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    // an interrupted run: its directory exists, its report does not
    std::fs::remove_file(runs.join("erm/default/seed-1/report.json")).unwrap();
    let second = painvrl::bench::run(&plan).unwrap();
    assert_eq!(std::fs::metadata(&kept).unwrap().modified().unwrap(), before, "a finished run was re-run");
    assert!(runs.join("erm/default/seed-1/report.json").exists());
    let metrics = |rs: &[painvrl::bench::RunResult]| rs.iter().map(|r| r.metrics.clone()).collect::<Vec<_>>();
    assert_eq!(metrics(&first), metrics(&second), "the same seeds give the same results");
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("| popularity |") && md.contains("vs erm"), "{md}");
    assert!(out.path().join("front.svg").exists() && out.path().join("results.json").exists());
    // a changed option with the same output: refused, not mixed into the tables
    plan.base.train.lr *= 2.0;
    let e = painvrl::bench::run(&plan).unwrap_err().to_string();
    assert!(e.contains("holds a run of another configuration"), "{e}");
}

#[test]
fn bench_blends_trained_runs_with_ease_and_reads_the_blend_back() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let ds = synthetic();
    let plan = BenchPlan {
        datasets: vec![("synthetic".into(), ds.clone())],
        methods: vec!["ease".parse().unwrap(), "erm".parse().unwrap()],
        seeds: 1,
        grid: vec![],
        base: tiny_config(),
        out: out.path().to_path_buf(),
        reference: Some("erm".into()),
        choice: GridChoice::default(),
        blend_ease: true,
    };
    let first = painvrl::bench::run(&plan).unwrap();
    // ease has no embedding model to blend: ease, erm, erm+ease
    let methods: Vec<&str> = first.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["ease", "erm", "erm+ease"]);
    // the blended row is the blend of the saved ERM run at the weight chosen on validation
    let run = out.path().join("runs/synthetic/erm/default/seed-0");
    let direct = painvrl::blend::blend_report(
        &run,
        &ds,
        &Config { seed: 0, ..tiny_config() },
        &painvrl::blend::default_weights(),
        GridChoice::BestValidation,
    )
    .unwrap();
    assert_eq!(first[2].metrics, direct.chosen().unwrap().metrics);
    assert_eq!(first[2].selected["blend_weight"], direct.weight);
    // read back, not re-measured, on a second pass
    let written = std::fs::metadata(run.join("blend-ease.json")).unwrap().modified().unwrap();
    let second = painvrl::bench::run(&plan).unwrap();
    assert_eq!(std::fs::metadata(run.join("blend-ease.json")).unwrap().modified().unwrap(), written);
    assert_eq!(second[2].metrics, first[2].metrics);
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("| erm+ease |"), "{md}");
}

/// `painvrl synth`'s files hold the generated set as it is; `painvrl train` L2-normalises each
/// item's feature row on loading (per modality), so a run on the files and one on the
/// in-process set see the same interactions and different features.
#[test]
fn synthetic_sets_round_trip_and_loading_normalises_the_feature_rows() {
    let syn = generate(&SyntheticConfig { n_users: 30, n_items: 40, seed: 3, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    painvrl::data::write_dataset(dir.path(), &syn.dataset, None).unwrap();
    let raw = LoadOptions { l2_normalize: false, ..LoadOptions::default() };
    let (as_written, _) = load_dir(dir.path(), &raw).unwrap();
    for (name, split) in syn.dataset.splits() {
        let back = as_written.splits().into_iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(back.iter().collect::<Vec<_>>(), split.iter().collect::<Vec<_>>(), "{name}");
    }
    assert_eq!(as_written.features.values(), syn.dataset.features.values());
    let (loaded, _) = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.features.dim(), syn.dataset.features.dim());
    assert_eq!(loaded.features.modalities(), syn.dataset.features.modalities());
    let mut max_raw_norm = 0f32;
    for m in 0..syn.dataset.features.modalities().len() {
        let cols = syn.dataset.features.modality_range(m);
        for i in 0..syn.dataset.n_items {
            let (x, y) = (&syn.dataset.features.row(i)[cols.clone()], &loaded.features.row(i)[cols.clone()]);
            let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            max_raw_norm = max_raw_norm.max((norm - 1.0).abs());
            approx::assert_relative_eq!(y.iter().map(|v| v * v).sum::<f32>().sqrt(), 1.0, epsilon = 1e-5);
            for (a, b) in x.iter().zip(y) {
                approx::assert_abs_diff_eq!(a / norm, *b, epsilon = 1e-6);
            }
        }
    }
    // what loading does is what `ItemFeatures::l2_normalized` does in process
    assert_eq!(loaded.features, syn.dataset.features.l2_normalized());
    // the generator's rows are not unit rows: the two runs really differ
    assert!(max_raw_norm > 0.1, "generated rows are already unit rows ({max_raw_norm})");
}

#[test]
fn planted_truth_files_round_trip_and_bad_ones_are_named() {
    let syn = generate(&SyntheticConfig { n_users: 30, n_items: 40, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    painvrl::data::write_dataset(dir.path(), &syn.dataset, None).unwrap();
    let (ds, _) = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.truth, syn.dataset.truth);
    // a label that is not a number: file and line named
    let envs = dir.path().join("train_env.tsv");
    let mut text = std::fs::read_to_string(&envs).unwrap();
    text = text.replacen('\n', "\nx\n", 1);
    std::fs::write(&envs, &text).unwrap();
    let e = load_dir(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("train_env.tsv") && e.contains("line 2"), "{e}");
    // one label too few: the counts named
    let lines: Vec<&str> = text.lines().filter(|l| *l != "x").collect();
    std::fs::write(&envs, lines[1..].join("\n")).unwrap();
    let e = load_dir(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("planted environment labels") && e.contains("training interactions"), "{e}");
    // an invariant column beyond the features
    std::fs::remove_file(&envs).unwrap();
    std::fs::write(dir.path().join("invariant_dims.json"), "[0, 99]").unwrap();
    let e = load_dir(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("planted invariant dimension 99"), "{e}");
}

#[test]
fn training_timestamps_come_from_a_rating_log_round_trip_and_bad_ones_are_named() {
    // a rating log: the loader's per-user split keeps each training click's time
    let syn = generate(&SyntheticConfig { n_users: 30, n_items: 40, ..Default::default() }).unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    painvrl::data::write_dataset(log_dir.path(), &syn.dataset, None).unwrap();
    for f in ["train.tsv", "val.tsv", "test.tsv", "test_ood.tsv", "train_env.tsv"] {
        std::fs::remove_file(log_dir.path().join(f)).unwrap();
    }
    let time_of = |u: u32, i: u32| 1_000_000 + i64::from(u) * 1000 + i64::from(i * 7 % 40);
    let mut log = String::from("user\titem\trating\ttimestamp\n");
    for (u, i) in syn.dataset.train.iter() {
        log.push_str(&format!("{u}\t{i}\t5\t{}\n", time_of(u, i)));
    }
    std::fs::write(log_dir.path().join("interactions.tsv"), log).unwrap();
    let (from_log, _) = load_dir(log_dir.path(), &LoadOptions::default()).unwrap();
    let times = from_log.train_times.clone().expect("a rating log has timestamps");
    assert!(from_log.train.iter().zip(&times).all(|((u, i), &t)| t == time_of(u, i)));
    // canonical copy: train_time.tsv beside train.tsv, read back unchanged
    let dir = tempfile::tempdir().unwrap();
    painvrl::data::write_dataset(dir.path(), &from_log, None).unwrap();
    let (ds, _) = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!((&ds.train, &ds.train_times), (&from_log.train, &from_log.train_times));
    // a timestamp that is not an integer: file and line named
    let path = dir.path().join("train_time.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen('\n', "\n12.5\n", 1)).unwrap();
    let e = load_dir(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("train_time.tsv") && e.contains("line 2") && e.contains("12.5"), "{e}");
    // one too few: the counts named
    let short: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&path, short.join("\n")).unwrap();
    let e = load_dir(dir.path(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains(&format!("{} training timestamps for {}", ds.train.len() - 1, ds.train.len())), "{e}");
    // no timestamps at all: the time-periods strategy refuses before anything trains
    let mut cfg = tiny_config();
    cfg.method = Method::Painvrl;
    cfg.envs.strategy = painvrl::env::Strategy::TimePeriods;
    let e = painvrl::pipeline::run(&synthetic(), &cfg, None, false).unwrap_err().to_string();
    assert!(e.contains("envs.strategy") && e.contains("train_time.tsv"), "{e}");
}

#[test]
fn selecting_on_val_ood_without_the_slice_is_refused() {
    let mut cfg = tiny_config();
    cfg.select_on = painvrl::config::Selection::ValOod;
    cfg.ood.val_slice = false;
    let e = cfg.validate(120).unwrap_err().to_string();
    assert!(e.contains("select_on"), "{e}");
}
