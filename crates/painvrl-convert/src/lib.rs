//! Representation conversion for PaInvRL (module iii): invariant and variant parts of the item
//! features, their projections, and a weighted summation with per-item attention weights.
//!
//! x_inv = m ⊙ x, x_var = (1 − m) ⊙ x, h_inv = x_inv W_inv, h_var = x_var W_var,
//! h = β_i h_inv + (1 − β_i) h_var with β_i = σ([h_inv; h_var] · a + b) (or one learned scalar).
//! At inference the variant half can be turned down, h = β_i h_inv + γ (1 − β_i) h_var
//! ([`Converter::encode_with_variant_weight`]).
#![warn(missing_docs)]

use painvrl_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// How the invariant and variant projections are fused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Per-item attention weights from `[h_inv; h_var]`.
    Attention,
    /// One learned scalar weight for all items (ablation).
    Scalar,
    /// The invariant projection alone (ablation; InvRL-like).
    InvariantOnly,
}

/// How the learned mask enters the conversion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskUse {
    /// The mask's values as learned.
    #[default]
    Soft,
    /// 0/1 by [`binarize`]: a soft mask followed by a trainable projection only rescales
    /// dimensions, which the projection can undo; a zero removes them.
    Binary,
}

/// Splits mask values into two classes at the threshold that maximises the between-class
/// variance (Otsu's method over the sorted values) and returns 1 for the upper class, 0 for the
/// lower; all ones when every value is the same.
///
/// ```
/// use tch::Tensor;
/// let m = Tensor::from_slice(&[0.9f32, 0.2, 0.8, 0.25, 0.85]);
/// let b = Vec::<f32>::try_from(painvrl_convert::binarize(&m)).unwrap();
/// assert_eq!(b, vec![1.0, 0.0, 1.0, 0.0, 1.0]);
/// ```
pub fn binarize(m: &Tensor) -> Tensor {
    let values: Vec<f32> = Vec::try_from(m.to_device(tch::Device::Cpu).to_kind(Kind::Float)).unwrap_or_default();
    let mut sorted = values.clone();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let total: f64 = sorted.iter().map(|&v| v as f64).sum();
    let (mut best, mut threshold, mut below) = (0.0f64, f32::NEG_INFINITY, 0.0f64);
    for k in 1..n {
        below += sorted[k - 1] as f64;
        if sorted[k] == sorted[k - 1] {
            continue;
        }
        let (n0, n1) = (k as f64, (n - k) as f64);
        let gap = below / n0 - (total - below) / n1;
        let between = n0 * n1 * gap * gap;
        if between > best {
            best = between;
            threshold = (sorted[k - 1] + sorted[k]) / 2.0;
        }
    }
    let out: Vec<f32> = values.iter().map(|&v| if v > threshold { 1.0 } else { 0.0 }).collect();
    Tensor::from_slice(&out).to_device(m.device())
}

/// The invariant part m ⊙ x.
pub fn invariant(x: &Tensor, m: &Tensor) -> Tensor {
    x * m
}

/// The variant part (1 − m) ⊙ x, which feeds environment inference in the next round.
pub fn variant(x: &Tensor, m: &Tensor) -> Tensor {
    x * (m.ones_like() - m)
}

/// The converter's parameters (under the path it was built from).
#[derive(Debug)]
pub struct Converter {
    w_inv: Tensor,
    w_var: Tensor,
    att: Tensor,
    att_bias: Tensor,
    fusion: Fusion,
}

impl Converter {
    /// Creates projections `d_in → d_out` and the fusion weights under `p`.
    pub fn new(p: &nn::Path, d_in: usize, d_out: usize, fusion: Fusion) -> Result<Self> {
        if d_in == 0 || d_out == 0 {
            return Err(Error::config("convert.dim", "input and output widths must be ≥ 1"));
        }
        let b = 1.0 / (d_in as f64).sqrt();
        let init = nn::Init::Uniform { lo: -b, up: b };
        Ok(Converter {
            w_inv: p.var("w_inv", &[d_in as i64, d_out as i64], init),
            w_var: p.var("w_var", &[d_in as i64, d_out as i64], init),
            att: p.var("att", &[2 * d_out as i64, 1], nn::Init::Const(0.0)),
            att_bias: p.var("att_bias", &[1], nn::Init::Const(0.0)),
            fusion,
        })
    }

    /// Per-item fusion weights β `[n, 1]` for the given projections.
    pub fn weights(&self, h_inv: &Tensor, h_var: &Tensor) -> Tensor {
        match self.fusion {
            Fusion::Attention => (Tensor::cat(&[h_inv, h_var], 1).matmul(&self.att) + &self.att_bias).sigmoid(),
            Fusion::Scalar => self.att_bias.sigmoid().expand([h_inv.size()[0], 1], false),
            Fusion::InvariantOnly => Tensor::ones([h_inv.size()[0], 1], (Kind::Float, h_inv.device())),
        }
    }

