//! The `painvrl` command line, one function per subcommand: `train`, `recommend`, `eval`, `pareto`,
//! `bench`, `synth`, `info`, `split`.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use painvrl::bench::{BenchPlan, GridAxis, GridChoice, MethodSpec};
use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::tsv::read_ratings;
use painvrl::data::{
    describe, load_dir, load_features, ood_by_time, prepare_ood, split_per_user, write_dataset, LoadOptions,
    PopularityOod, SplitStrategy,
};
use painvrl::graph::BackboneKind;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "painvrl", version, about = "Pareto invariant representation learning for multimedia recommendation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a method on a dataset directory and write a run directory.
    Train(TrainArgs),
    /// Recommend top-K items from a finished run.
    Recommend(RecommendArgs),
    /// Evaluate a finished run on a dataset's val, test and test_ood splits.
    Eval(EvalArgs),
    /// The IID–OOD front: ERM, InvRL, PaInvRL along its preference sweep and each model with the
    /// post-hoc popularity adjustment along its β grid, averaged over seeds, which dominate, and
    /// each method's operating point chosen on validation.
    Pareto(ParetoArgs),
    /// Copy a finished run's model with the post-hoc popularity adjustment built in (an
    /// operating point of `pareto`), for recommend, its export and eval.
    Adjust(AdjustArgs),
    /// Blend a finished run with EASE, `(1 − w)·z_run + w·z_EASE` per user, the weight chosen on
    /// validation, and save the blend as a model (blend.json holds every weight's metrics).
    Blend(BlendArgs),
    /// Run every dataset × method × grid point × seed, choose each method's grid point on
    /// validation, and write results.json, results.md and front.svg.
    Bench(BenchArgs),
    /// Write a synthetic dataset with a planted shift and its ground truth (train_env.tsv,
    /// invariant_dims.json), to try the method where the truth is known.
    Synth(SynthArgs),
    /// Print a dataset's one-screen summary.
    Info(InfoArgs),
    /// Write a canonical copy of a dataset, adding a popularity-intervened test_ood.tsv.
    Split(SplitArgs),
}

/// Arguments of `painvrl train`.
#[derive(clap::Args)]
struct TrainArgs {
    /// Dataset directory (see docs/data-format.md).
    #[arg(long)]
    data: PathBuf,
    /// erm, invrl, painvrl, or an ablation (painvrl-random-envs, painvrl-fixed-weights, painvrl-invariant-only).
    #[arg(long)]
    method: Option<String>,
    /// ultragcn, lightgcn or mf.
    #[arg(long)]
    backbone: Option<String>,
    /// TOML configuration (defaults for anything it leaves out).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training seed (initialisation, sampling, environments); never changes the test sets.
    #[arg(long)]
    seed: Option<u64>,
    /// Seed of the OOD sets built when the dataset ships none (default 0).
    #[arg(long)]
    split_seed: Option<u64>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    device: Option<String>,
    /// Final-training epochs (also the budget of the pre-training that patience ends: on VBPR,
    /// and on UltraGCN the final training's start).
    #[arg(long)]
    epochs: Option<usize>,
    /// Run directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite an existing run directory.
    #[arg(long)]
    force: bool,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    resume: bool,
}

/// Arguments of `painvrl recommend`.
#[derive(clap::Args)]
struct RecommendArgs {
    /// Run directory written by `train`.
    #[arg(long)]
    run: PathBuf,
    /// One user id.
    #[arg(long, conflicts_with = "users")]
    user: Option<u32>,
    /// A file of user ids, one per line.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Items per user.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Directory of `<modality>_feat.npy` rows for new items, ranked with the catalogue.
    #[arg(long)]
    new_items: Option<PathBuf>,
    /// Output format: tsv or json.
    #[arg(long, default_value = "tsv")]
    format: String,
    /// Keep items the user has already interacted with.
    #[arg(long)]
    include_seen: bool,
    /// Also export users.npy, items.npy, mask.npy and manifest.json to this directory.
    #[arg(long)]
    export: Option<PathBuf>,
}

