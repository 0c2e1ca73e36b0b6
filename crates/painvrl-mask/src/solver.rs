//! The minimum-norm point of the convex hull of n gradients (MGDA; Désidéri 2012, Sener &
//! Koltun 2018), from their Gram matrix alone — pure numerics, no libtorch.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// The solver's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinNorm {
    /// Convex weights (on the simplex), one per gradient.
    pub weights: Vec<f64>,
    /// ‖Σ wᵢ gᵢ‖.
    pub norm: f64,
    /// Frank–Wolfe iterations (0 for the closed forms).
    pub iterations: usize,
    /// Whether the duality gap fell under the tolerance (always true for n ≤ 2).
    pub converged: bool,
}

/// How gradients are scaled before the hull is formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradNormalization {
    /// Raw gradients.
    #[default]
    None,
    /// Divide each gradient by its L2 norm.
    L2,
    /// Divide each gradient by its loss value.
    Loss,
    /// Divide each gradient by its loss value times its L2 norm.
    LossPlus,
}

impl GradNormalization {
    /// Scale factor sᵢ that gradient i is divided by, given its squared norm and loss.
    pub fn scale(self, sq_norm: f64, loss: f64) -> f64 {
        let n = sq_norm.max(0.0).sqrt();
        let s = match self {
            GradNormalization::None => 1.0,
            GradNormalization::L2 => n,
            GradNormalization::Loss => loss.abs(),
            GradNormalization::LossPlus => loss.abs() * n,
        };
        if s.is_finite() && s > 1e-12 {
            s
        } else {
            1.0
        }
    }
}

/// One step's weights on two losses: the min-norm point α of their gradients after each is
/// divided by `normalization`'s scale and multiplied by its `preference`, returned as the
/// factors `[α / s₁, (1 − α) / s₂]` to multiply the losses by, and α itself. `g11`, `g12`,
/// `g22` are the raw gradients' inner products, `losses` their values.
///
/// ```
/// use painvrl_mask::{pareto_pair, GradNormalization};
/// // g₁ = (3, 0), g₂ = (0, 1): with l2 normalisation the min-norm point is the bisector
/// let ([w1, w2], a) = pareto_pair(9.0, 0.0, 1.0, [1.0, 1.0], GradNormalization::L2, [1.0, 1.0]);
/// assert!((a - 0.5).abs() < 1e-12 && (w1 - 0.5 / 3.0).abs() < 1e-12 && (w2 - 0.5).abs() < 1e-12);
/// // raw gradients: the min-norm point of the hull of (3, 0) and (0, 1) has α = 1/10
/// let (_, a) = pareto_pair(9.0, 0.0, 1.0, [1.0, 1.0], GradNormalization::None, [1.0, 1.0]);
/// assert!((a - 0.1).abs() < 1e-12);
/// ```
pub fn pareto_pair(
    g11: f64,
    g12: f64,
    g22: f64,
    losses: [f64; 2],
    normalization: GradNormalization,
    preference: [f64; 2],
) -> ([f64; 2], f64) {
    let s1 = normalization.scale(g11, losses[0]) / preference[0];
    let s2 = normalization.scale(g22, losses[1]) / preference[1];
    let alpha = two_point(g11 / (s1 * s1), g12 / (s1 * s2), g22 / (s2 * s2));
    ([alpha / s1, (1.0 - alpha) / s2], alpha)
}

fn quad(g: &Array2<f64>, w: &[f64]) -> f64 {
    let n = w.len();
    (0..n).map(|i| (0..n).map(|j| w[i] * w[j] * g[[i, j]]).sum::<f64>()).sum()
}

/// Closed form for two gradients: weight α on g₁ is clip(((g₂ − g₁)·g₂) / ‖g₁ − g₂‖², 0, 1).
/// Identical gradients give α = ½.
pub fn two_point(g11: f64, g12: f64, g22: f64) -> f64 {
    let denom = g11 + g22 - 2.0 * g12;
    if denom <= 1e-18 * (g11.abs() + g22.abs()).max(1e-300) {
        0.5
    } else {
        ((g22 - g12) / denom).clamp(0.0, 1.0)
    }
}

