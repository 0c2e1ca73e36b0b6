//! The IID–OOD front of one dataset (`painvrl pareto`): ERM, InvRL, PaInvRL along a sweep of
//! preference vectors, and the post-hoc popularity adjustment of each of these models along its
//! β grid — every point the mean of the given training seeds — which of them dominate, and the
//! operating point of each method chosen on validation alone.

use crate::config::{Config, Method};
use crate::pipeline::finished_or_run;
use crate::report::evaluate_splits;
use painvrl_baselines::PopularityAdjusted;
use painvrl_core::{Dataset, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which model family a point of the front belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The recommender trained by ERM.
    Erm,
    /// InvRL's pipeline.
    Invrl,
    /// PaInvRL at one preference vector.
    Painvrl,
    /// The ERM model with `score − β·log(1 + popularity)` at one β.
    Posthoc,
    /// InvRL's model with the same adjustment at one β > 0.
    #[serde(rename = "invrl+posthoc")]
    InvrlPosthoc,
    /// A PaInvRL model (one preference vector) with the same adjustment at one β > 0.
    #[serde(rename = "painvrl+posthoc")]
    PainvrlPosthoc,
}

/// Recall@20 of one model on the splits the front uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Validation.
    pub val: f64,
    /// The OOD validation slice, when the dataset has one.
    pub val_ood: Option<f64>,
    /// IID test.
    pub iid: f64,
    /// OOD test.
    pub ood: f64,
}

impl Recall {
    /// Recall@20 of each split in `metrics` (split → metric → value); a missing split reads NaN.
    fn of(metrics: &BTreeMap<String, BTreeMap<String, f64>>) -> Self {
        let get = |split: &str| metrics.get(split).and_then(|s| s.get("recall@20")).copied();
        let nan = |split: &str| get(split).unwrap_or(f64::NAN);
        Recall { val: nan("val"), val_ood: get("val_ood"), iid: nan("test"), ood: nan("test_ood") }
    }
}

/// One point of the front: recall@20 averaged over the seeds (each seed's values kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontPoint {
    /// What ran: `erm`, `invrl`, `painvrl pref [0.20, 1.80]`, `posthoc beta 0.3`.
    pub label: String,
    /// The model family.
    pub family: Family,
    /// Mean recall@20 per split.
    #[serde(flatten)]
    pub mean: Recall,
    /// Per seed.
    pub per_seed: BTreeMap<u64, Recall>,
}

impl FrontPoint {
    /// The point in the (IID, OOD) plane.
    pub fn xy(&self) -> (f64, f64) {
        (self.mean.iid, self.mean.ood)
    }
}

/// The point of `families` a user would deploy, chosen on validation only: among the points
/// whose mean validation recall is at least `(1 − iid_tolerance)` times the best of the whole
/// front, the one with the highest mean recall on the OOD validation slice. `None` when the
/// dataset has no such slice or no point of `families` qualifies.
pub fn operating_point<'a>(front: &'a [FrontPoint], families: &[Family], iid_tolerance: f64) -> Option<&'a FrontPoint> {
    let best_val = front.iter().map(|p| p.mean.val).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    front
        .iter()
        .filter(|p| families.contains(&p.family) && p.mean.val >= (1.0 - iid_tolerance) * best_val)
        .filter_map(|p| p.mean.val_ood.filter(|v| v.is_finite()).map(|v| (v, p)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p)
}

/// True when `a` is at least as good as `b` on both axes and better on one.
pub fn dominates(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 >= b.0 && a.1 >= b.1 && (a.0 > b.0 || a.1 > b.1)
}

/// How PaInvRL's points compare with the others'.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dominance {
    /// Some PaInvRL point dominates InvRL's point.
    pub invrl_dominated: bool,
    /// Some PaInvRL point dominates ERM's point.
    pub erm_dominated: bool,
    /// Post-hoc points dominated by some PaInvRL point.
    pub posthoc_dominated: usize,
    /// Post-hoc points on the front.
    pub posthoc_points: usize,
    /// PaInvRL's front dominates InvRL's point and every post-hoc point.
    pub target_met: bool,
    /// InvRL's adjusted points (β > 0) dominated by some PaInvRL point: the comparison of the
    /// two methods when both may be adjusted.
    pub invrl_posthoc_dominated: usize,
    /// InvRL's adjusted points on the front.
    pub invrl_posthoc_points: usize,
}

/// Compares the PaInvRL points of `front` (the preference sweep) with its InvRL, ERM and
/// post-hoc points.
pub fn dominance(front: &[FrontPoint]) -> Dominance {
    dominance_of(front, &[Family::Painvrl])
}