/// Arguments of `painvrl eval`.
#[derive(clap::Args)]
struct EvalArgs {
    /// Run directory written by `train`.
    #[arg(long)]
    run: PathBuf,
    /// Dataset directory with the same users and items.
    #[arg(long)]
    data: PathBuf,
}

/// Arguments of `painvrl adjust`.
#[derive(clap::Args)]
struct AdjustArgs {
    /// Run directory written by `train` (or a run under `pareto`'s `runs/`).
    #[arg(long)]
    run: PathBuf,
    /// The dataset the run was trained on: its training popularity is what the adjustment uses.
    #[arg(long)]
    data: PathBuf,
    /// Strength β of `score − β·ln(1 + training popularity)` (finite, ≥ 0).
    #[arg(long)]
    beta: f64,
    /// Output directory for the adjusted model (must not hold one).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `painvrl blend`.
#[derive(clap::Args)]
struct BlendArgs {
    /// Run directory written by `train`.
    #[arg(long)]
    run: PathBuf,
    /// The dataset the run was trained on.
    #[arg(long)]
    data: PathBuf,
    /// Output directory for the blended model and blend.json (must not hold a model).
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration (OOD sets, metrics, `baselines.ease_lambda`); default: the run's own,
    /// from its report.json.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Weights on EASE to choose from, each in [0, 1].
    #[arg(long, value_delimiter = ',', default_values_t = painvrl::blend::default_weights())]
    weights: Vec<f64>,
    /// Choose the weight as `pareto` chooses operating points: the best on the OOD validation
    /// slice among the weights within this share of the best on validation (e.g. 0.02).
    /// Default: the best on validation.
    #[arg(long)]
    iid_tolerance: Option<f64>,
}

/// Arguments of `painvrl pareto`.
#[derive(clap::Args)]
struct ParetoArgs {
    /// Dataset directory.
    #[arg(long)]
    data: PathBuf,
    /// Output directory (front.json, front.svg).
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Number of preference vectors between the objectives.
    #[arg(long, default_value_t = 5)]
    points: usize,
    /// Training seeds, comma-separated; every point is their mean.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// The operating point of each method is the best on the OOD validation slice among the
    /// points whose validation recall is within this share of the front's best.
    #[arg(long, default_value_t = 0.02)]
    iid_tolerance: f64,
}

/// Arguments of `painvrl bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// Dataset directories, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    data: Vec<PathBuf>,
    /// Methods, comma-separated; `method@backbone` overrides the backbone (erm@lightgcn).
    #[arg(long, value_delimiter = ',', required = true)]
    methods: Vec<String>,
    /// Training seeds 0..N.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Output directory (runs/, results.json, results.md, front.svg).
    #[arg(long)]
    out: PathBuf,
    /// TOML configuration shared by every run.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A grid axis `key=v1,v2` over configuration keys (repeatable).
    #[arg(long)]
    grid: Vec<String>,
    /// The method every other is compared with, paired over seeds (default: erm when run).
    #[arg(long)]
    reference: Option<String>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long)]
    device: Option<String>,
    /// Choose each method's grid point as `pareto` chooses operating points: the best on the
    /// OOD validation slice among those within this share of the best on validation (e.g.
    /// 0.02). Default: the best on validation.
    #[arg(long)]
    iid_tolerance: Option<f64>,
    /// Also blend every trained run with EASE (`painvrl blend`, its weight chosen per run by
    /// the same rule) and report it as the method `<method>+ease`.
    #[arg(long)]
    blend_ease: bool,
}

