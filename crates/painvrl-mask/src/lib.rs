//! Invariant mask generation for PaInvRL and InvRL: the MGDA minimum-norm solver (pure
//! numerics), the invariance objectives shared by mask learning and the final training
//! (IRMv1, the weighting of a penalty against accuracy), and the mask-learning loop on libtorch.
#![warn(missing_docs)]

pub mod objective;
pub mod solver;
pub mod train;

pub use objective::{
    interaction_risks, irmv1_centered_two_half, irmv1_two_half, pairwise_interaction_risks, pairwise_scale_derivatives,
    risk_variance, scale_derivatives, shaped_scale_derivatives, Combination, FinalPenalty, InvariancePenalty, RiskForm,
    Weighting,
};
pub use solver::{min_norm_point, pareto_pair, two_point, GradNormalization, MinNorm};
pub use train::{planted_mask_logits, train_mask, Mask, MaskConfig, MaskData, MaskEpochLog, MaskKind, PenaltyKind};
