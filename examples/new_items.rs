//! New items on bundled TikTok: 10 % of the items (seeded) are held out of training entirely —
//! all their interactions removed — and then ranked from their content alone, among themselves,
//! for the users who interacted with them. Prints Recall@20 and NDCG@20 per method.
//!
//! ```text
//! cargo run --release --example new_items [-- --data DIR --fraction 0.1]
//! ```

use painvrl::config::{Config, Method};
use painvrl::core::metrics::{hit_vector, MetricAccumulator};
use painvrl::core::{Interactions, UserItems};
use painvrl::data::{load_dir, LoadOptions};
use painvrl::recommender::Recommender;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashSet;
use std::path::PathBuf;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let data = arg(&args, "--data")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/tiktok"));
    let fraction: f64 = arg(&args, "--fraction").map_or(Ok(0.1), |s| s.parse())?;
    let (mut ds, _) = load_dir(&data, &LoadOptions::default())?;
    // hold out a seeded fraction of the items that have interactions
    let trained: HashSet<u32> = ds.train.items.iter().copied().collect();
    let mut items: Vec<u32> = (0..ds.n_items as u32).filter(|i| trained.contains(i)).collect();
    items.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let held: Vec<u32> = items[..(items.len() as f64 * fraction) as usize].to_vec();
    let held_set: HashSet<u32> = held.iter().copied().collect();
    let mut new_item_test = Interactions::default();
    for split in [&mut ds.train, &mut ds.val, &mut ds.test] {
        let kept = Interactions::from_pairs(split.iter().filter(|(_, i)| !held_set.contains(i)));
        for (u, i) in split.iter().filter(|(_, i)| held_set.contains(i)) {
            new_item_test.push(u, i);
        }
        *split = kept;
    }
    println!("{}\nheld out {} items with {} interactions\n", ds.summary(), held.len(), new_item_test.len());
    // relevance in the held-out item space: position k stands for held[k]
    let pos: std::collections::HashMap<u32, u32> = held.iter().enumerate().map(|(k, &i)| (i, k as u32)).collect();
    let local = Interactions::from_pairs(new_item_test.iter().map(|(u, i)| (u, pos[&i])));
    let relevant = UserItems::build(ds.n_users, &[&local]);
    let new_rows = ds.features.select_rows(&held.iter().map(|&i| i as usize).collect::<Vec<_>>());
    println!("{:<10} {:>10} {:>10} {:>8}", "method", "R@20 new", "N@20 new", "users");
    for method in [Method::Erm, Method::Invrl, Method::Painvrl] {
        let mut cfg = Config { method, threads: 2, ..Default::default() };
        cfg.train.progress = false;
        let dir = tempfile::tempdir()?;
        painvrl::pipeline::run(&ds, &cfg, Some(dir.path()), false)?;
        let mut rec = Recommender::load(dir.path(), tch::Device::Cpu)?;
        let ids = rec.add_items(&new_rows)?;
        let new_ids: Vec<u32> = ids.collect();
        let mut acc = MetricAccumulator::new(&[20]);
        for u in 0..ds.n_users {
            let rel = relevant.items_of(u);
            if rel.is_empty() {
                continue;
            }
            let scores = rec.score(u as u32, &new_ids)?;
            let ranked = painvrl::core::metrics::rank_top_k(&scores, &[], 20);
            acc.add_user(&hit_vector(&ranked, rel), rel.len());
        }
        let m = acc.finish();
        println!(
            "{:<10} {:>10.4} {:>10.4} {:>8}",
            method.name(),
            m.get("recall", 20).unwrap_or(0.0),
            m.get("ndcg", 20).unwrap_or(0.0),
            m.users_evaluated
        );
    }
    Ok(())
}
