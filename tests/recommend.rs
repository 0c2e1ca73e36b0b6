//! A finished run reloads into a `Recommender`: a fresh process gives identical recommendations,
//! exported vectors reproduce the library's scores, new items rank with the catalogue, and bad
//! requests are clear errors.

use painvrl::config::{Config, Method};
use painvrl::data::{generate, npy::read_matrix, SyntheticConfig};
use painvrl::recommender::Recommender;
use std::process::Command;
use tch::Device;

mod common;
use common::small_config;

fn trained_run(method: Method) -> (tempfile::TempDir, painvrl::core::Dataset) {
    trained_run_with(method, |_| {})
}

/// [`trained_run`] with the configuration edited by `edit` first.
fn trained_run_with(method: Method, edit: impl FnOnce(&mut Config)) -> (tempfile::TempDir, painvrl::core::Dataset) {
    let ds = generate(&SyntheticConfig { n_users: 60, n_items: 90, ..Default::default() }).unwrap().dataset;
    // the shared small configuration, shorter still: one pre-training epoch and one EM
    // iteration, the default training batch, small mask batches
    let mut cfg = small_config(method);
    cfg.pretrain_epochs = Some(1);
    cfg.train.batch_size = Config::default().train.batch_size;
    cfg.envs.max_iterations = 1;
    cfg.mask.batch_size = 32;
    edit(&mut cfg);
    let dir = tempfile::tempdir().unwrap();
    painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false).unwrap();
    (dir, ds)
}