/// Minimum-norm convex combination for the Gram matrix `gram` (n × n, symmetric PSD).
///
/// ```
/// use ndarray::array;
/// // g₁ = (1, 0), g₂ = (0, 1): the min-norm point is (½, ½)
/// let s = painvrl_mask::min_norm_point(&array![[1.0, 0.0], [0.0, 1.0]], 100, 1e-9);
/// assert_eq!(s.weights, vec![0.5, 0.5]);
/// assert!((s.norm - 0.5f64.sqrt()).abs() < 1e-12);
/// ```
/// For n > 2, Wolfe's min-norm-point algorithm (Frank–Wolfe vertex steps with exact affine
/// corrections) stops when the duality gap max_i(wᵀGw − (Gw)ᵢ) ≤ `tol` · max Gᵢᵢ or after
/// `max_iter` major iterations.
pub fn min_norm_point(gram: &Array2<f64>, max_iter: usize, tol: f64) -> MinNorm {
    let n = gram.nrows();
    assert_eq!(n, gram.ncols(), "gram matrix must be square");
    assert!(n > 0, "need at least one gradient");
    let finish = |w: Vec<f64>, iterations, converged| {
        let norm = quad(gram, &w).max(0.0).sqrt();
        MinNorm { weights: w, norm, iterations, converged }
    };
    if n == 1 {
        return finish(vec![1.0], 0, true);
    }
    if n == 2 {
        let a = two_point(gram[[0, 0]], gram[[0, 1]], gram[[1, 1]]);
        return finish(vec![a, 1.0 - a], 0, true);
    }
    let scale = (0..n).map(|i| gram[[i, i]]).fold(0.0f64, f64::max).max(1e-300);
    // Wolfe's min-norm-point algorithm (1976): each major cycle is a Frank–Wolfe vertex choice
    // (the gradient with the smallest projection on the current point); the minor cycles then
    // move to the exact minimiser over the affine hull of the active set, staying in the simplex.
    // Plain Frank–Wolfe converges sublinearly and stalls on nearly parallel gradients; this
    // terminates finitely in exact arithmetic and is capped at `max_iter` major cycles here.
    let start = (0..n).min_by(|&i, &j| gram[[i, i]].total_cmp(&gram[[j, j]])).expect("n > 0");
    let mut active = vec![start];
    let mut w = vec![0.0; n];
    w[start] = 1.0;
    for it in 0..max_iter {
        let gw: Vec<f64> = (0..n).map(|i| (0..n).map(|j| gram[[i, j]] * w[j]).sum()).collect();
        let vv: f64 = (0..n).map(|i| w[i] * gw[i]).sum();
        let t = (0..n).min_by(|&i, &j| gw[i].total_cmp(&gw[j])).expect("n > 0");
        if vv - gw[t] <= tol * scale {
            return finish(w, it, true);
        }
        if active.contains(&t) {
            // round-off: the affine minimiser is already optimal up to floating error
            return finish(w, it, false);
        }
        active.push(t);
        loop {
            let v = affine_minimizer(gram, &active, scale);
            if v.iter().all(|&x| x > 1e-14) {
                w.iter_mut().for_each(|x| *x = 0.0);
                for (&k, &x) in active.iter().zip(&v) {
                    w[k] = x;
                }
                break;
            }
            // move from w towards v until the first weight hits zero, then drop it
            let theta = active
                .iter()
                .zip(&v)
                .filter(|(_, &x)| x <= 1e-14)
                .map(|(&k, &x)| w[k] / (w[k] - x))
                .fold(1.0f64, f64::min);
            for (&k, &x) in active.iter().zip(&v) {
                w[k] = (1.0 - theta) * w[k] + theta * x;
            }
            active.retain(|&k| w[k] > 1e-14);
            (0..n).filter(|k| !active.contains(k)).for_each(|k| w[k] = 0.0);
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= sum);
        }
    }
    let gw: Vec<f64> = (0..n).map(|i| (0..n).map(|j| gram[[i, j]] * w[j]).sum()).collect();
    let vv: f64 = (0..n).map(|i| w[i] * gw[i]).sum();
    let converged = gw.iter().all(|&x| vv - x <= tol * scale);
    finish(w, max_iter, converged)
}

