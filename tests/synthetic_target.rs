//! PaInvRL against ERM on the synthetic generator's planted shift (issue 8's target): averaged
//! over seeds 0–4, with the planted environments, `painvrl`'s test_ood and test Recall@20
//! against `erm`'s. Issue 8 asked for +5 % OOD at test Recall@20 within 3 % of `erm`'s; the
//! history below is how that target came and went. The IID bound held
//! only while ERM was stopped at 30 epochs (session 9: PaInvRL 4.4 % below the converged ERM);
//! the OOD margin fell from +10.9 % to +4.1 % when the final training's start moved from the
//! halved pre-trained content to 0.75 of it (`final_warm_start_scale`, chosen on validation over
//! six data sets, session 10). Since mask learning ends with projection-only steps
//! (`mask.projection_only_steps`, chosen on validation over six data sets, session 13) the
//! final training's start wins on validation on every seed here and the OOD margin was gone
//! (−2.7 %, IID −1.8 %; it was +4.1 % at −4.2 %). Since mask learning's penalty is IRMv1
//! centred across environments (session 18) it is back and larger: +16.5 % OOD at −4.7 % IID.
//! Since UltraGCN's final training starts from a pre-training until patience while its mask
//! still comes from 10 epochs (`mask_pretrain_epochs`, chosen on validation over seven
//! synthetic settings, session 30) the OOD margin is smaller and IID closer. Since session 31
//! the five sets go through the files `painvrl synth` writes and `painvrl train` reads, so the
//! test measures what the README's protocol gives: +7.1 % OOD at −0.2 % IID, issue 8's target
//! met, and the test asserts it (docs/method.md, *The mask from an early model, the final start
//! from a converged one*, and *The planted shift through synth's files*).
//! Default configuration (two environments), CPU, one thread (bitwise reproducible).
//!
//! Each (method, seed) run is its own process (this binary, running the ignored `one_run` test),
//! as many at a time as there are cores: libtorch's random generator is process-wide, so runs
//! in threads of one process would draw from each other's stream; processes keep every run
//! exactly what it is when run alone.

use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::{generate, load_dir, write_dataset, LoadOptions, SyntheticConfig};
use painvrl::env::GivenEnvironments;
use painvrl::pipeline::Run;
use std::process::Command;

mod common;

