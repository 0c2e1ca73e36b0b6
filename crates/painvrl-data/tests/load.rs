//! Loading the bundled real datasets and rejecting bad input directories.

use painvrl_data::npy::write_matrix;
use painvrl_data::{load_dir, LoadOptions};
use std::path::{Path, PathBuf};

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)
}

fn meta(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(bundled(name).join("meta.json")).unwrap()).unwrap()
}

#[test]
fn tiktok_counts_match_meta() {
    let m = meta("tiktok");
    let (ds, report) = load_dir(&bundled("tiktok"), &LoadOptions::default()).unwrap();
    assert_eq!(report.layout, "canonical");
    assert_eq!(ds.n_users as u64, m["n_users"].as_u64().unwrap());
    assert_eq!(ds.n_items as u64, m["n_items"].as_u64().unwrap());
    assert_eq!((ds.train.len() + report.duplicates) as u64, m["train_interactions"].as_u64().unwrap());
    assert_eq!(ds.val.len() as u64, m["val_interactions"].as_u64().unwrap());
    assert_eq!(ds.test.len() as u64, m["test_interactions"].as_u64().unwrap());
    let names: Vec<_> = ds.features.modalities().iter().map(|m| (m.name.as_str(), m.dim)).collect();
    assert_eq!(names, vec![("audio", 128), ("image", 128)]);
    // rows are unit-norm per modality after loading
    let r = &ds.features.row(0)[..128];
    let n: f32 = r.iter().map(|x| x * x).sum();
    assert!((n - 1.0).abs() < 1e-3 || n == 0.0);
}

#[test]
fn movielens_rating_log_counts_match_meta() {
    let m = meta("ml-latest-small");
    let (ds, report) = load_dir(&bundled("ml-latest-small"), &LoadOptions::default()).unwrap();
    assert_eq!(report.layout, "ratings");
    assert_eq!(ds.n_items as u64, m["n_items"].as_u64().unwrap());
    assert!(ds.n_users as u64 <= m["n_users"].as_u64().unwrap());
    let positives = ds.train.len() + ds.val.len() + ds.test.len() + report.duplicates;
    assert_eq!(positives as u64, m["n_positive_ge4"].as_u64().unwrap());
    assert_eq!(positives + report.below_threshold, m["n_ratings"].as_u64().unwrap() as usize);
    let dims: Vec<_> = ds.features.modalities().iter().map(|m| m.dim).collect();
    assert_eq!(dims, vec![20, 384]);
}

/// A tiny valid canonical directory: 3 users, 4 items, one 2-d modality.
fn tiny(dir: &Path) {
    std::fs::write(dir.join("train.tsv"), "0\t0\n0\t1\n1\t2\n2\t3\n").unwrap();
    std::fs::write(dir.join("val.tsv"), "0\t2\n").unwrap();
    std::fs::write(dir.join("test.tsv"), "1\t0\n").unwrap();
    write_matrix(&dir.join("image_feat.npy"), 4, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.5]).unwrap();
}

fn load_err(dir: &Path) -> String {
    load_dir(dir, &LoadOptions::default()).unwrap_err().to_string()
}

#[test]
fn tiny_directory_loads() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    let (ds, _) = load_dir(d.path(), &LoadOptions::default()).unwrap();
    assert_eq!((ds.n_users, ds.n_items, ds.train.len()), (3, 4, 4));
}

#[test]
fn missing_split_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    std::fs::remove_file(d.path().join("val.tsv")).unwrap();
    assert!(load_err(d.path()).contains("val.tsv"));
}

#[test]
fn missing_features_are_explained() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    std::fs::remove_file(d.path().join("image_feat.npy")).unwrap();
    assert!(load_err(d.path()).contains("_feat.npy"));
}

#[test]
fn item_beyond_feature_rows_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    std::fs::write(d.path().join("test.tsv"), "1\t9\n").unwrap();
    let e = load_err(d.path());
    assert!(e.contains("item 9") && e.contains("test.tsv, line 1"), "{e}");
    // the line is the file's own: header, comment and a dropped duplicate are counted
    std::fs::write(d.path().join("train.tsv"), "user\titem\n0\t0\n# note\n0\t0\n1\t2\n2\t4\n").unwrap();
    let e = load_err(d.path());
    assert!(e.contains("train.tsv, line 6") && e.contains("item 4 (user 2)") && e.contains("4 rows"), "{e}");
}

#[test]
fn modalities_with_different_rows_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    write_matrix(&d.path().join("audio_feat.npy"), 3, 1, &[1.0, 2.0, 3.0]).unwrap();
    assert!(load_err(d.path()).contains("disagree"));
}

#[test]
fn nan_features_name_modality_and_row() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    write_matrix(&d.path().join("image_feat.npy"), 4, 2, &[1.0, 0.0, 0.0, 1.0, f32::NAN, 1.0, 0.5, 0.5]).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("image") && e.contains("row 2"), "{e}");
}

#[test]
fn empty_train_split_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    std::fs::write(d.path().join("train.tsv"), "user\titem\n").unwrap();
    assert!(load_err(d.path()).contains("empty training split"));
}

#[test]
fn truncated_npy_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    let p = d.path().join("image_feat.npy");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("image_feat.npy") && e.contains("truncated"), "{e}");
}

#[test]
fn duplicates_and_cold_users_are_counted() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path());
    std::fs::write(d.path().join("train.tsv"), "0\t0\n0\t0\n1\t2\n2\t3\n").unwrap();
    std::fs::write(d.path().join("test.tsv"), "4\t0\n").unwrap();
    let (ds, r) = load_dir(d.path(), &LoadOptions::default()).unwrap();
    assert_eq!((r.duplicates, r.cold_users, ds.n_users), (1, 1, 5));
}

#[test]
fn missing_directory_is_named() {
    assert!(load_err(Path::new("/no/such/dataset")).contains("/no/such/dataset"));
}