#[test]
fn fresh_process_gives_identical_recommendations() {
    for method in [Method::Erm, Method::Painvrl] {
        let (dir, _) = trained_run(method);
        let rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
        let users: Vec<u32> = (0..10).collect();
        let lib = rec.recommend(&users, 5, true).unwrap();
        let ufile = dir.path().join("users.txt");
        std::fs::write(&ufile, users.iter().map(|u| format!("{u}\n")).collect::<String>()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_painvrl"))
            .args(["recommend", "--run"])
            .arg(dir.path())
            .arg("--users")
            .arg(&ufile)
            .args(["--k", "5", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (u, l) in lib.iter().enumerate() {
            let cli: Vec<u64> = v[u]["items"].as_array().unwrap().iter().map(|x| x["item"].as_u64().unwrap()).collect();
            let ours: Vec<u64> = l.iter().map(|s| s.item as u64).collect();
            assert_eq!(cli, ours, "{method:?} user {u}");
        }
    }
}

#[test]
fn exported_vectors_reproduce_scores() {
    let (dir, _) = trained_run(Method::Painvrl);
    let rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
    let exp = dir.path().join("export");
    rec.export_npy(&exp).unwrap();
    let (nu, d, u) = read_matrix(&exp.join("users.npy")).unwrap();
    let (ni, d2, i) = read_matrix(&exp.join("items.npy")).unwrap();
    assert_eq!((nu, ni, d), (60, 90, d2));
    for f in ["proj.npy", "mask.npy", "convert.w_inv.npy", "convert.att.npy", "manifest.json"] {
        assert!(exp.join(f).exists(), "{f}");
    }
    for user in [0u32, 7, 59] {
        let items: Vec<u32> = (0..90).collect();
        let lib = rec.score(user, &items).unwrap();
        for (k, &s) in lib.iter().enumerate() {
            let dot: f32 = (0..d).map(|c| u[user as usize * d + c] * i[k * d + c]).sum();
            assert!((dot - s).abs() < 1e-5, "user {user} item {k}: {dot} vs {s}");
        }
    }
}

#[test]
fn new_items_rank_with_the_catalogue_and_bad_rows_are_refused() {
    let (dir, ds) = trained_run(Method::Painvrl);
    let mut rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
    let fresh = ds.features.select_rows(&[3, 5, 8]);
    let ids = rec.add_items(&fresh).unwrap();
    assert_eq!(ids, 90..93);
    let top = rec.recommend(&[0], 93, true).unwrap();
    assert!(top[0].iter().any(|s| s.item >= 90), "new items are ranked");
    let wrong =
        painvrl::core::ItemFeatures::new(vec![painvrl::core::Modality { name: "a".into(), dim: 3 }], 1, vec![0.0; 3])
            .unwrap();
    assert!(rec.add_items(&wrong).unwrap_err().to_string().contains("modalities"));
}

#[test]
fn new_items_are_embedded_at_the_models_variant_weight() {
    let (dir, ds) = trained_run_with(Method::Painvrl, |c| c.inference_variant_weight = 0.25);
    let manifest = dir.path().join("model.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["variant_weight"], 0.25);
    let fresh = ds.features.select_rows(&[3, 5, 8]);
    // ten users' scores for the new items when the manifest names the variant weight `gamma`
    let new_item_scores = |gamma: Option<f64>| {
        let mut v = saved.clone();
        match gamma {
            Some(g) => v["variant_weight"] = serde_json::json!(g),
            // a manifest from before the field: the model as trained
            None => drop(v.as_object_mut().unwrap().remove("variant_weight")),
        }
        std::fs::write(&manifest, serde_json::to_string(&v).unwrap()).unwrap();
        let mut rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
        let new_ids: Vec<u32> = rec.add_items(&fresh).unwrap().collect();
        (0..10).flat_map(|u| rec.score(u, &new_ids).unwrap()).collect::<Vec<f32>>()
    };
    let (at_quarter, at_zero, at_one) =
        (new_item_scores(Some(0.25)), new_item_scores(Some(0.0)), new_item_scores(Some(1.0)));
    assert_eq!(new_item_scores(None), at_one);
    // the scores are linear in the variant weight: a quarter of the way from 0 to 1
    let largest_gap = at_zero.iter().zip(&at_one).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(largest_gap > 1e-4, "the variant half moved no score ({largest_gap})");
    for (k, ((&q, &z), &o)) in at_quarter.iter().zip(&at_zero).zip(&at_one).enumerate() {
        assert!((q - (0.75 * z + 0.25 * o)).abs() < 1e-5, "score {k}: {q} against {z} and {o}");
    }
    // a weight outside [0, 1] is refused, naming the file and the field
    let mut v = saved.clone();
    v["variant_weight"] = serde_json::json!(2.0);
    std::fs::write(&manifest, serde_json::to_string(&v).unwrap()).unwrap();
    let e = Recommender::load(dir.path(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("model.json") && e.contains("variant_weight"), "{e}");
}

#[test]
fn bad_requests_are_clear_errors() {
    let (dir, _) = trained_run(Method::Erm);
    let rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
    assert!(rec.recommend(&[60], 5, true).unwrap_err().to_string().contains("user 60"));
    assert!(rec.recommend(&[0], 0, true).unwrap_err().to_string().contains("k"));
    assert!(rec.recommend(&[0], 91, true).unwrap_err().to_string().contains("91"));
    assert!(rec.score(0, &[90]).unwrap_err().to_string().contains("item 90"));
    let m = dir.path().join("model.json");
    let text = std::fs::read_to_string(&m).unwrap().replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&m, text).unwrap();
    let e = Recommender::load(dir.path(), Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("version"), "{e}");
}

#[test]
fn an_adjusted_copy_scores_what_the_post_hoc_adjustment_scores_and_bad_requests_are_refused() {
    let (dir, ds) = trained_run(Method::Painvrl);
    let out = tempfile::tempdir().unwrap();
    let adjusted_dir = out.path().join("adjusted");
    let o = Command::new(env!("CARGO_BIN_EXE_painvrl"))
        .args(["adjust", "--beta", "0.5", "--run"])
        .arg(dir.path())
        .arg("--out")
        .arg(&adjusted_dir)
        .arg("--data")
        .arg({
            let data = out.path().join("data");
            painvrl::data::write_dataset(&data, &ds, None).unwrap();
            data
        })
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plain = Recommender::load(dir.path(), Device::Cpu).unwrap();
    let mut adjusted = Recommender::load(&adjusted_dir, Device::Cpu).unwrap();
    assert_eq!(adjusted.manifest().method, "painvrl+posthoc");
    assert_eq!(adjusted.manifest().dim, plain.manifest().dim + 1);
    // every score is the plain score minus β·ln(1 + training popularity), computed here
    let popularity = ds.train.item_degrees(ds.n_items);
    let items: Vec<u32> = (0..90).collect();
    for user in [0u32, 13, 59] {
        let (a, p) = (adjusted.score(user, &items).unwrap(), plain.score(user, &items).unwrap());
        for (i, (&a, &p)) in a.iter().zip(&p).enumerate() {
            let want = p - 0.5 * (1.0 + popularity[i] as f32).ln();
            assert!((a - want).abs() < 1e-5, "user {user} item {i}: {a} vs {want}");
        }
    }
    // the same metrics as the baseline's score-level adjustment of the plain model
    let scorer = plain.scorer();
    let by_score = painvrl::reference::PopularityAdjusted::new(&scorer, &popularity, 0.5).unwrap();
    let recall = |s: &dyn painvrl::core::BlockScorer| {
        let m = painvrl::report::evaluate_splits(s, &ds, ds.n_users, &Default::default()).unwrap();
        m.into_iter().map(|(n, r)| (n, r.values["recall@20"])).collect::<Vec<_>>()
    };
    assert_eq!(recall(&adjusted.scorer()), recall(&by_score));
    // new items still fit: a new item has no training popularity, so its vector ends in a zero
    let fresh = ds.features.select_rows(&[3, 5]);
    assert_eq!(adjusted.add_items(&fresh).unwrap(), 90..92);
    // bad requests: a negative β, an output that holds a model, a catalogue of another size
    let e = painvrl::recommender::adjust_run(dir.path(), &popularity, -1.0, &out.path().join("x"));
    assert!(e.unwrap_err().to_string().contains("beta"));
    let e = painvrl::recommender::adjust_run(dir.path(), &popularity, 0.1, &adjusted_dir);
    assert!(e.unwrap_err().to_string().contains("already holds a model"));
    let e = painvrl::recommender::adjust_run(dir.path(), &popularity[..89], 0.1, &out.path().join("y"));
    assert!(e.unwrap_err().to_string().contains("89 items"));
}

#[test]
fn a_blended_copy_ranks_as_the_blend_of_its_scores_and_bad_requests_are_refused() {
    use painvrl::core::{BlockScorer, UserItems};
    let (dir, ds) = trained_run(Method::Erm);
    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("data");
    painvrl::data::write_dataset(&data, &ds, None).unwrap();
    let blended_dir = out.path().join("blended");
    let o = Command::new(env!("CARGO_BIN_EXE_painvrl"))
        .args(["blend", "--weights", "0.4", "--run"])
        .arg(dir.path())
        .arg("--out")
        .arg(&blended_dir)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: painvrl::blend::BlendReport =
        serde_json::from_str(&std::fs::read_to_string(blended_dir.join("blend.json")).unwrap()).unwrap();
    assert_eq!(report.weight, 0.4);
    let plain = Recommender::load(dir.path(), Device::Cpu).unwrap();
    let mut blended = Recommender::load(&blended_dir, Device::Cpu).unwrap();
    assert_eq!(blended.manifest().method, "erm+ease");
    assert_eq!(blended.manifest().dim, plain.manifest().dim + 90);
    // the blend computed here in f64: 0.6·z(model) + 0.4·z(EASE), z over the catalogue per user;
    // the copy's scores may differ from it by a per-user constant only
    let train = UserItems::build(ds.n_users, &[&ds.train]);
    let ease = painvrl::reference::ItemItem::ease(&train, 90, report.ease_lambda, Device::Cpu, None).unwrap();
    let items: Vec<u32> = (0..90).collect();
    let z = |xs: Vec<f64>| {
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        xs.into_iter().map(|x| (x - m) / sd).collect::<Vec<_>>()
    };
    for user in [0u32, 13, 59] {
        let model = z(plain.score(user, &items).unwrap().into_iter().map(f64::from).collect());
        let row = ease.score_block(&tch::Tensor::from_slice(&[user as i64])).to_kind(tch::Kind::Double);
        let ease_row = z(Vec::<f64>::try_from(row.reshape([-1])).unwrap());
        let got = blended.score(user, &items).unwrap();
        let offsets: Vec<f64> = (0..90).map(|i| got[i] as f64 - (0.6 * model[i] + 0.4 * ease_row[i])).collect();
        for d in &offsets {
            assert!((d - offsets[0]).abs() < 1e-4, "user {user}: offsets {} and {d}", offsets[0]);
        }
    }
    // the saved copy's metrics are the ones blend.json reports for its weight
    let m = painvrl::report::evaluate_splits(&blended.scorer(), &ds, ds.n_users, &Default::default()).unwrap();
    for (split, metrics) in m {
        assert_eq!(metrics.values["recall@20"], report.chosen().unwrap().metrics[split]["recall@20"], "{split}");
    }
    // new items still fit: their EASE block is zero
    let fresh = ds.features.select_rows(&[3, 5]);
    assert_eq!(blended.add_items(&fresh).unwrap(), 90..92);
    // over a grid the weight with the best validation NDCG@20 is chosen (ties keep the smaller)
    let cfg = small_config(Method::Erm);
    let grid = painvrl::blend::blend_run(
        dir.path(),
        &ds,
        &cfg,
        &[1.0, 0.0, 0.5],
        painvrl::bench::GridChoice::BestValidation,
        &out.path().join("grid"),
    )
    .unwrap();
    let weights: Vec<f64> = grid.points.iter().map(|p| p.weight).collect();
    assert_eq!(weights, [0.0, 0.5, 1.0]);
    let val = |w: f64| grid.points.iter().find(|p| p.weight == w).unwrap().metrics["val"]["ndcg@20"];
    let best = weights.iter().copied().fold(f64::NEG_INFINITY, |b, w| b.max(val(w)));
    assert_eq!(grid.weight, *weights.iter().find(|&&w| val(w) == best).unwrap());
    // bad requests: a weight outside [0, 1], an output that holds a model, another catalogue,
    // a tolerance outside [0, 1)
    let blend = |weights: &[f64], ds: &painvrl::core::Dataset, out: &std::path::Path| {
        painvrl::blend::blend_run(dir.path(), ds, &cfg, weights, painvrl::bench::GridChoice::BestValidation, out)
            .unwrap_err()
            .to_string()
    };
    assert!(blend(&[0.2, 1.5], &ds, &out.path().join("x")).contains("1.5 is not in [0, 1]"));
    assert!(blend(&[], &ds, &out.path().join("x")).contains("at least one weight"));
    assert!(blend(&[0.5], &ds, &blended_dir).contains("already holds a model"));
    let other = generate(&SyntheticConfig { n_users: 60, n_items: 80, ..Default::default() }).unwrap().dataset;
    assert!(blend(&[0.5], &other, &out.path().join("y")).contains("60 users × 90 items, the dataset 60 × 80"));
    let o = Command::new(env!("CARGO_BIN_EXE_painvrl"))
        .args(["blend", "--iid-tolerance", "1.5", "--run"])
        .arg(dir.path())
        .arg("--out")
        .arg(out.path().join("z"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--iid-tolerance 1.5"));
    assert!(!out.path().join("z").exists(), "a refused blend writes nothing");
}