/// [`dominance`] with PaInvRL's post-hoc adjusted points added to its own: the front a user gets
/// who may adjust PaInvRL's scores as the baseline adjusts ERM's.
pub fn dominance_with_posthoc(front: &[FrontPoint]) -> Dominance {
    dominance_of(front, &[Family::Painvrl, Family::PainvrlPosthoc])
}

fn dominance_of(front: &[FrontPoint], our_families: &[Family]) -> Dominance {
    let ours: Vec<(f64, f64)> = front.iter().filter(|p| our_families.contains(&p.family)).map(FrontPoint::xy).collect();
    let beaten = |p: &FrontPoint| ours.iter().any(|&o| dominates(o, p.xy()));
    let of = |f: Family| front.iter().filter(move |p| p.family == f);
    let invrl_dominated = of(Family::Invrl).count() > 0 && of(Family::Invrl).all(beaten);
    let erm_dominated = of(Family::Erm).count() > 0 && of(Family::Erm).all(beaten);
    let posthoc_points = of(Family::Posthoc).count();
    let posthoc_dominated = of(Family::Posthoc).filter(|p| beaten(p)).count();
    Dominance {
        invrl_dominated,
        erm_dominated,
        posthoc_dominated,
        posthoc_points,
        target_met: invrl_dominated && posthoc_dominated == posthoc_points,
        invrl_posthoc_dominated: of(Family::InvrlPosthoc).filter(|p| beaten(p)).count(),
        invrl_posthoc_points: of(Family::InvrlPosthoc).count(),
    }
}

/// What `painvrl pareto` sweeps.
#[derive(Clone, Debug)]
pub struct FrontPlan {
    /// Preference vectors of the PaInvRL runs (weight on the recommender loss, on the penalty).
    pub preferences: Vec<[f64; 2]>,
    /// Training seeds; every point is their mean.
    pub seeds: Vec<u64>,
}

impl FrontPlan {
    /// `points` preference vectors evenly from [0.2, 1.8] to [1.8, 0.2] over `seeds`: each sums
    /// to 2 like the default [1, 1], which is the middle of an odd sweep.
    pub fn even(points: usize, seeds: Vec<u64>) -> Result<Self> {
        if points < 2 {
            return Err(Error::config("points", format!("{points}: give at least 2 preference vectors")));
        }
        if seeds.is_empty() {
            return Err(Error::config("seeds", "give at least one training seed"));
        }
        let preferences = (0..points)
            .map(|k| {
                let w = 0.1 + 0.8 * k as f64 / (points - 1) as f64;
                [2.0 * w, 2.0 * (1.0 - w)]
            })
            .collect();
        Ok(FrontPlan { preferences, seeds })
    }
}

