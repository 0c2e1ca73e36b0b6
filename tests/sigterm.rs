//! Killing `painvrl train` with SIGTERM mid-run leaves a resumable checkpoint; `--resume`
//! finishes with the metrics of an uninterrupted run (CPU, same seed).

use painvrl::data::{generate, write_dataset, SyntheticConfig};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn painvrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_painvrl"))
}

fn metrics(run: &Path) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    r["metrics"].clone()
}

#[test]
fn sigterm_then_resume_reproduces_the_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ds = generate(&SyntheticConfig { n_users: 300, n_items: 400, ..Default::default() }).unwrap().dataset;
    write_dataset(&data, &ds, None).unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "method = \"erm\"\nthreads = 1\ndevice = \"cpu\"\n[train]\nepochs = 20\npatience = 1000\nbatch_size = 64\nprogress = false\n",
    )
    .unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut c = painvrl();
        c.args(["train", "--data"]).arg(&data).arg("--config").arg(&cfg).arg("--out").arg(out).args(extra);
        c
    };

    let full = tmp.path().join("full");
    assert!(train(&full, &[]).status().unwrap().success());

    let cut = tmp.path().join("cut");
    let mut child = train(&cut, &[]).spawn().unwrap();
    let ckpt = cut.join("pretrain.checkpoint.safetensors");
    let t0 = Instant::now();
    while !ckpt.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGTERM through the shell's kill, to stay free of libc bindings
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        // the run finished before the signal landed: nothing to resume, but nothing lost either
        assert_eq!(metrics(&cut), metrics(&full));
        return;
    }
    assert!(!cut.join("report.json").exists(), "an interrupted run has no report");
    assert!(train(&cut, &["--resume"]).status().unwrap().success());
    assert_eq!(metrics(&cut), metrics(&full));
}

#[test]
fn refuses_to_overwrite_a_finished_run_or_write_into_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let o = painvrl()
        .args(["train", "--data", concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiktok"), "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is a file"));
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("report.json"), "{}").unwrap();
    let o = painvrl()
        .args(["train", "--data", concat!(env!("CARGO_MANIFEST_DIR"), "/data/tiktok"), "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"));
}