    /// The fused representation h `[n, d_out]` of features `x` `[n, d_in]` under mask `m` `[d_in]`.
    pub fn encode(&self, x: &Tensor, m: &Tensor) -> Tensor {
        self.encode_with_variant_weight(x, m, 1.0)
    }

    /// The fused representation with the variant half weighted by `gamma`:
    /// h = β h_inv + γ (1 − β) h_var, the fusion weights β as [`Converter::encode`] computes
    /// them (from the whole variant projection). γ = 1 is [`Converter::encode`]; γ = 0 keeps
    /// the invariant half alone. Trained with γ = 1, the variant half can absorb what the
    /// masked-out dimensions predict in training, and a model served with γ < 1 leaves it out
    /// (the bias branch removed at inference, as MACR and PDA do with popularity).
    pub fn encode_with_variant_weight(&self, x: &Tensor, m: &Tensor, gamma: f64) -> Tensor {
        let h_inv = invariant(x, m).matmul(&self.w_inv);
        let h_var = variant(x, m).matmul(&self.w_var);
        let beta = self.weights(&h_inv, &h_var);
        &beta * h_inv + (beta.ones_like() - &beta) * h_var * gamma
    }

    /// The shape `[d_in, d_out]` of each projection.
    pub fn projection_shape(&self) -> Vec<i64> {
        self.w_inv.size()
    }

    /// Starts the projections from a pre-trained content projection `w` `[d_in, d_out]` so that
    /// the fused representation is `scale · x w` for every mask: W_inv = scale · w / β₀ and
    /// W_var = scale · w / (1 − β₀), where β₀ is the fusion weight the converter starts with (½
    /// for attention and scalar fusion, whose weights start at zero); then
    /// β₀ (m ⊙ x) W_inv + (1 − β₀)((1 − m) ⊙ x) W_var = scale · x w. `scale = 1` starts the
    /// converter as the pre-trained content; ½ with β₀ = ½ copies `w` into both projections.
    /// With invariant-only fusion (β = 1) W_inv = scale · w and the start is scale · (m ⊙ x) w.
    /// Call it on a freshly built converter: trained attention weights make β depend on the
    /// projections.
    pub fn start_from(&self, w: &Tensor, scale: f64) -> Result<()> {
        if w.size() != self.projection_shape() {
            return Err(Error::InvalidData(format!(
                "pre-trained content projection is {:?}, the converter's projections are {:?}",
                w.size(),
                self.projection_shape()
            )));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::config("start_from.scale", format!("must be finite and > 0, got {scale}")));
        }
        let beta0 = match self.fusion {
            Fusion::InvariantOnly => 1.0,
            Fusion::Attention | Fusion::Scalar => self.att_bias.sigmoid().double_value(&[0]),
        };
        let var_weight = if beta0 < 1.0 { 1.0 - beta0 } else { 1.0 };
        tch::no_grad(|| {
            self.w_inv.shallow_clone().copy_(&(w * (scale / beta0)));
            self.w_var.shallow_clone().copy_(&(w * (scale / var_weight)));
        });
        Ok(())
    }

    /// Its variables by their names under the converter's path (`w_inv`, `w_var`, `att`,
    /// `att_bias`), detached: what a saved model needs to encode new items.
    pub fn variables(&self) -> Vec<(String, Tensor)> {
        [("w_inv", &self.w_inv), ("w_var", &self.w_var), ("att", &self.att), ("att_bias", &self.att_bias)]
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.detach()))
            .collect()
    }
}