/// Trains every run of `plan` on `ds` (each saved under `runs/<label>-seed<seed>` of `out`),
/// scores the ERM model with each post-hoc β of `base.baselines.posthoc_beta` and the InvRL and
/// PaInvRL models with each β > 0, and returns the front's points, ERM first, then InvRL, PaInvRL
/// by preference, each followed by its post-hoc points by β. A finished
/// run already there is read back when it ran the same configuration (and refused otherwise);
/// an interrupted one is resumed.
pub fn sweep(ds: &Dataset, base: &Config, plan: &FrontPlan, out: &Path) -> Result<Vec<FrontPoint>> {
    let mut points: Vec<FrontPoint> = Vec::new();
    let mut add = |label: String, family: Family, seed: u64, m: Recall| {
        let i = match points.iter().position(|p| p.label == label) {
            Some(i) => i,
            None => {
                let p = FrontPoint { label, family, mean: m, per_seed: BTreeMap::new() };
                points.push(p);
                points.len() - 1
            }
        };
        points[i].per_seed.insert(seed, m);
    };
    let mut betas = base.baselines.posthoc_beta.clone();
    betas.sort_by(f64::total_cmp);
    betas.dedup();
    let positive: Vec<f64> = betas.iter().copied().filter(|&b| b > 0.0).collect();
    for &seed in &plan.seeds {
        let mut runs: Vec<(String, Family, Config)> = vec![
            ("erm".into(), Family::Erm, Config { method: Method::Erm, ..base.clone() }),
            ("invrl".into(), Family::Invrl, Config { method: Method::Invrl, ..base.clone() }),
        ];
        for &pref in &plan.preferences {
            let mut cfg = Config { method: Method::Painvrl, ..base.clone() };
            cfg.mask.preference = pref;
            runs.push((format!("painvrl pref [{:.2}, {:.2}]", pref[0], pref[1]), Family::Painvrl, cfg));
        }
        for (label, family, mut cfg) in runs {
            cfg.seed = seed;
            let dir = out.join("runs").join(format!("{}-seed{seed}", slug(&label)));
            let (r, _) = finished_or_run(ds, &cfg, &dir)?;
            let m = Recall::of(&r.metrics);
            eprintln!("seed {seed}, {label}: IID recall@20 {:.4}, OOD recall@20 {:.4}", m.iid, m.ood);
            add(label.clone(), family, seed, m);
            match family {
                Family::Erm => {
                    for (beta, v) in posthoc_front(ds, base, &dir, &betas)? {
                        add(format!("posthoc beta {beta}"), Family::Posthoc, seed, v);
                    }
                }
                Family::Invrl | Family::Painvrl => {
                    let adjusted = if family == Family::Invrl { Family::InvrlPosthoc } else { Family::PainvrlPosthoc };
                    for (beta, v) in posthoc_front(ds, base, &dir, &positive)? {
                        add(format!("{label} + posthoc beta {beta}"), adjusted, seed, v);
                    }
                }
                Family::Posthoc | Family::InvrlPosthoc | Family::PainvrlPosthoc => {}
            }
        }
    }
    for p in &mut points {
        let seeds: Vec<&Recall> = p.per_seed.values().collect();
        let mean = |f: fn(&Recall) -> f64| seeds.iter().map(|r| f(r)).sum::<f64>() / seeds.len() as f64;
        let val_ood = seeds.iter().map(|r| r.val_ood).collect::<Option<Vec<f64>>>();
        p.mean = Recall {
            val: mean(|r| r.val),
            val_ood: val_ood.map(|v| v.iter().sum::<f64>() / v.len() as f64),
            iid: mean(|r| r.iid),
            ood: mean(|r| r.ood),
        };
    }
    Ok(points)
}

/// The model saved in `run_dir` adjusted by each β: its recall@20 per split.
fn posthoc_front(ds: &Dataset, cfg: &Config, run_dir: &Path, betas: &[f64]) -> Result<Vec<(f64, Recall)>> {
    let rec = crate::recommender::Recommender::load(run_dir, tch::Device::Cpu)?;
    let scorer = rec.scorer();
    let popularity = ds.train.item_degrees(ds.n_items);
    betas
        .iter()
        .map(|&beta| {
            let adjusted = PopularityAdjusted::new(&scorer, &popularity, beta)?;
            let metrics: BTreeMap<String, BTreeMap<String, f64>> =
                evaluate_splits(&adjusted, ds, ds.n_users, &cfg.train.eval)?
                    .into_iter()
                    .map(|(split, m)| (split.to_string(), m.values))
                    .collect();
            Ok((beta, Recall::of(&metrics)))
        })
        .collect()
}

