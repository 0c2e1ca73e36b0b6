//! painvrl: Pareto invariant representation learning (PaInvRL) and InvRL for multimedia
//! recommendation, on libtorch. This facade re-exports the family of crates and runs the whole
//! method; see the README for the quick start and `docs/` for the method and architecture.
//!
//! ```no_run
//! use painvrl::{config::{Config, Method}, pipeline::run};
//! let (ds, _) = painvrl::data::load_dir(std::path::Path::new("data/tiktok"), &Default::default())?;
//! let cfg = Config { method: Method::Painvrl, ..Default::default() };
//! let report = run(&ds, &cfg, None, false)?;
//! println!("{:?}", report.metrics["test"]["recall@20"]);
//! # Ok::<(), painvrl::core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod baselines;
pub mod bench;
pub mod blend;
pub mod config;
pub mod diagnostics;
pub mod front;
pub mod memory;
pub mod pipeline;
pub mod plots;
pub mod recommender;
pub mod report;

pub use painvrl_baselines as reference;
pub use painvrl_convert as convert;
pub use painvrl_core as core;
pub use painvrl_data as data;
pub use painvrl_env as env;
pub use painvrl_graph as graph;
pub use painvrl_mask as mask;