/// The planted set of `seed` as `painvrl synth --seed S` writes it and `painvrl train` reads it:
/// through the files, since loading L2-normalises each modality's part of an item's features
/// and the generator's own rows are not unit rows (on the in-process set ERM scored 0.2196 /
/// 0.0515 IID / OOD, through the files 0.2115 / 0.0508; session 30).
fn planted_set(seed: u64) -> (painvrl::core::Dataset, Vec<u32>) {
    let syn = generate(&SyntheticConfig { seed, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &syn.dataset, None).unwrap();
    let (dataset, _) = load_dir(dir.path(), &LoadOptions::default()).unwrap();
    let labels = dataset.truth.train_envs.clone().expect("synth writes the planted environments");
    assert_eq!(labels, syn.train_envs);
    (dataset, labels)
}

/// test and test_ood Recall@20 of `method` with `seed`, in this process.
fn recall(method: Method, seed: u64) -> (f64, f64) {
    let (dataset, labels) = planted_set(seed);
    let mut cfg = Config { method, seed, device: DeviceSpec::Cpu, threads: 1, ..Default::default() };
    // the target was measured with UltraGCN (the default backbone until the baselines issue)
    cfg.backbone.kind = painvrl::graph::BackboneKind::Ultragcn;
    cfg.envs.n_envs = 2;
    cfg.train.progress = false;
    // with the planted environments the final penalty is what carries the target (docs/method.md)
    cfg.final_objective = painvrl::config::FinalObjective::Pareto;
    let given = Box::new(GivenEnvironments { labels });
    let r = Run::new(&dataset, &cfg).inference(given).execute().unwrap();
    (r.metrics["test"]["recall@20"], r.metrics["test_ood"]["recall@20"])
}

#[test]
#[ignore = "one run of the target below, in its own process; reads PAINVRL_TARGET_RUN = METHOD:SEED"]
fn one_run() {
    let spec = std::env::var("PAINVRL_TARGET_RUN").expect("PAINVRL_TARGET_RUN = METHOD:SEED");
    let (method, seed) = spec.split_once(':').expect("METHOD:SEED");
    let (iid, ood) = recall(method.parse().unwrap(), seed.parse().unwrap());
    println!("RECALL {iid:.17e} {ood:.17e}");
}

/// Runs every (method, seed) in a child process (this binary's `one_run`); the recalls in input
/// order.
fn recalls_in_processes(runs: &[(Method, u64)]) -> Vec<(f64, f64)> {
    let commands = runs
        .iter()
        .map(|(method, seed)| {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["one_run", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env("PAINVRL_TARGET_RUN", format!("{}:{seed}", method.name()));
            (format!("{} seed {seed}", method.name()), cmd)
        })
        .collect();
    let outputs = common::outputs_in_parallel(commands);
    runs.iter()
        .zip(outputs)
        .map(|((method, seed), text)| {
            let line = text.lines().find_map(|l| l.split_once("RECALL ").map(|x| x.1)).expect("a RECALL line");
            let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            eprintln!("{} seed {seed}: IID {:.4} OOD {:.4}", method.name(), v[0], v[1]);
            (v[0], v[1])
        })
        .collect()
}

/// Ten full runs (2 methods × 5 seeds): the acceptance tier (CI runs it; `cargo test
/// --workspace -- --ignored acceptance::` runs it by hand), outside the quick-start test command.
mod acceptance {
    use super::*;

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn painvrl_gains_out_of_distribution_on_the_planted_shift() {
        let seeds = [0, 1, 2, 3, 4];
        let runs: Vec<(Method, u64)> =
            [Method::Erm, Method::Painvrl].iter().flat_map(|&m| seeds.iter().map(move |&s| (m, s))).collect();
        let got = recalls_in_processes(&runs);
        let mean = |m: usize| {
            let part = &got[m * seeds.len()..(m + 1) * seeds.len()];
            let n = seeds.len() as f64;
            (part.iter().map(|r| r.0).sum::<f64>() / n, part.iter().map(|r| r.1).sum::<f64>() / n)
        };
        let ((erm_iid, erm_ood), (pa_iid, pa_ood)) = (mean(0), mean(1));
        eprintln!("mean: erm IID {erm_iid:.4} OOD {erm_ood:.4}; painvrl IID {pa_iid:.4} OOD {pa_ood:.4}");
        // measured 2026-12-02, session 31, through synth's files: erm 0.2115 / 0.0508, painvrl
        // 0.2111 / 0.0544 (IID / OOD; +7.1 % OOD, −0.2 % IID), the CLI's numbers to the digit.
        // Before, on the in-process (not normalised) sets: session 30 (UltraGCN's split
        // pre-training) erm 0.2196 / 0.0515, painvrl 0.2133 / 0.0540 (+4.9 %, −2.9 %).
        // Session 18 (the centred mask penalty): painvrl 0.2092 / 0.0600 (+16.5 % OOD, −4.7 %
        // IID). Session 13 (projection-only steps, plain IRMv1): painvrl 0.2157 / 0.0501
        // (−2.7 % OOD, −1.8 % IID). Session 10 (final_warm_start_scale 0.75): painvrl 0.2104 /
        // 0.0536 (+4.1 % OOD, −4.2 % IID); session 9, with the final training starting from the
        // halved content (scale ½): 0.2100 / 0.0571 (+10.9 %).
        // The mean is the claim: issue 8's target, +5 % OOD at IID within 3 %
        assert!(pa_ood >= 1.05 * erm_ood, "painvrl OOD {pa_ood:.4} is not 5 % above erm's {erm_ood:.4}");
        assert!(pa_iid >= 0.97 * erm_iid, "painvrl IID {pa_iid:.4} is more than 3 % below erm's {erm_iid:.4}");
    }
}
