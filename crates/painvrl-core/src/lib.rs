//! Core of painvrl: the traits other crates implement, the dataset types they share, device
//! selection, errors and full-ranking evaluation.
//!
//! ```
//! use painvrl_core::metrics::user_metrics;
//! // ranked hits [hit, miss], one relevant item, K = 2: recall 1, precision 0.5, NDCG 1
//! let m = user_metrics(&[true, false], 1, 2);
//! assert_eq!(m[0], 1.0);
//! assert_eq!(m[2], 1.0);
//! ```
#![warn(missing_docs)]

pub mod checked;
pub mod dataset;
pub mod device;
pub mod error;
pub mod eval;
pub mod io;
pub mod metrics;
pub mod ops;
pub mod optim;
pub mod signal;
pub mod traits;

pub use checked::{Checked, Validate};
pub use dataset::{Dataset, DatasetCounts, Interactions, ItemFeatures, Modality, PlantedTruth, UserItems};
pub use device::{init_runtime, to_device_async, DeviceSpec};
pub use error::{Error, Result};
pub use eval::{evaluate, evaluate_with_list_popularity, list_popularity, BlockScorer, EmbeddingScorer, EvalConfig};
pub use metrics::SplitMetrics;
pub use tch;
pub use traits::{
    Backbone, Batch, ColdStartLayout, EnvironmentAssignment, EnvironmentInference, LossShape, StepObjective,
    EMBEDDING_GROUP,
};