/// Arguments of `painvrl synth`.
#[derive(clap::Args)]
struct SynthArgs {
    /// Shift family: affinity (per-user spurious affinity), exposure (one exposure direction
    /// shared by every user), mix.
    #[arg(long, default_value = "affinity")]
    family: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Users.
    #[arg(long, default_value_t = 300)]
    users: usize,
    /// Items.
    #[arg(long, default_value_t = 400)]
    items: usize,
    /// Clicks per user in each of val, test and test_ood; train gets 4× as many. Per-click
    /// environment inference needs dense users (docs/method.md, "How many clicks a per-click
    /// split needs").
    #[arg(long, default_value_t = 5)]
    per_user: usize,
    /// Mean strength of the spurious signal in training (reversed in test_ood).
    #[arg(long, default_value_t = 3.0)]
    variant_strength: f32,
    /// Draw each user's environment once for all of its clicks (a region, a platform, a
    /// cohort) instead of one per click.
    #[arg(long)]
    per_user_envs: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Arguments of `painvrl info`.
#[derive(clap::Args)]
struct InfoArgs {
    /// Dataset directory.
    #[arg(long)]
    data: PathBuf,
}

/// Arguments of `painvrl split`.
#[derive(clap::Args)]
struct SplitArgs {
    /// Dataset directory (any supported layout).
    #[arg(long)]
    data: PathBuf,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// How rating logs are split per user: temporal or random.
    #[arg(long, default_value = "temporal")]
    split: String,
    /// Validation fraction per user (rating logs).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Test fraction per user (rating logs).
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Ratings at or above this are positives (rating logs).
    #[arg(long, default_value_t = 4.0)]
    rating_threshold: f32,
    /// OOD test construction: popularity (from the test split), temporal (the latest
    /// interactions of a rating log), or none.
    #[arg(long, default_value = "popularity")]
    ood: String,
    /// popularity: share of the test split set aside as the OOD pool (the rest stays the IID
    /// test); temporal: share of the latest interactions moved to test_ood.
    #[arg(long, default_value_t = 0.5)]
    ood_fraction: f64,
    /// popularity: share of the pool drawn into test_ood against training popularity.
    #[arg(long, default_value_t = 0.5)]
    draw_fraction: f64,
    /// popularity: at most this many OOD interactions per item.
    #[arg(long, default_value_t = 5)]
    cap_per_item: usize,
    /// popularity: do not write the OOD validation slice val_ood.tsv.
    #[arg(long)]
    no_val_ood: bool,
    /// Split seed (per-user split of rating logs and the OOD draw).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Recommend(args) => recommend(args),
        Command::Eval(args) => eval(args),
        Command::Pareto(args) => pareto(args),
        Command::Adjust(args) => adjust(args),
        Command::Blend(args) => blend(args),
        Command::Bench(args) => bench(args),
        Command::Synth(args) => synth(args),
        Command::Info(args) => info(args),
        Command::Split(args) => split(args),
        Command::Train(args) => train(args),
    }
}

/// `painvrl recommend`.
fn recommend(args: RecommendArgs) -> Result<()> {
    let RecommendArgs { run, user, users, k, new_items, format, include_seen, export } = args;
    if format != "tsv" && format != "json" {
        bail!("--format '{format}' is not one of tsv, json");
    }
    let ids: Vec<u32> = match (user, users) {
        (Some(u), _) => vec![u],
        (None, Some(f)) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading {}", f.display()))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                l.trim()
                    .parse::<u32>()
                    .with_context(|| format!("{}, line {}: '{}' is not a user id", f.display(), n + 1, l.trim()))
            })
            .collect::<Result<_>>()?,
        (None, None) => bail!("give --user U or --users FILE"),
    };
    let mut rec = painvrl::recommender::Recommender::load(&run, tch::Device::Cpu)?;
    if let Some(dir) = new_items {
        let feats = painvrl::data::load_features(&dir, true)?;
        let r = rec.add_items(&feats)?;
        eprintln!("added {} new items as ids {}..{}", r.len(), r.start, r.end);
    }
    if let Some(dir) = export {
        rec.export_npy(&dir)?;
    }
    let lists = rec.recommend(&ids, k, !include_seen)?;
    if format == "json" {
        let v: Vec<_> = ids.iter().zip(&lists).map(|(u, l)| serde_json::json!({ "user": u, "items": l })).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("user\trank\titem\tscore");
        for (u, l) in ids.iter().zip(&lists) {
            for (r, s) in l.iter().enumerate() {
                println!("{u}\t{}\t{}\t{}", r + 1, s.item, s.score);
            }
        }
    }
    Ok(())
}

