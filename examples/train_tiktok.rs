//! Trains `erm`, `invrl` and `painvrl` on the bundled TikTok data (or `--data DIR`), builds a
//! popularity-intervened OOD test set when none is given, and prints IID and OOD Recall@20 /
//! NDCG@20 with timings.
//!
//! ```text
//! cargo run --release --example train_tiktok [-- --data DIR --config FILE.toml --device cpu --epochs N --backbone B --ablations | --methods M1,M2]
//! ```
//!
//! `--ablations` adds PaInvRL with random environments, with fixed weights and with the
//! invariant representation only; `--methods` picks methods by name.

use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::{describe, load_dir, prepare_ood, LoadOptions};
use std::path::PathBuf;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let data = arg(&args, "--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/tiktok"));
    let mut base = match arg(&args, "--config") {
        Some(f) => Config::from_toml_file(std::path::Path::new(&f))?,
        None => Config::default(),
    };
    if base.threads == 0 {
        base.threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    }
    if let Some(d) = arg(&args, "--device") {
        base.device = d.parse::<DeviceSpec>()?;
    }
    if let Some(e) = arg(&args, "--epochs") {
        base.train.epochs = e.parse()?;
    }
    if let Some(b) = arg(&args, "--backbone") {
        base.backbone.kind = b.parse()?;
    }
    let (mut ds, report) = load_dir(&data, &LoadOptions::default())?;
    println!("{}\n{}", ds.summary(), describe(&report));
    if let Some(info) = prepare_ood(&mut ds, &base.ood, base.split_seed)? {
        println!("built a popularity-intervened test_ood: {} interactions ({})", info.size, info.params);
    }
    println!(
        "device {:?}, backbone {:?}, {} libtorch threads\n",
        base.device.resolve()?,
        base.backbone.kind,
        base.threads
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "method", "R@20 IID", "N@20 IID", "R@20 OOD", "N@20 OOD", "seconds"
    );
    let methods = if let Some(list) = arg(&args, "--methods") {
        list.split(',').map(str::parse).collect::<Result<Vec<Method>, _>>()?
    } else if args.iter().any(|a| a == "--ablations") {
        Method::INVARIANCE.to_vec()
    } else {
        vec![Method::Erm, Method::Invrl, Method::Painvrl]
    };
    for method in methods {
        let cfg = Config { method, ..base.clone() };
        let r = painvrl::pipeline::run(&ds, &cfg, None, false)?;
        let get = |split: &str, key: &str| r.metrics.get(split).and_then(|m| m.get(key)).copied().unwrap_or(f64::NAN);
        println!(
            "{:<24} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9.1}",
            method.name(),
            get("test", "recall@20"),
            get("test", "ndcg@20"),
            get("test_ood", "recall@20"),
            get("test_ood", "ndcg@20"),
            r.timings["total"]
        );
    }
    Ok(())
}
