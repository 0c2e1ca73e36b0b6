//! PaInvRL against ERM on the synthetic generator's planted shift (issue 8's target): averaged
//! over seeds 0–4, with the planted environments, `painvrl` must beat `erm` on test_ood
//! Recall@20 by at least 5 % relative while keeping test Recall@20 within 3 % of `erm`.
//! Default configuration (two environments), CPU, one thread (bitwise reproducible).

use painvrl::config::{Config, Method};
use painvrl::core::DeviceSpec;
use painvrl::data::{generate, SyntheticConfig};
use painvrl::env::GivenEnvironments;
use painvrl::pipeline::{run_with, Components};

/// Mean test and test_ood Recall@20 of `method` over `seeds`.
fn mean_recall(method: Method, seeds: &[u64]) -> (f64, f64) {
    let (mut iid, mut ood) = (0.0, 0.0);
    for &seed in seeds {
        let syn = generate(&SyntheticConfig { seed, ..Default::default() }).unwrap();
        let mut cfg = Config { method, seed, device: DeviceSpec::Cpu, threads: 1, ..Default::default() };
        // the target was measured with UltraGCN (the default backbone until the baselines issue)
        cfg.backbone.kind = painvrl::graph::BackboneKind::Ultragcn;
        cfg.envs.n_envs = 2;
        cfg.train.progress = false;
        let parts = Components {
            inference: Some(Box::new(GivenEnvironments { labels: syn.train_envs.clone() })),
            ..Default::default()
        };
        let r = run_with(&syn.dataset, &cfg, None, false, parts).unwrap();
        let (i, o) = (r.metrics["test"]["recall@20"], r.metrics["test_ood"]["recall@20"]);
        eprintln!("{} seed {seed}: IID {i:.4} OOD {o:.4}", method.name());
        iid += i;
        ood += o;
    }
    (iid / seeds.len() as f64, ood / seeds.len() as f64)
}

#[test]
fn painvrl_beats_erm_out_of_distribution_at_equal_iid_accuracy() {
    let seeds = [0, 1, 2, 3, 4];
    let (erm_iid, erm_ood) = mean_recall(Method::Erm, &seeds);
    let (pa_iid, pa_ood) = mean_recall(Method::Painvrl, &seeds);
    eprintln!("mean: erm IID {erm_iid:.4} OOD {erm_ood:.4}; painvrl IID {pa_iid:.4} OOD {pa_ood:.4}");
    // measured: erm 0.2111 / 0.0525, painvrl 0.2109 / 0.0563 (IID / OOD; +7.2 % OOD, −0.1 %
    // IID). Per seed the OOD gain ranges from −16 % to +26 %: the mean is the claim
    assert!(pa_ood >= 1.05 * erm_ood, "painvrl OOD {pa_ood:.4} is not 5 % above erm's {erm_ood:.4}");
    assert!(pa_iid >= 0.97 * erm_iid, "painvrl IID {pa_iid:.4} is more than 3 % below erm's {erm_iid:.4}");
}