impl std::str::FromStr for Fusion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "attention" => Ok(Fusion::Attention),
            "scalar" => Ok(Fusion::Scalar),
            "invariant-only" | "invariantonly" => Ok(Fusion::InvariantOnly),
            _ => Err(Error::config("convert.fusion", format!("'{s}' is not one of attention, scalar, invariant-only"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::VarStore, Device};

    #[test]
    fn parts_sum_to_the_features() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        let m = Tensor::from_slice(&[0.25f32, 1.0]);
        let s = invariant(&x, &m) + variant(&x, &m);
        assert!((s - &x).abs().max().double_value(&[]) < 1e-7);
    }

    #[test]
    fn fusion_weights_start_at_half_and_mix() {
        let vs = VarStore::new(Device::Cpu);
        let c = Converter::new(&vs.root(), 3, 2, Fusion::Attention).unwrap();
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let m = Tensor::from_slice(&[1.0f32, 0.0, 0.5]);
        let h_inv = invariant(&x, &m).matmul(&c.w_inv);
        let h_var = variant(&x, &m).matmul(&c.w_var);
        // zero-initialised attention gives β = σ(0) = ½ for every item
        let want = (&h_inv + &h_var) * 0.5;
        assert!((c.encode(&x, &m) - want).abs().max().double_value(&[]) < 1e-6);
    }

    #[test]
    fn the_variant_weight_scales_the_variant_half_alone() {
        let vs = VarStore::new(Device::Cpu);
        let c = Converter::new(&vs.root(), 3, 2, Fusion::Attention).unwrap();
        // attention that depends on the item, so that β is not ½ everywhere
        tch::no_grad(|| c.att.shallow_clone().copy_(&Tensor::from_slice(&[0.7f32, -1.3, 0.4, 2.0]).reshape([4, 1])));
        let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
        let m = Tensor::from_slice(&[0.9f32, 0.1, 0.5]);
        let h_inv = invariant(&x, &m).matmul(&c.w_inv);
        let h_var = variant(&x, &m).matmul(&c.w_var);
        let beta = c.weights(&h_inv, &h_var);
        assert!(beta.std(false).double_value(&[]) > 1e-3, "β must differ across items");
        let close = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) < 1e-6;
        assert!(close(&c.encode_with_variant_weight(&x, &m, 1.0), &c.encode(&x, &m)));
        // γ = 0: the invariant half at the weights the whole representation gives it
        assert!(close(&c.encode_with_variant_weight(&x, &m, 0.0), &(&beta * &h_inv)));
        for gamma in [0.25, 0.6] {
            let want = &beta * &h_inv + (beta.ones_like() - &beta) * &h_var * gamma;
            assert!(close(&c.encode_with_variant_weight(&x, &m, gamma), &want), "γ = {gamma}");
        }
    }

    #[test]
    fn start_from_scales_the_pretrained_content_for_any_mask() {
        let w = Tensor::randn([3, 2], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let close = |a: Tensor, b: Tensor| (a - b).abs().max().double_value(&[]) < 1e-5;
        for m in [[1.0f32, 0.0, 0.5], [0.2, 0.2, 0.2], [0.0, 0.0, 0.0]] {
            let m = Tensor::from_slice(&m);
            for scale in [1.0, 0.5, 0.75] {
                for fusion in [Fusion::Attention, Fusion::Scalar] {
                    let vs = VarStore::new(Device::Cpu);
                    let c = Converter::new(&vs.root(), 3, 2, fusion).unwrap();
                    c.start_from(&w, scale).unwrap();
                    assert!(close(c.encode(&x, &m), x.matmul(&w) * scale));
                }
                // invariant-only keeps the masked part only: scale · (m ⊙ x) w
                let vs = VarStore::new(Device::Cpu);
                let c = Converter::new(&vs.root(), 3, 2, Fusion::InvariantOnly).unwrap();
                c.start_from(&w, scale).unwrap();
                assert!(close(c.encode(&x, &m), invariant(&x, &m).matmul(&w) * scale));
            }
        }
        // at ½ both projections are the pre-trained one, bit for bit (the pre-session-10 start)
        let vs = VarStore::new(Device::Cpu);
        let c = Converter::new(&vs.root(), 3, 2, Fusion::Attention).unwrap();
        c.start_from(&w, 0.5).unwrap();
        assert_eq!(c.w_inv.eq_tensor(&w).all().int64_value(&[]), 1);
        assert_eq!(c.w_var.eq_tensor(&w).all().int64_value(&[]), 1);
    }

    #[test]
    fn start_from_rejects_another_shape_and_a_nonsense_scale() {
        let vs = VarStore::new(Device::Cpu);
        let c = Converter::new(&vs.root(), 3, 2, Fusion::Attention).unwrap();
        let err = c.start_from(&Tensor::zeros([3, 4], (Kind::Float, Device::Cpu)), 1.0).unwrap_err();
        assert!(err.to_string().contains("[3, 4]"), "{err}");
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = c.start_from(&Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)), scale).unwrap_err();
            assert!(err.to_string().contains("start_from.scale"), "{err}");
        }
    }

    #[test]
    fn invariant_only_ignores_variant_dims() {
        let vs = VarStore::new(Device::Cpu);
        let c = Converter::new(&vs.root(), 2, 2, Fusion::InvariantOnly).unwrap();
        let m = Tensor::from_slice(&[1.0f32, 0.0]);
        let a = c.encode(&Tensor::from_slice(&[1.0f32, 5.0]).reshape([1, 2]), &m);
        let b = c.encode(&Tensor::from_slice(&[1.0f32, -7.0]).reshape([1, 2]), &m);
        assert!((a - b).abs().max().double_value(&[]) < 1e-7);
    }

    #[test]
    fn binarize_splits_at_the_largest_gap_and_keeps_flat_masks() {
        let b = |v: &[f32]| Vec::<f32>::try_from(binarize(&Tensor::from_slice(v))).unwrap();
        assert_eq!(b(&[0.1, 0.11, 0.12, 0.7]), vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(b(&[0.5, 0.5, 0.5]), vec![1.0, 1.0, 1.0]);
        assert_eq!(b(&[0.3]), vec![1.0]);
        assert!(b(&[]).is_empty());
    }
}
