//! Datasets for painvrl: loaders for the canonical, MMRec and rating-log layouts, validation,
//! per-user and OOD splits, negative sampling and a synthetic generator with planted structure.
//!
//! ```no_run
//! use painvrl_data::{load_dir, LoadOptions};
//! let (ds, report) = load_dir(std::path::Path::new("data/tiktok"), &LoadOptions::default())?;
//! println!("{}", ds.summary());
//! # Ok::<(), painvrl_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod load;
pub mod npy;
pub mod sampler;
pub mod split;
pub mod synthetic;
pub mod tsv;

pub use load::{describe, load_dir, load_features, LoadOptions, LoadReport};
pub use sampler::{epoch_batches, make_batch, NegativeSampler};
pub use split::{
    ood_by_popularity, ood_by_time, prepare_ood, split_per_user, val_ood_by_popularity, write_dataset, OodInfo,
    PopularityOod, SplitStrategy,
};
pub use synthetic::{generate, ShiftFamily, SyntheticConfig, SyntheticData};
