//! Invariant mask generation for PaInvRL and InvRL: the MGDA minimum-norm solver (pure
//! numerics) and the mask-learning loop on libtorch.
#![warn(missing_docs)]

pub mod solver;
pub mod train;

pub use solver::{min_norm_point, pareto_pair, two_point, GradNormalization, MinNorm};
pub use train::{train_mask, Mask, MaskConfig, MaskEpochLog, MaskKind, PenaltyKind, Weighting};