/// A directory name for a label: letters, digits and dots kept, the rest `-`.
fn slug(label: &str) -> String {
    let s: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(label: &str, family: Family, iid: f64, ood: f64) -> FrontPoint {
        let mean = Recall { val: 0.0, val_ood: None, iid, ood };
        FrontPoint { label: label.into(), family, mean, per_seed: BTreeMap::new() }
    }

    fn validated(label: &str, family: Family, val: f64, val_ood: f64) -> FrontPoint {
        let mean = Recall { val, val_ood: Some(val_ood), iid: 0.0, ood: 0.0 };
        FrontPoint { label: label.into(), family, mean, per_seed: BTreeMap::new() }
    }

    #[test]
    fn the_operating_point_is_the_best_val_ood_within_the_val_tolerance() {
        let front = vec![
            validated("erm", Family::Erm, 0.100, 0.010),
            validated("posthoc 0.3", Family::Posthoc, 0.097, 0.016),
            validated("posthoc 1", Family::Posthoc, 0.050, 0.030),
            validated("pref a", Family::Painvrl, 0.101, 0.012),
            validated("pref a + 0.1", Family::PainvrlPosthoc, 0.0995, 0.014),
        ];
        // the best validation recall is 0.101: within 2 % means ≥ 0.09898
        let erm = operating_point(&front, &[Family::Erm, Family::Posthoc], 0.02).unwrap();
        assert_eq!(erm.label, "erm");
        let ours = operating_point(&front, &[Family::Painvrl, Family::PainvrlPosthoc], 0.02).unwrap();
        assert_eq!(ours.label, "pref a + 0.1");
        // a looser tolerance lets the post-hoc point at β = 0.3 in, not the one at β = 1
        assert_eq!(operating_point(&front, &[Family::Erm, Family::Posthoc], 0.05).unwrap().label, "posthoc 0.3");
        // without an OOD validation slice nothing can be chosen
        let blind: Vec<FrontPoint> = front
            .iter()
            .cloned()
            .map(|mut p| {
                p.mean.val_ood = None;
                p
            })
            .collect();
        assert!(operating_point(&blind, &[Family::Erm], 0.02).is_none());
        assert!(operating_point(&front, &[Family::Invrl], 0.02).is_none());
    }

    #[test]
    fn dominance_needs_both_axes_and_one_strict() {
        assert!(dominates((0.2, 0.1), (0.1, 0.1)));
        assert!(dominates((0.2, 0.2), (0.1, 0.1)));
        assert!(!dominates((0.1, 0.1), (0.1, 0.1)));
        assert!(!dominates((0.3, 0.05), (0.1, 0.1)));
    }

    #[test]
    fn the_target_needs_invrl_and_every_posthoc_point_beaten() {
        let mut front = vec![
            point("erm", Family::Erm, 0.20, 0.05),
            point("invrl", Family::Invrl, 0.19, 0.05),
            point("pref a", Family::Painvrl, 0.21, 0.06),
            point("pref b", Family::Painvrl, 0.15, 0.09),
            point("beta 0", Family::Posthoc, 0.20, 0.05),
            point("beta 1", Family::Posthoc, 0.14, 0.085),
        ];
        let d = dominance(&front);
        assert!(d.invrl_dominated && d.erm_dominated && d.target_met);
        assert_eq!((d.posthoc_dominated, d.posthoc_points), (2, 2));
        // a post-hoc point out of reach on the OOD axis breaks the target
        front.push(point("beta 3", Family::Posthoc, 0.10, 0.10));
        let d = dominance(&front);
        assert!(!d.target_met && d.invrl_dominated);
        assert_eq!((d.posthoc_dominated, d.posthoc_points), (2, 3));
        // PaInvRL's adjusted points count only in the second verdict
        front.push(point("pref b + beta 1", Family::PainvrlPosthoc, 0.11, 0.11));
        let (plain, adjusted) = (dominance(&front), dominance_with_posthoc(&front));
        assert!(!plain.target_met && adjusted.target_met);
        assert_eq!((adjusted.posthoc_dominated, adjusted.posthoc_points), (3, 3));
        // InvRL's adjusted points are counted, not part of the target
        front.push(point("invrl + beta 1", Family::InvrlPosthoc, 0.12, 0.12));
        let adjusted = dominance_with_posthoc(&front);
        assert!(adjusted.target_met);
        assert_eq!((adjusted.invrl_posthoc_dominated, adjusted.invrl_posthoc_points), (0, 1));
        // without an InvRL point there is nothing to compare with
        front.retain(|p| p.family != Family::Invrl);
        assert!(!dominance(&front).invrl_dominated);
    }

    #[test]
    fn an_even_plan_spans_the_preferences_and_refuses_nonsense() {
        let p = FrontPlan::even(3, vec![0, 1]).unwrap();
        assert_eq!(p.preferences.len(), 3);
        for (got, want) in p.preferences.iter().zip([[0.2, 1.8], [1.0, 1.0], [1.8, 0.2]]) {
            assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12);
        }
        assert!(FrontPlan::even(1, vec![0]).unwrap_err().to_string().contains("points"));
        assert!(FrontPlan::even(2, vec![]).unwrap_err().to_string().contains("seeds"));
    }

    #[test]
    fn slugs_are_plain_directory_names() {
        assert_eq!(slug("painvrl pref [0.20, 1.80]"), "painvrl-pref-0.20-1.80");
        assert_eq!(slug("erm"), "erm");
    }

    proptest! {
        /// Dominance is a strict partial order: irreflexive, antisymmetric, transitive.
        #[test]
        fn dominance_is_a_strict_partial_order(a in (0.0..1.0f64, 0.0..1.0f64), b in (0.0..1.0f64, 0.0..1.0f64), c in (0.0..1.0f64, 0.0..1.0f64)) {
            prop_assert!(!dominates(a, a));
            prop_assert!(!(dominates(a, b) && dominates(b, a)));
            if dominates(a, b) && dominates(b, c) {
                prop_assert!(dominates(a, c));
            }
        }
    }
}
