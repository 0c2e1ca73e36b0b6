//! Issue #19's targets on the synthetic shift families, run as a user would: `painvrl synth
//! --family F`, then `painvrl train` of `erm` and `painvrl` with the default configuration
//! (LightGCN, taste-consistency environments) for training seeds 0–2, one thread per run. On
//! the mean of the three seeds PaInvRL must keep test Recall@20 ≥ 0.98× ERM's, beat ERM's
//! test_ood Recall@20 by the family's factor, and rank the planted invariant dimensions above
//! the variant ones with its mask (from `report.json`'s diagnostics): ROC-AUC ≥ 0.85, the
//! issue's, since taste-consistency environments became the default (session 37). Under
//! heterogeneous identification, the default until then, the centred penalty's mask ranked at
//! 0.77 on both families (session 18); two of its environments (`envs.n_envs = 2`) rank at
//! 0.97 / 0.94 here, but so do two random ones: the sample a mask step draws decides, not the
//! labels (session 19, the second quick test). With two such environments, a binary mask and γ
//! chosen on validation (`variant_weight_tolerance`), the two last acceptance tests assert the
//! 0.85 on both families and, on `exposure`, OOD recall 1.3× ERM's (session 26). On
//! `affinity`, γ chosen by the worse validation environment meets both targets (session 37).
//!
//! The factor is the 1.10× on both families. On `exposure` it held only while ERM was
//! stopped at 30 epochs (1.52×) and fell to 1.07× against the converged ERM (session 9); since
//! the final training starts from 0.75 of the pre-trained content instead of half of it
//! (`final_warm_start_scale`, session 10) it is 1.21× on these seeds (1.29× over eight seeds,
//! docs/method.md). On `affinity` the defaults miss it (1.15× / 1.02× of ERM-VBPR, session 36;
//! 1.07× / 0.97× of ERM-UltraGCN, the best ERM row on validation once session 38 ran it here);
//! its test chooses γ by the worse validation environment. The tests compare with ERM on the
//! same backbone, LightGCN.
//!
//! The target tests train 3 seeds × 2 methods in full (ERM's three runs once per family, shared
//! by the family's two tests) and form the acceptance tier
//! (`mod acceptance`, ignored by the quick-start `cargo test --workspace`; CI runs them with
//! `cargo test --workspace -- --ignored acceptance::`). The mask tests below train only the
//! mask and run in the quick tier; they name `mask.risk = "pointwise"`, the logistic risk they
//! were measured with (sessions 18–21), so that they keep documenting what it does on LightGCN
//! whatever the default becomes.
//!
//! Each run is its own process, as many at a time as there are cores, so every run is exactly
//! what it is when run alone (libtorch's random generator is process-wide).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod common;

const SEEDS: [u64; 3] = [0, 1, 2];

/// The defaults, on one thread.
const ONE_THREAD: &str = "threads = 1\n";

/// What one `painvrl train` reported.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    iid: f64,
    ood: f64,
    mask_auc: Option<f64>,
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_painvrl"))
}

