//! Training-graph structures shared by the backbones: degrees, UltraGCN constraint weights,
//! the normalised adjacency of LightGCN and item–item co-occurrence neighbours.

use painvrl_core::{Interactions, UserItems};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Degrees and adjacency of the training interactions.
#[derive(Clone, Debug)]
pub struct TrainGraph {
    /// Number of users.
    pub n_users: usize,
    /// Number of items.
    pub n_items: usize,
    /// Training items per user (deduplicated).
    pub user_items: UserItems,
    /// Training degree of each user.
    pub user_degree: Vec<u32>,
    /// Training degree of each item.
    pub item_degree: Vec<u32>,
}

impl TrainGraph {
    /// Builds the graph of `train`.
    pub fn new(n_users: usize, n_items: usize, train: &Interactions) -> Self {
        let user_items = UserItems::build(n_users, &[train]);
        let mut user_degree = vec![0u32; n_users];
        let mut item_degree = vec![0u32; n_items];
        for (u, deg) in user_degree.iter_mut().enumerate() {
            let items = user_items.items_of(u);
            *deg = items.len() as u32;
            for &i in items {
                item_degree[i as usize] += 1;
            }
        }
        TrainGraph { n_users, n_items, user_items, user_degree, item_degree }
    }

    /// UltraGCN's β_u = √(d_u + 1) / d_u (0 for users without interactions) as a float tensor.
    pub fn beta_users(&self, device: Device) -> Tensor {
        let v: Vec<f32> =
            self.user_degree.iter().map(|&d| if d == 0 { 0.0 } else { ((d as f32) + 1.0).sqrt() / d as f32 }).collect();
        Tensor::from_slice(&v).to_device(device)
    }

    /// UltraGCN's β_i = 1 / √(d_i + 1) as a float tensor.
    pub fn beta_items(&self, device: Device) -> Tensor {
        let v: Vec<f32> = self.item_degree.iter().map(|&d| 1.0 / ((d as f32) + 1.0).sqrt()).collect();
        Tensor::from_slice(&v).to_device(device)
    }

    /// The symmetric-normalised bipartite adjacency D^-½ A D^-½ over `n_users + n_items` nodes
    /// (users first), as a coalesced sparse COO tensor.
    pub fn normalized_adjacency(&self, device: Device) -> Tensor {
        let nnz = self.user_items.nnz();
        let (mut rows, mut cols, mut vals) =
            (Vec::with_capacity(2 * nnz), Vec::with_capacity(2 * nnz), Vec::with_capacity(2 * nnz));
        for u in 0..self.n_users {
            for &i in self.user_items.items_of(u) {
                let w = 1.0 / ((self.user_degree[u] as f32) * (self.item_degree[i as usize] as f32)).sqrt();
                let (a, b) = (u as i64, (self.n_users + i as usize) as i64);
                rows.extend([a, b]);
                cols.extend([b, a]);
                vals.extend([w, w]);
            }
        }
        let n = (self.n_users + self.n_items) as i64;
        let idx = Tensor::stack(&[Tensor::from_slice(&rows), Tensor::from_slice(&cols)], 0);
        Tensor::sparse_coo_tensor_indices_size(
            &idx,
            &Tensor::from_slice(&vals),
            [n, n],
            (Kind::Float, Device::Cpu),
            false,
        )
        .coalesce()
        .to_device(device)
    }

    /// For each item, its `k` most co-occurring items (by number of shared users) and weights
    /// normalised as UltraGCN does: ω_ij = c_ij / (d_i − c_ii) · √((d_i + 1)/(d_j + 1)).
    /// Items with fewer neighbours are padded with themselves at weight 0.
    pub fn item_neighbors(&self, k: usize) -> (Vec<i64>, Vec<f32>) {
        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); self.n_items];
        for u in 0..self.n_users {
            for &i in self.user_items.items_of(u) {
                item_users[i as usize].push(u as u32);
            }
        }
        let mut idx = vec![0i64; self.n_items * k];
        let mut w = vec![0f32; self.n_items * k];
        for i in 0..self.n_items {
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for &u in &item_users[i] {
                for &j in self.user_items.items_of(u as usize) {
                    if j as usize != i {
                        *counts.entry(j).or_default() += 1;
                    }
                }
            }
            let mut top: Vec<(u32, u32)> = counts.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let di = self.item_degree[i] as f32;
            for s in 0..k {
                let (j, c) = top.get(s).copied().unwrap_or((i as u32, 0));
                idx[i * k + s] = j as i64;
                let dj = self.item_degree[j as usize] as f32;
                w[i * k + s] = if c == 0 || di == 0.0 { 0.0 } else { c as f32 / di * ((di + 1.0) / (dj + 1.0)).sqrt() };
            }
        }
        (idx, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultragcn_betas_match_the_formula() {
        // user 0 has degree 2: β = √3 / 2; item 0 has degree 1: β = 1/√2
        let g = TrainGraph::new(2, 3, &Interactions::from_pairs([(0, 0), (0, 1)]));
        let bu: Vec<f32> = Vec::try_from(g.beta_users(Device::Cpu)).unwrap();
        let bi: Vec<f32> = Vec::try_from(g.beta_items(Device::Cpu)).unwrap();
        assert!((bu[0] - 3f32.sqrt() / 2.0).abs() < 1e-6 && bu[1] == 0.0);
        assert!((bi[0] - 0.5f32.sqrt()).abs() < 1e-6 && (bi[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn adjacency_is_symmetric_and_normalised() {
        // user 0 – items 0, 1; user 1 – item 0: entry (u0, i0) = 1/√(2·2) = 0.5
        let g = TrainGraph::new(2, 2, &Interactions::from_pairs([(0, 0), (0, 1), (1, 0)]));
        let a = g.normalized_adjacency(Device::Cpu).to_dense(None, false);
        assert!((a.double_value(&[0, 2]) - 0.5).abs() < 1e-6);
        assert!((&a - a.tr()).abs().max().double_value(&[]) < 1e-7);
        assert!((a.double_value(&[0, 3]) - 1.0 / 2f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn neighbours_rank_by_co_occurrence() {
        // items 0 and 1 share users 0 and 1; items 0 and 2 share user 1 only
        let x = Interactions::from_pairs([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]);
        let (idx, w) = TrainGraph::new(2, 3, &x).item_neighbors(2);
        assert_eq!(&idx[0..2], &[1, 2]);
        assert!(w[0] > w[1] && w[1] > 0.0);
    }
}