/// `painvrl eval`.
fn eval(args: EvalArgs) -> Result<()> {
    let EvalArgs { run, data } = args;
    let rec = painvrl::recommender::Recommender::load(&run, tch::Device::Cpu)?;
    let (ds, _) = load_dir(&data, &LoadOptions::default())?;
    let m = rec.manifest();
    if ds.n_users > m.n_users || ds.n_items != m.n_items {
        bail!(
            "{} has {} users × {} items; the model was trained on {} × {}",
            data.display(),
            ds.n_users,
            ds.n_items,
            m.n_users,
            m.n_items
        );
    }
    let mut out = serde_json::Map::new();
    for (name, r) in painvrl::report::evaluate_splits(&rec.scorer(), &ds, m.n_users, &Default::default())? {
        out.insert(name.into(), serde_json::to_value(&r)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `painvrl adjust`.
fn adjust(args: AdjustArgs) -> Result<()> {
    let AdjustArgs { run, data, beta, out } = args;
    let (ds, _) = load_dir(&data, &LoadOptions::default())?;
    let popularity = ds.train.item_degrees(ds.n_items);
    let m = painvrl::recommender::adjust_run(&run, &popularity, beta, &out)?;
    println!("wrote {}: {} with the post-hoc popularity adjustment at beta {beta}", out.display(), m.method);
    Ok(())
}

/// The grid rule `--iid-tolerance` names: the best on validation without it; with it, the best on
/// the OOD validation slice within that share of the best on validation.
fn grid_choice(iid_tolerance: Option<f64>, base: &Config) -> Result<GridChoice> {
    Ok(match iid_tolerance {
        None => GridChoice::BestValidation,
        Some(t) if !(0.0..1.0).contains(&t) => bail!("--iid-tolerance {t} is not in [0, 1)"),
        Some(_) if !base.ood.val_slice => {
            bail!("--iid-tolerance chooses on the OOD validation slice, which ood.val_slice = false removes")
        }
        Some(t) => GridChoice::OodWithinTolerance(t),
    })
}

/// `painvrl blend`.
fn blend(args: BlendArgs) -> Result<()> {
    let BlendArgs { run, data, out, config, weights, iid_tolerance } = args;
    let cfg = match &config {
        Some(p) => Config::from_toml_file(p)?,
        None => run_config(&run)?,
    };
    let choice = grid_choice(iid_tolerance, &cfg)?;
    painvrl::blend::checked_weights(&weights)?;
    painvrl::core::init_runtime(cfg.threads, cfg.seed);
    let (mut ds, _) = load_dir(&data, &LoadOptions::default())?;
    prepare_ood(&mut ds, &cfg.ood, cfg.split_seed)?;
    let report = painvrl::blend::blend_run(&run, &ds, &cfg, &weights, choice, &out)?;
    let metric = |split: &str| {
        report.chosen().and_then(|p| p.metrics.get(split)).and_then(|m| m.get("recall@20")).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{}: weight {} on EASE (λ {}), {}; recall@20 val {:.4}, test {:.4}, test_ood {:.4}",
        report.method,
        report.weight,
        report.ease_lambda,
        report.choice,
        metric("val"),
        metric("test"),
        metric("test_ood")
    );
    println!("wrote {}", out.display());
    Ok(())
}

/// The configuration a run was trained with (report.json's `config`); the defaults when the
/// run has no report.
fn run_config(run: &std::path::Path) -> Result<Config> {
    let path = run.join("report.json");
    if !path.exists() {
        return Ok(Config::default());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let config = value.get("config").cloned().with_context(|| format!("{}: no 'config' field", path.display()))?;
    serde_json::from_value(config)
        .with_context(|| format!("{}: field 'config' is not a painvrl configuration", path.display()))
}

/// `painvrl pareto`.
fn pareto(args: ParetoArgs) -> Result<()> {
    use painvrl::front::{dominance, dominance_with_posthoc, operating_point, sweep, Family, FrontPlan};
    let ParetoArgs { data, out, config, points, seeds, iid_tolerance } = args;
    if !(0.0..1.0).contains(&iid_tolerance) {
        bail!("--iid-tolerance {iid_tolerance} is not in [0, 1)");
    }
    let base = match &config {
        Some(p) => Config::from_toml_file(p)?,
        None => Config::default(),
    };
    let plan = FrontPlan::even(points, seeds)?;
    let (mut ds, _) = load_dir(&data, &LoadOptions::default())?;
    base.validate(ds.n_items)?;
    prepare_ood(&mut ds, &base.ood, base.split_seed)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let front = sweep(&ds, &base, &plan, &out)?;
    let (verdict, adjusted) = (dominance(&front), dominance_with_posthoc(&front));
    let methods = [
        ("erm", [Family::Erm, Family::Posthoc]),
        ("invrl", [Family::Invrl, Family::InvrlPosthoc]),
        ("painvrl", [Family::Painvrl, Family::PainvrlPosthoc]),
    ];
    let chosen: Vec<(&str, Option<&painvrl::front::FrontPoint>)> =
        methods.iter().map(|(name, families)| (*name, operating_point(&front, families, iid_tolerance))).collect();
    let chosen_json: serde_json::Map<String, serde_json::Value> =
        chosen.iter().map(|(name, p)| (name.to_string(), serde_json::to_value(p).unwrap_or_default())).collect();
    painvrl::core::io::write_json_atomic(
        &out.join("front.json"),
        &serde_json::json!({
            "points": front,
            "dominance": verdict,
            "dominance_with_posthoc": adjusted,
            "operating_points": { "iid_tolerance": iid_tolerance, "chosen": chosen_json },
        }),
    )?;
    let series = |family: Family| front.iter().filter(|p| p.family == family).map(|p| p.xy()).collect::<Vec<_>>();
    painvrl::plots::scatter_plot(
        &out.join("front.svg"),
        "IID vs OOD Recall@20",
        "IID (test) recall@20",
        "OOD (test_ood) recall@20",
        &[
            ("erm".into(), series(Family::Erm)),
            ("invrl".into(), series(Family::Invrl)),
            ("painvrl (preference sweep)".into(), series(Family::Painvrl)),
            ("erm + post-hoc popularity adjustment (beta sweep)".into(), series(Family::Posthoc)),
            ("invrl + post-hoc popularity adjustment".into(), series(Family::InvrlPosthoc)),
            ("painvrl + post-hoc popularity adjustment".into(), series(Family::PainvrlPosthoc)),
        ],
    )?;
    for (what, d) in [("painvrl's front", &verdict), ("with its post-hoc points", &adjusted)] {
        println!(
            "{what} {} InvRL's point, {} of {} post-hoc points of ERM and {} of {} of InvRL",
            if d.invrl_dominated { "dominates" } else { "does not dominate" },
            d.posthoc_dominated,
            d.posthoc_points,
            d.invrl_posthoc_dominated,
            d.invrl_posthoc_points
        );
    }
    for (name, point) in &chosen {
        match point {
            Some(p) => println!(
                "{name}'s operating point (chosen on validation): {} — IID recall@20 {:.4}, OOD {:.4}",
                p.label, p.mean.iid, p.mean.ood
            ),
            None => println!("{name}: no operating point (the dataset has no val_ood slice, or no point qualifies)"),
        }
    }
    println!("wrote {} and {}", out.join("front.json").display(), out.join("front.svg").display());
    Ok(())
}

/// `painvrl bench`.
fn bench(args: BenchArgs) -> Result<()> {
    let BenchArgs { data, methods, seeds, out, config, grid, reference, device, iid_tolerance, blend_ease } = args;
    let mut base = match &config {
        Some(p) => Config::from_toml_file(p)?,
        None => Config::default(),
    };
    if let Some(d) = device {
        base.device = d.parse::<DeviceSpec>()?;
    }
    base.train.progress = false;
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let choice = grid_choice(iid_tolerance, &base)?;
    let methods: Vec<MethodSpec> = methods.iter().map(|m| m.parse()).collect::<Result<_, _>>()?;
    let grid: Vec<GridAxis> = grid.iter().map(|g| g.parse()).collect::<Result<_, _>>()?;
    let reference = reference.or_else(|| methods.iter().any(|m| m.label() == "erm").then(|| "erm".into()));
    if let Some(r) = &reference {
        if !methods.iter().any(|m| &m.label() == r) {
            bail!("--reference {r} is not among --methods");
        }
    }
    let mut datasets = Vec::new();
    for dir in &data {
        let opts = LoadOptions { seed: base.split_seed, ..LoadOptions::default() };
        let (mut ds, _) = load_dir(dir, &opts)?;
        prepare_ood(&mut ds, &base.ood, base.split_seed)?;
        eprintln!("{}", ds.summary());
        let name = ds.name.clone();
        datasets.push((name, ds));
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    ctrlc::set_handler(painvrl::core::signal::request_stop).context("installing the signal handler")?;
    let plan = BenchPlan { datasets, methods, seeds, grid, base, out: out.clone(), reference, choice, blend_ease };
    painvrl::bench::run(&plan)?;
    println!("{}", std::fs::read_to_string(out.join("results.md"))?);
    println!("wrote {}", out.display());
    Ok(())
}

/// `painvrl synth`.
fn synth(args: SynthArgs) -> Result<()> {
    let SynthArgs { family, out, users, items, per_user, variant_strength, per_user_envs, seed } = args;
    let cfg = painvrl::data::SyntheticConfig {
        n_users: users,
        n_items: items,
        per_user,
        variant_strength,
        per_user_environments: per_user_envs,
        family: family.parse()?,
        seed,
        ..Default::default()
    };
    let syn = painvrl::data::generate(&cfg)?;
    let info = painvrl::data::OodInfo {
        method: "synthetic".into(),
        params: serde_json::to_value(&cfg)?,
        size: syn.dataset.test_ood.as_ref().map_or(0, |t| t.len()),
    };
    write_dataset(&out, &syn.dataset, Some(&info))?;
    println!("wrote {}: {}", out.display(), syn.dataset.summary());
    Ok(())
}

/// `painvrl info`.
fn info(args: InfoArgs) -> Result<()> {
    let InfoArgs { data } = args;
    let (ds, report) = load_dir(&data, &LoadOptions::default())?;
    println!("{}\n{}", ds.summary(), describe(&report));
    Ok(())
}

/// `painvrl split`.
fn split(args: SplitArgs) -> Result<()> {
    let SplitArgs {
        data,
        out,
        split,
        val_fraction,
        test_fraction,
        rating_threshold,
        ood,
        ood_fraction,
        draw_fraction,
        cap_per_item,
        no_val_ood,
        seed,
    } = args;
    let strategy = match split.as_str() {
        "temporal" => SplitStrategy::Temporal,
        "random" => SplitStrategy::Random,
        other => bail!("--split '{other}' is not one of temporal, random"),
    };
    let opts =
        LoadOptions { l2_normalize: false, split: strategy, val_fraction, test_fraction, rating_threshold, seed };
    let (ds, info) = match ood.as_str() {
        "popularity" => {
            let (mut ds, _) = load_dir(&data, &opts)?;
            if ds.test_ood.is_some() {
                bail!("{} already has a test_ood split; use --ood none to copy it as it is", data.display());
            }
            let protocol = PopularityOod {
                build_if_missing: true,
                fraction: ood_fraction,
                draw_fraction,
                cap_per_item,
                val_slice: !no_val_ood,
            };
            let info = prepare_ood(&mut ds, &protocol, seed)?;
            (ds, info)
        }
        "none" => (load_dir(&data, &opts)?.0, None),
        "temporal" => {
            let log = data.join("interactions.tsv");
            if !log.exists() {
                bail!("--ood temporal needs a rating log with timestamps ({} not found)", log.display());
            }
            let ratings: Vec<_> = read_ratings(&log)?.into_iter().filter(|r| r.rating >= rating_threshold).collect();
            let (rest, test_ood, info) = ood_by_time(&ratings, ood_fraction)?;
            let s = split_per_user(&rest, strategy, val_fraction, test_fraction, seed)?;
            let features = load_features(&data, false)?;
            let n_users = ratings.iter().map(|r| r.user as usize + 1).max().unwrap_or(0);
            let name = data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let ds = painvrl::core::Dataset {
                name,
                n_users,
                n_items: features.n_items(),
                train: s.train,
                val: s.val,
                test: s.test,
                test_ood: Some(test_ood),
                val_ood: None,
                features,
                train_times: Some(s.train_times),
                truth: Default::default(),
            };
            ds.validate()?;
            (ds, Some(info))
        }
        other => bail!("--ood '{other}' is not one of popularity, temporal, none"),
    };
    write_dataset(&out, &ds, info.as_ref())?;
    println!("wrote {}: {}", out.display(), ds.summary());
    Ok(())
}

/// `painvrl train`.
fn train(args: TrainArgs) -> Result<()> {
    let TrainArgs { data, method, backbone, config, seed, split_seed, device, epochs, out, force, resume } = args;
    let mut cfg = match &config {
        Some(p) => Config::from_toml_file(p)?,
        None => Config::default(),
    };
    if let Some(m) = method {
        cfg.method = m.parse::<Method>()?;
    }
    if let Some(b) = backbone {
        cfg.backbone.kind = b.parse::<BackboneKind>()?;
    }
    if let Some(s) = seed {
        cfg.seed = s;
    }
    if let Some(s) = split_seed {
        cfg.split_seed = s;
    }
    if let Some(d) = device {
        cfg.device = d.parse::<DeviceSpec>()?;
    }
    if let Some(e) = epochs {
        cfg.train.epochs = e;
    }
    prepare_out(&out, force, resume)?;
    let (mut ds, report) = load_dir(&data, &LoadOptions::default())?;
    cfg.validate(ds.n_items)?;
    eprintln!("{}\n{}", ds.summary(), describe(&report));
    if let Some(info) = prepare_ood(&mut ds, &cfg.ood, cfg.split_seed)? {
        eprintln!("built a popularity-intervened test_ood with {} interactions ({})", info.size, info.params);
    }
    ctrlc::set_handler(painvrl::core::signal::request_stop).context("installing the signal handler")?;
    let r = painvrl::pipeline::run(&ds, &cfg, Some(&out), resume)?;
    println!("{}", serde_json::to_string_pretty(&r.metrics)?);
    println!("report: {}", out.join("report.json").display());
    Ok(())
}

fn prepare_out(out: &std::path::Path, force: bool, resume: bool) -> Result<()> {
    if out.is_file() {
        bail!("--out {} is a file; give a directory", out.display());
    }
    if out.join("report.json").exists() && !force && !resume {
        bail!("{} already holds a finished run; pass --force to overwrite or choose another --out", out.display());
    }
    if force && !resume && out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(())
}
