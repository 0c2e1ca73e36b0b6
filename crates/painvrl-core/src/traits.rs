//! The traits that join painvrl's modules. Implement [`Backbone`] to make your own recommender
//! robust with PaInvRL; implement [`EnvironmentInference`] to add an environment-inference method.

use crate::dataset::{Dataset, Interactions};
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The parameter group of ID embeddings. A backbone creates its user and item embeddings under
/// `path.set_group(EMBEDDING_GROUP)`; the trainer gives that group `train.lr` and
/// `train.weight_decay`, and every other variable (group 0: content projections, converters)
/// `train.lr_content` and `train.weight_decay_content`. Names play no part.
pub const EMBEDDING_GROUP: usize = 1;

/// One training mini-batch on the model's device.
#[derive(Debug)]
pub struct Batch {
    /// `[b]` int64 user ids.
    pub users: Tensor,
    /// `[b]` int64 positive item ids.
    pub pos_items: Tensor,
    /// `[b, n_neg]` int64 sampled negative item ids.
    pub neg_items: Tensor,
}

/// The form of a backbone's training loss. The invariance objectives judge the scores in the
/// same form, so that they read them on the scale the backbone fitted them on: a pointwise
/// logistic loss fixes each score's level, a pairwise one only the differences between a
/// user's scores, leaving the levels free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossShape {
    /// Each score against its label: `BCE(s⁺, 1) + mean_j BCE(s⁻_j, 0)` (UltraGCN).
    Pointwise,
    /// Each positive against its sampled negatives: `mean_j −log σ(s⁺ − s⁻_j)` (BPR: LightGCN,
    /// VBPR).
    Pairwise,
}

/// A recommender backbone whose items carry a content representation supplied from outside.
///
/// Two methods are required: the training loss and the embeddings. The backbone registers its
/// parameters under the `nn::Path` it is built from (so the owning `VarStore` checkpoints and
/// optimises them; ID embeddings go under `path.set_group(EMBEDDING_GROUP)`). `content` is
/// always the `[n_items, content_dim]` item content matrix — raw concatenated features for ERM,
/// masked features while learning the invariant mask, the converted representation for
/// PaInvRL — and gradients flow back into it.
pub trait Backbone {
    /// Scalar training loss of a batch.
    fn loss(&self, batch: &Batch, content: &Tensor) -> Tensor;

    /// `([n_users, d], [n_items, d])` embeddings whose dot products are the scores.
    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor);

    /// Short name used in reports (`ultragcn`, `lightgcn`, `mf`, ...).
    fn name(&self) -> &str {
        "custom"
    }

    /// `[b]` scores of the (user, item) pairs; higher means more likely to interact.
    fn score_pairs(&self, users: &Tensor, items: &Tensor, content: &Tensor) -> Tensor {
        let (u, i) = self.embeddings(content);
        (u.index_select(0, users) * i.index_select(0, items)).sum_dim_intlist(
            [1i64].as_slice(),
            false,
            tch::Kind::Float,
        )
    }

    /// Negatives the loss expects per positive (`Batch::neg_items` is `[b, this]`).
    fn negatives_per_positive(&self) -> usize {
        1
    }

    /// The form of [`Backbone::loss`]; [`LossShape::Pointwise`] unless a backbone says
    /// otherwise. Mask learning follows it (`mask.risk = "backbone"`).
    fn loss_shape(&self) -> LossShape {
        LossShape::Pointwise
    }

    /// The `[content_dim, c]` variable that projects item content into the embedding, if the
    /// backbone has one. Mask learning trains it with the mask (`mask.train_projection`), the
    /// final model starts its converter from it, and [`Backbone::cold_start`] embeds new items
    /// through it.
    fn content_projection(&self) -> Option<Tensor> {
        None
    }

    /// How an item with no interactions is embedded from its content alone, so that new items
    /// can be ranked with the catalogue after training; `None` (the default) when the backbone
    /// cannot. Requires a [`Backbone::content_projection`]; checked against the embedding's
    /// width when the model is saved.
    fn cold_start(&self) -> Option<ColdStartLayout> {
        None
    }
}

/// The embedding of an item without interactions: `[0 (id_dim); (content · proj)] · scale`,
/// followed by `trailing_zeros` zero columns. `proj` is the backbone's
/// [`Backbone::content_projection`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColdStartLayout {
    /// Width of the ID part (zero for a new item).
    pub id_dim: usize,
    /// Factor applied to the whole embedding (LightGCN's layer mean gives 1 / (L + 1)).
    pub scale: f64,
    /// Zero columns appended (VBPR's item-bias column).
    pub trailing_zeros: usize,
}

/// Environment labels for the training interactions, with a report of how they were found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentAssignment {
    /// Environment id of each training interaction, in training-split order.
    pub labels: Vec<u32>,
    /// Number of environments.
    pub n_envs: usize,
    /// Interactions per environment.
    pub sizes: Vec<usize>,
    /// Fraction of labels that changed at each iteration.
    pub changed_fraction: Vec<f64>,
    /// Iterations run.
    pub iterations: usize,
    /// Environments that emptied and were re-seeded.
    pub reseeded: usize,
    /// Seconds spent.
    pub seconds: f64,
}

impl EnvironmentAssignment {
    /// Wraps labels, computing sizes; no iterations.
    pub fn from_labels(labels: Vec<u32>, n_envs: usize) -> Self {
        let mut sizes = vec![0; n_envs];
        for &l in &labels {
            sizes[l as usize] += 1;
        }
        EnvironmentAssignment {
            labels,
            n_envs,
            sizes,
            changed_fraction: vec![],
            iterations: 0,
            reseeded: 0,
            seconds: 0.0,
        }
    }

    /// The training interactions of environment `e`.
    pub fn split(&self, train: &Interactions, e: usize) -> Interactions {
        Interactions::from_pairs(train.iter().zip(&self.labels).filter(|(_, &l)| l as usize == e).map(|(p, _)| p))
    }
}

/// Assigns every training interaction to one of several environments.
pub trait EnvironmentInference {
    /// Method name for reports.
    fn name(&self) -> &str;

    /// Infers environments. `variant` is the `[n_items, c]` variant representation from the
    /// previous round's mask, when one exists; `None` on the first round.
    fn infer(&mut self, data: &Dataset, variant: Option<&Tensor>, seed: u64) -> Result<EnvironmentAssignment>;

    /// Environment labels for clicks outside the training set (e.g. the validation split), by
    /// the rule that labels the training clicks, when the inference has one that needs no
    /// retraining; `None` (the default) when it has none.
    fn label_heldout(&self, data: &Dataset, clicks: &Interactions) -> Option<Result<Vec<u32>>> {
        let _ = (data, clicks);
        None
    }
}

/// A second objective that a training step balances against the backbone's own loss, e.g.
/// PaInvRL's invariance penalty across environments. It owns the step's backward pass.
pub trait StepObjective {
    /// Leaves on the variables of `vs` the gradient of the step's combined objective, given
    /// the backbone's `loss` on `batch`, whose positives are the training interactions at
    /// `positions`. Returns the weight the combination put on `loss` (for the log), if any.
    fn backward(
        &self,
        vs: &tch::nn::VarStore,
        backbone: &dyn Backbone,
        content: &Tensor,
        batch: &Batch,
        positions: &[usize],
        loss: &Tensor,
    ) -> Result<Option<f64>>;
}