/// Weights (summing to 1, possibly negative) of the minimum-norm point of the affine hull of the
/// `active` gradients: solves [G_S 1; 1ᵀ 0] [v; λ] = [0; 1] by Gauss–Jordan elimination with
/// partial pivoting, with a ridge of 1e-12 · scale for rank-deficient sets.
fn affine_minimizer(gram: &Array2<f64>, active: &[usize], scale: f64) -> Vec<f64> {
    let m = active.len();
    let mut a = vec![vec![0.0; m + 2]; m + 1];
    for (r, &i) in active.iter().enumerate() {
        for (c, &j) in active.iter().enumerate() {
            a[r][c] = gram[[i, j]] + if r == c { 1e-12 * scale } else { 0.0 };
        }
        a[r][m] = 1.0;
        a[m][r] = 1.0;
    }
    a[m][m + 1] = 1.0;
    for col in 0..=m {
        let piv = (col..=m).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).expect("non-empty");
        a.swap(col, piv);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[col] / p;
            if r != col && f != 0.0 {
                for (x, y) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * y;
                }
            }
        }
    }
    let v: Vec<f64> = (0..m).map(|r| if a[r][r].abs() < 1e-300 { 0.0 } else { a[r][m + 1] / a[r][r] }).collect();
    let sum: f64 = v.iter().sum();
    if sum.abs() > 1e-12 {
        v.iter().map(|x| x / sum).collect()
    } else {
        vec![1.0 / m as f64; m]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gram_of(gs: &[Vec<f64>]) -> Array2<f64> {
        let n = gs.len();
        Array2::from_shape_fn((n, n), |(i, j)| gs[i].iter().zip(&gs[j]).map(|(a, b)| a * b).sum())
    }

    fn grads() -> impl Strategy<Value = Vec<Vec<f64>>> {
        (2usize..7, 1usize..6)
            .prop_flat_map(|(n, d)| proptest::collection::vec(proptest::collection::vec(-5.0f64..5.0, d), n))
    }

    #[test]
    fn golden_two_gradients() {
        // g1 = (1, 0), g2 = (0, 1): α = ((g2−g1)·g2)/‖g1−g2‖² = 1/2, d = (½, ½), ‖d‖ = √½
        let s = min_norm_point(&gram_of(&[vec![1.0, 0.0], vec![0.0, 1.0]]), 100, 1e-9);
        assert!((s.weights[0] - 0.5).abs() < 1e-12 && (s.norm - 0.5f64.sqrt()).abs() < 1e-12);
        // g1 = (2, 0), g2 = (1, 0): the min-norm point is g2 itself (α = 0)
        let s = min_norm_point(&gram_of(&[vec![2.0, 0.0], vec![1.0, 0.0]]), 100, 1e-9);
        assert_eq!(s.weights, vec![0.0, 1.0]);
    }

    #[test]
    fn adversarial_inputs_terminate() {
        for gs in [
            vec![vec![1.0, 2.0], vec![2.0, 4.0], vec![3.0, 6.0]],  // parallel
            vec![vec![1.0, 0.0], vec![-1.0, 0.0], vec![0.0, 1.0]], // opposite: origin reachable
            vec![vec![0.0, 0.0], vec![0.0, 0.0], vec![0.0, 0.0]],  // zero
        ] {
            let s = min_norm_point(&gram_of(&gs), 50, 1e-10);
            assert!(s.iterations <= 50);
            assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let s = min_norm_point(&gram_of(&[vec![1.0, 0.0], vec![-1.0, 0.0], vec![0.0, 1.0]]), 50, 1e-10);
        assert!(s.norm < 1e-6);
    }

    #[test]
    fn normalisation_scales() {
        assert_eq!(GradNormalization::L2.scale(4.0, 10.0), 2.0);
        assert_eq!(GradNormalization::Loss.scale(4.0, -3.0), 3.0);
        assert_eq!(GradNormalization::LossPlus.scale(4.0, 3.0), 6.0);
        assert_eq!(GradNormalization::L2.scale(0.0, 1.0), 1.0);
    }

    proptest! {
        #[test]
        fn simplex_kkt_and_norm_bound(gs in grads()) {
            let g = gram_of(&gs);
            let tol = 1e-7;
            let s = min_norm_point(&g, 10_000, tol);
            let scale = (0..gs.len()).map(|i| g[[i, i]]).fold(0.0f64, f64::max).max(1e-300);
            prop_assert!(s.weights.iter().all(|&w| w >= -1e-12));
            prop_assert!((s.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let d2 = s.norm * s.norm;
            for i in 0..gs.len() {
                let gid: f64 = (0..gs.len()).map(|j| g[[i, j]] * s.weights[j]).sum();
                // KKT: every gradient has at least ‖d‖² projection on d (up to the tolerance)
                prop_assert!(gid >= d2 - 2.0 * tol * scale - 1e-9, "i={} gᵢ·d={} ‖d‖²={}", i, gid, d2);
                prop_assert!(s.norm <= g[[i, i]].sqrt() + 1e-9);
            }
        }

        #[test]
        fn permutation_invariant(gs in grads(), rot in 0usize..7) {
            let n = gs.len();
            let perm: Vec<usize> = (0..n).map(|i| (i + rot) % n).collect();
            let pg: Vec<Vec<f64>> = perm.iter().map(|&i| gs[i].clone()).collect();
            let a = min_norm_point(&gram_of(&gs), 10_000, 1e-10);
            let b = min_norm_point(&gram_of(&pg), 10_000, 1e-10);
            let scale = gs.iter().map(|g| g.iter().map(|x| x * x).sum::<f64>()).fold(0.0, f64::max).sqrt().max(1.0);
            prop_assert!((a.norm - b.norm).abs() < 1e-3 * scale, "{} vs {}", a.norm, b.norm);
        }

        #[test]
        fn frank_wolfe_matches_closed_form_for_two(g1 in proptest::collection::vec(-5.0f64..5.0, 3), g2 in proptest::collection::vec(-5.0f64..5.0, 3)) {
            // duplicate g2 to force the Frank–Wolfe path (n = 3) on the same hull
            let two = min_norm_point(&gram_of(&[g1.clone(), g2.clone()]), 100, 1e-12);
            let three = min_norm_point(&gram_of(&[g1, g2.clone(), g2]), 10_000, 1e-12);
            prop_assert!((two.norm - three.norm).abs() < 1e-5);
            prop_assert!((two.weights[0] - three.weights[0]).abs() < 1e-3 || two.norm < 1e-6);
        }
    }
}
