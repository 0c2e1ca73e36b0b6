//! With environments it infers itself (the defaults: heterogeneous identification, LightGCN),
//! PaInvRL's mask ranks the planted invariant dimensions of the `exposure` synthetic family
//! above the variant ones (issue #19's mask target, ROC-AUC ≥ 0.85). The other two families have
//! no such test, because the target does not hold reliably there (docs/method.md, "A mask at the
//! bound"): `mix` reaches it on the mean of three training seeds through the CLI (0.93 ± 0.07)
//! but not on every seed (0.77 for the in-process set this test would use), `affinity` not at all.

use painvrl::config::{Config, Method};
use painvrl::core::metrics::roc_auc;
use painvrl::core::DeviceSpec;
use painvrl::data::{generate, ShiftFamily, SyntheticConfig};

/// Mask ROC-AUC of the default PaInvRL on `family`'s default set (generator seed 0), training
/// seed 0, one thread.
fn mask_auc(family: ShiftFamily) -> f64 {
    let syn = generate(&SyntheticConfig { family, ..Default::default() }).unwrap();
    let mut cfg = Config { method: Method::Painvrl, device: DeviceSpec::Cpu, threads: 1, ..Default::default() };
    cfg.train.progress = false;
    // only the mask is under test: the final training is cut to one epoch (it runs after it)
    cfg.train.epochs = 1;
    let report = painvrl::pipeline::run(&syn.dataset, &cfg, None, false).unwrap();
    roc_auc(&report.mask, &syn.invariant_mask)
}

#[test]
fn the_mask_ranks_the_exposure_familys_planted_dimensions_with_inferred_environments() {
    let auc = mask_auc(ShiftFamily::Exposure);
    // measured: 0.984 here (one thread); 0.984, 0.984, 1.000 for training seeds 0–2 through
    // `painvrl synth --family exposure` and `painvrl train`
    assert!(auc >= 0.85, "mask ROC-AUC {auc:.3}");
}