/// `painvrl train --method M --seed S --data D --config C --out O`.
fn train(method: &str, seed: u64, data: &Path, config: &Path, out: &Path) -> Command {
    let mut cmd = cli();
    cmd.args(["train", "--method", method, "--seed", &seed.to_string(), "--data"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out);
    cmd
}

/// Reads the recalls and the mask's ROC-AUC from the report `run` wrote.
fn outcome(run: &Path) -> Outcome {
    let text = std::fs::read_to_string(run.join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let recall = |split: &str| report["metrics"][split]["recall@20"].as_f64().unwrap();
    Outcome {
        iid: recall("test"),
        ood: recall("test_ood"),
        mask_auc: report["diagnostics"]["mask_auc_vs_planted"].as_f64(),
    }
}

/// A family's synthetic set and ERM's outcome per seed on it. ERM's runs do not depend on
/// PaInvRL's configuration, so the tests of one family share them: made by the first test that
/// asks, in this test process, under `CARGO_TARGET_TMPDIR`.
struct FamilyErm {
    data: PathBuf,
    erm: Vec<Outcome>,
}

/// The `family` set and ERM's outcomes on it (one thread, defaults), made once per test process.
fn family_erm(family: &'static str) -> &'static FamilyErm {
    static MADE: [(&str, OnceLock<FamilyErm>); 3] =
        [("exposure", OnceLock::new()), ("mix", OnceLock::new()), ("affinity", OnceLock::new())];
    let (_, cell) = MADE.iter().find(|(name, _)| *name == family).expect("a family with acceptance tests");
    cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("family_targets").join(family);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let mut synth = cli();
        synth.args(["synth", "--family", family, "--out"]).arg(&data);
        common::outputs_in_parallel(vec![("painvrl synth".into(), synth)]);
        let config = dir.join("erm.toml");
        std::fs::write(&config, ONE_THREAD).unwrap();
        let runs: Vec<PathBuf> = SEEDS.iter().map(|seed| dir.join(format!("erm-{seed}"))).collect();
        let commands = SEEDS
            .iter()
            .zip(&runs)
            .map(|(&seed, out)| (format!("{family}: erm seed {seed}"), train("erm", seed, &data, &config, out)))
            .collect();
        common::outputs_in_parallel(commands);
        FamilyErm { data, erm: runs.iter().map(|run| outcome(run)).collect() }
    })
}

/// Trains `painvrl` (with `painvrl_config`, a TOML text) for every seed on the `family` set, into
/// `dir`, as many processes at a time as there are cores; the outcomes of (erm, painvrl) per
/// seed, ERM's from [`family_erm`].
fn train_family(family: &'static str, painvrl_config: &str, dir: &Path) -> Vec<(Outcome, Outcome)> {
    let shared = family_erm(family);
    let config = dir.join("painvrl.toml");
    std::fs::write(&config, painvrl_config).unwrap();
    let runs: Vec<PathBuf> = SEEDS.iter().map(|seed| dir.join(format!("{family}-painvrl-{seed}"))).collect();
    let commands = SEEDS
        .iter()
        .zip(&runs)
        .map(|(&seed, out)| {
            (format!("{family}: painvrl seed {seed}"), train("painvrl", seed, &shared.data, &config, out))
        })
        .collect();
    common::outputs_in_parallel(commands);
    SEEDS
        .iter()
        .zip(&runs)
        .zip(&shared.erm)
        .map(|((seed, run), &erm)| {
            let painvrl = outcome(run);
            eprintln!(
                "{family} seed {seed}: erm IID {:.4} OOD {:.4}; painvrl IID {:.4} OOD {:.4} mask AUC {:?}",
                erm.iid, erm.ood, painvrl.iid, painvrl.ood, painvrl.mask_auc
            );
            (erm, painvrl)
        })
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// Asserts the targets on the mean of the seeds for PaInvRL trained with `painvrl_config`: IID
/// recall ≥ 0.98× ERM's, OOD recall above `min_ood_ratio` × ERM's and the mask's ROC-AUC
/// against the planted dimensions at least `min_mask_auc`.
fn assert_targets(family: &'static str, painvrl_config: &str, min_ood_ratio: f64, min_mask_auc: f64) {
    let dir = tempfile::tempdir().unwrap();
    let got = train_family(family, painvrl_config, dir.path());
    let (erm_iid, erm_ood) = (mean(got.iter().map(|r| r.0.iid)), mean(got.iter().map(|r| r.0.ood)));
    let (pa_iid, pa_ood) = (mean(got.iter().map(|r| r.1.iid)), mean(got.iter().map(|r| r.1.ood)));
    let auc = mean(got.iter().map(|r| r.1.mask_auc.expect("the synthetic set ships invariant_dims.json")));
    eprintln!("{family} mean: erm {erm_iid:.4} / {erm_ood:.4}, painvrl {pa_iid:.4} / {pa_ood:.4}, mask AUC {auc:.3}");
    assert!(
        pa_ood > min_ood_ratio * erm_ood,
        "{family}: painvrl OOD {pa_ood:.4} is not above {min_ood_ratio}× erm's {erm_ood:.4}"
    );
    assert!(pa_iid >= 0.98 * erm_iid, "{family}: painvrl IID {pa_iid:.4} is more than 2 % below erm's {erm_iid:.4}");
    assert!(auc >= min_mask_auc, "{family}: mask ROC-AUC {auc:.3} < {min_mask_auc} against the planted dimensions");
}

/// The targets with the defaults and with two environments and γ chosen on validation, each
/// 3 seeds of PaInvRL against 3 of ERM (shared by a family's tests), all trained in full: the
/// acceptance tier (CI runs it; `cargo test --workspace -- --ignored acceptance::` runs it by
/// hand; 120 s on 2 cores in session 27's CI, 169 s before ERM's runs were shared), outside the
/// quick-start test command.
mod acceptance {
    use super::{assert_targets, ONE_THREAD};

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn painvrl_meets_the_first_target_on_the_exposure_family() {
        // measured 2026-12-03 (session 37, taste-consistency environments): erm 0.2729 /
        // 0.0171, painvrl 0.2860 / 0.0233 (1.05× IID, 1.36× OOD), mask AUC 0.953; under
        // heterogeneous identification (session 18) painvrl 0.2880 / 0.0191 (1.06× IID, 1.12×
        // OOD), mask AUC 0.771
        assert_targets("exposure", ONE_THREAD, 1.10, 0.85);
    }

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn painvrl_meets_the_first_target_on_the_mix_family() {
        // measured 2026-12-03 (session 37, taste-consistency environments): erm 0.1949 /
        // 0.0684, painvrl 0.2004 / 0.0904 (1.03× IID, 1.32× OOD), mask AUC 0.995; under
        // heterogeneous identification (session 18) painvrl 0.2078 / 0.0864 (1.07× IID, 1.26×
        // OOD), mask AUC 0.766
        assert_targets("mix", ONE_THREAD, 1.10, 0.85);
    }

    /// γ chosen by the worse validation environment (docs/method.md, "γ chosen by the worse
    /// validation environment — session 37"): on `affinity`, where no default meets the first
    /// target, the environment of the clicks least aligned with their user's profile along the
    /// suspect dimensions prefers the invariant half alone (γ = 0 on every seed).
    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn gamma_chosen_by_the_worse_environment_meets_the_first_target_on_the_affinity_family() {
        // measured 2026-12-03 (session 37): erm 0.2004 / 0.0500, painvrl 0.2278 / 0.0580
        // (1.14× IID, 1.16× OOD; of ERM-VBPR, 0.1982 / 0.0489: 1.15× / 1.19×, the default γ = 1
        // 1.15× / 1.02× of it; of ERM-UltraGCN, the best ERM row on validation, 0.2120 / 0.0516
        // in session 38: 1.07× / 1.12×), mask AUC 0.870
        assert_targets("affinity", "threads = 1\nvariant_weight_worst_environment = true\n", 1.10, 0.85);
    }

    /// Two environments of heterogeneous identification, a binary mask and the variant half's
    /// weight γ chosen on validation (docs/method.md, "Two environments and the variant weight
    /// chosen on validation — session 26"): two environments rank the mask, the binary mask
    /// hands the ranking to the final model, and the rule serves the invariant half alone where
    /// validation loses little by it.
    const TWO_ENVIRONMENTS_SERVED_ON_VALIDATION: &str =
        "threads = 1\nconversion_mask = \"binary\"\nvariant_weight_tolerance = \
         0.02\n[envs]\nstrategy = \"heterogeneous\"\nn_envs = 2\n[mask]\nrisk = \"pointwise\"\n";

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn two_environments_and_gamma_on_validation_rank_the_exposure_mask_and_lift_its_ood_recall() {
        // measured 2026-12-01 (session 26): painvrl 0.2747 / 0.0247 (1.01× IID, 1.44× OOD of
        // erm), mask AUC 0.974, γ served 0, 0 and ¼; the defaults 1.06× / 1.12×, 0.771
        assert_targets("exposure", TWO_ENVIRONMENTS_SERVED_ON_VALIDATION, 1.30, 0.85);
    }

    #[test]
    #[ignore = "acceptance tier: cargo test --workspace -- --ignored acceptance::"]
    fn two_environments_and_gamma_on_validation_rank_the_mix_mask() {
        // measured 2026-12-01 (session 26): painvrl 0.2062 / 0.0933 (1.06× IID, 1.36× OOD of
        // erm), mask AUC 0.943, γ served ¾, ½ and ¾; the defaults 1.07× / 1.26×, 0.766
        assert_targets("mix", TWO_ENVIRONMENTS_SERVED_ON_VALIDATION, 1.10, 0.85);
    }
}

/// Writes the `exposure` family at 500 users × 600 items (spurious strength 2.5, generator seed
/// 11: settings none of the defaults was chosen on) under `dir`.
fn unseen_exposure_set(dir: &Path) -> PathBuf {
    let data = dir.join("exposure-500x600");
    let mut synth = cli();
    synth.args(["synth", "--family", "exposure", "--users", "500", "--items", "600"]);
    synth.args(["--variant-strength", "2.5", "--seed", "11", "--out"]).arg(&data);
    common::outputs_in_parallel(vec![("painvrl synth".into(), synth)]);
    data
}

/// Trains `painvrl train --seed 0` on `data` once per `(name, method, config text)`, each in its
/// own process, into `dir/name`, and returns the mask's ROC-AUC of each.
fn mask_aucs(data: &Path, dir: &Path, variants: &[(&str, &str, &str)]) -> Vec<f64> {
    let commands = variants
        .iter()
        .map(|(name, method, text)| {
            let config = dir.join(format!("{name}.toml"));
            std::fs::write(&config, text).unwrap();
            let set = data.file_name().unwrap().to_string_lossy();
            (format!("{set}: {name}"), train(method, 0, data, &config, &dir.join(name)))
        })
        .collect();
    common::outputs_in_parallel(commands);
    variants
        .iter()
        .map(|(name, ..)| outcome(&dir.join(name)).mask_auc.expect("the set ships invariant_dims.json"))
        .collect()
}

/// Mask ROC-AUC against the planted dimensions on the unseen `exposure` set, with the planted
/// environments, for plain IRMv1 and the centred penalty; one training seed (0).
#[test]
fn the_centred_penalty_ranks_the_mask_where_plain_irmv1_inverts_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = unseen_exposure_set(dir.path());
    // only the mask is under test: one final epoch, and no projection-only steps (the mask is
    // fixed in them; the report's mask and its ROC-AUC are the same with or without them)
    let given = |penalty| {
        format!("threads = 1\n[train]\nepochs = 1\n[envs]\nstrategy = \"given\"\n[mask]\nprojection_only_steps = 0\npenalty = \"{penalty}\"\nrisk = \"pointwise\"\n")
    };
    let (plain_toml, centred_toml) = (given("irmv1"), given("irmv1-centered"));
    let variants = [("irmv1", "painvrl", plain_toml.as_str()), ("irmv1-centered", "painvrl", centred_toml.as_str())];
    let [plain, centred] = mask_aucs(&data, dir.path(), &variants)[..] else { unreachable!() };
    // measured (session 18): plain 0.03, centred 0.98; seeds 1 and 2: 0.06 / 0.03 and 1.00 / 1.00
    eprintln!("exposure 500 × 600, planted environments: mask ROC-AUC plain {plain:.3}, centred {centred:.3}");
    assert!(centred >= 0.85, "the centred penalty's mask ROC-AUC {centred:.3} < 0.85");
    // the failure the option exists for; if plain IRMv1 stops inverting here, docs/method.md's
    // session-18 account of its shared part needs revisiting
    assert!(plain < 0.5, "plain IRMv1's mask ROC-AUC {plain:.3}: it no longer inverts on this set");
}

/// On the unseen `exposure` set the mask's last iterate is decided by the sample each mask step
/// draws (`mask.batch_size` interactions per environment), not by the environments' labels:
/// with ten *random* environments, whose labels carry no information, 205 interactions each
/// rank the planted dimensions, and the default 1,024 each — about the training set per step —
/// invert them (docs/method.md, "Two environments — session 19"). Both rank them at 0.98–1.00
/// from step 20 to step 100 (seeds 0–2); the larger sample loses it faster as the projection absorbs
/// it, and the average of the iterates (`mask.average_iterates`) keeps it (session 20, "The
/// mask's transient"). One training seed (0).
#[test]
fn a_mask_step_that_draws_the_whole_training_set_inverts_the_unseen_exposure_mask() {
    let dir = tempfile::tempdir().unwrap();
    let data = unseen_exposure_set(dir.path());
    let variants = [
        // only the mask is under test: one final epoch and no projection-only steps, which
        // follow the mask's and leave it as it is
        (
            "small-steps",
            "painvrl-random-envs",
            "threads = 1\n[train]\nepochs = 1\n[envs]\nn_envs = 10\n[mask]\nprojection_only_steps = 0\nbatch_size = 205\nrisk = \"pointwise\"\n",
        ),
        (
            "whole-set-steps",
            "painvrl-random-envs",
            "threads = 1\n[train]\nepochs = 1\n[envs]\nn_envs = 10\n[mask]\nprojection_only_steps = 0\nrisk = \"pointwise\"\n",
        ),
        (
            "whole-set-steps-averaged",
            "painvrl-random-envs",
            "threads = 1\n[train]\nepochs = 1\n[envs]\nn_envs = 10\n[mask]\nprojection_only_steps = 0\naverage_iterates = true\nrisk = \"pointwise\"\n",
        ),
    ];
    let [small, whole, averaged] = mask_aucs(&data, dir.path(), &variants)[..] else { unreachable!() };
    // measured (session 19, ten random environments): 205 per environment 0.97 (seeds 1, 2:
    // 0.94, 0.97); 1,024 per environment 0.22 (0.25, 0.31); two inferred environments of 1,024
    // 1.00 (0.95, 0.98), two random 0.83 (0.89, 0.94); session 20: 1,024 averaged 1.00 (1.00,
    // 1.00)
    eprintln!(
        "exposure 500 × 600, ten random environments: mask ROC-AUC 205 per step {small:.3}, 1,024 {whole:.3}, \
         1,024 averaged over the steps {averaged:.3}"
    );
    assert!(small >= 0.85, "small mask steps' ROC-AUC {small:.3} < 0.85");
    assert!(whole < 0.5, "whole-set mask steps' ROC-AUC {whole:.3}: they no longer invert the mask");
    // the whole-set steps rank the dimensions too, and then lose it: their average keeps it
    assert!(averaged >= 0.85, "the average of the whole-set steps' iterates ranks at {averaged:.3} < 0.85");
}

/// With the content projection's rows held at their pre-trained norms while the mask trains
/// (`mask.fix_projection_row_norms`), the projection cannot absorb the mask, and the ranking is
/// the penalty's: on the default-size `exposure` set, with heterogeneous identification's
/// environments (the default inference when it was measured), the penalty ranks the planted
/// invariant dimensions on top and the accuracy objective alone ranks the variant ones there (docs/method.md, "A projection of fixed row norms — session
/// 21"). Without the constraint both rank mostly through the accuracy gradient's early
/// direction (session 20). One training seed (0).
#[test]
fn with_fixed_projection_rows_the_penalty_ranks_the_mask_and_accuracy_alone_inverts_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("exposure");
    let mut synth = cli();
    synth.args(["synth", "--family", "exposure", "--out"]).arg(&data);
    common::outputs_in_parallel(vec![("painvrl synth".into(), synth)]);
    // only the mask is under test: one final epoch and no projection-only steps (measured on
    // seed 0: the same mask to the last digit with the default 200, in 15 s of mask learning
    // instead of 36)
    let fixed =
        "threads = 1\n[train]\nepochs = 1\n[envs]\nstrategy = \"heterogeneous\"\n[mask]\nprojection_only_steps = 0\nfix_projection_row_norms = true\nrisk = \"pointwise\"\n";
    let accuracy_alone = format!("{fixed}weighting = \"fixed\"\nirm_weight = 0.0\n");
    let variants = [("penalty", "painvrl", fixed), ("accuracy-alone", "painvrl", accuracy_alone.as_str())];
    let [penalty, alone] = mask_aucs(&data, dir.path(), &variants)[..] else { unreachable!() };
    // measured (session 21): penalty 0.94, accuracy alone 0.14; seeds 1, 2: 0.92 / 0.14 and
    // 0.86 / 0.12
    eprintln!("exposure, fixed projection rows: mask ROC-AUC with the penalty {penalty:.3}, accuracy alone {alone:.3}");
    assert!(penalty >= 0.85, "the penalty's mask ROC-AUC {penalty:.3} < 0.85");
    assert!(alone < 0.5, "the accuracy objective alone ranks the mask at {alone:.3}: it no longer inverts it");
}
