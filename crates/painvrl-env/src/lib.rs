//! Environment inference for invariant recommendation: InvRL's heterogeneous identification
//! with the E environment models trained as one batched model, EIIL (two environments that
//! maximise a reference model's IRMv1 penalty), observable bands (item popularity, user
//! activity), a model-free split along the content dimensions on which users' taste is least
//! consistent (`taste`, the pipeline's default since session 37), and random and given labels
//! (`simple`).
#![warn(missing_docs)]

mod config;
mod eiil;
mod hetero;
mod models;
mod simple;
mod taste;
mod units;

pub use config::{GainOn, HeteroConfig, Start, Strategy, Unit};
pub use eiil::{eiil_penalty, Eiil};
pub use hetero::HeterogeneousIdentification;
pub use simple::{ActivityBands, GivenEnvironments, PopularityBands, RandomEnvironments, TimePeriods};
pub use taste::{split_along, TasteConsistencySplit, TasteSpread};

/// Normalised mutual information between two labelings (moved to `painvrl_core::metrics`).
pub use painvrl_core::metrics::nmi;

/// What the tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Mutex;
    use tch::{Device, Tensor};

    /// libtorch's generator is process-wide: tests that seed it and draw from it take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The planted dataset of the recovery tests: environments with spurious strengths 0 and 6
    /// (the Bayes classifier with the generator's true parameters reaches NMI 0.32 on it,
    /// measured with an independent NumPy reimplementation), and the planted variant
    /// representation `(1 − m) ⊙ x` the pipeline would pass from a perfect mask.
    pub(crate) fn planted(seed: u64) -> (painvrl_data::SyntheticData, Tensor) {
        planted_per(seed, false)
    }

    /// [`planted`] with each user's environment drawn once for all of its clicks when
    /// `per_user_environments`.
    pub(crate) fn planted_per(seed: u64, per_user_environments: bool) -> (painvrl_data::SyntheticData, Tensor) {
        let cfg = painvrl_data::SyntheticConfig {
            n_users: 200,
            n_items: 300,
            env_spread: 1.0,
            per_user_environments,
            seed,
            ..Default::default()
        };
        let syn = painvrl_data::generate(&cfg).unwrap();
        let keep: Vec<f32> = syn.invariant_mask.iter().map(|&inv| if inv { 0.0 } else { 1.0 }).collect();
        let variant = syn.dataset.features.to_tensor(Device::Cpu) * Tensor::from_slice(&keep);
        (syn, variant)
    }
}
