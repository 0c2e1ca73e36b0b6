//! Graph recommender backbones for painvrl — UltraGCN (InvRL's), LightGCN and MF/VBPR — and
//! the trainer that fits any [`painvrl_core::Backbone`].
#![warn(missing_docs)]

pub mod backbones;
pub mod graph;
pub mod trainer;

pub use backbones::{build_backbone, BackboneConfig, BackboneKind, LightGcn, Mf, UltraGcn};
pub use graph::TrainGraph;
pub use trainer::{fit, validate, Checkpointing, EpochLog, Stage, TrainConfig, TrainData, TrainOutcome};
