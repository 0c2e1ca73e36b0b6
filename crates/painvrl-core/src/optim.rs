//! Adam with per-group learning rate and weight decay, whose state can be checkpointed — so that
//! a resumed run continues exactly where it stopped (tch's built-in optimisers hide their state).

use crate::{Error, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

/// Learning rate and weight decay of one parameter group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupHyper {
    /// Learning rate.
    pub lr: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
}

/// One optimised tensor: its name (for checkpoints), the tensor (shared with its owner, updated
/// in place) and its group.
struct Param {
    name: String,
    tensor: Tensor,
    group: usize,
}

/// Adam (Kingma & Ba) over named tensors in parameter groups, each group with its own learning
/// rate and weight decay.
pub struct Adam {
    /// Every optimised tensor, sorted by name.
    params: Vec<Param>,
    groups: Vec<GroupHyper>,
    betas: (f64, f64),
    eps: f64,
    step: i64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Adam {
    /// Optimises the variables of `vs`; a frozen one (no gradient: `VarStore::freeze`,
    /// `set_requires_grad(false)`) is left as it is. A variable belongs to the group that
    /// tch's `Path::set_group` gave it when it was created (0 unless set); `groups[g]` holds that
    /// group's hyperparameters, and a group beyond `groups` takes `groups[0]`'s.
    pub fn new(vs: &VarStore, groups: &[GroupHyper]) -> Self {
        let group_of: BTreeMap<usize, usize> = {
            let vars = vs.variables_.lock().unwrap_or_else(|e| e.into_inner());
            vars.trainable_variables.iter().map(|v| (v.tensor.data_ptr() as usize, v.group)).collect()
        };
        let params = vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| {
                let g = group_of.get(&(tensor.data_ptr() as usize)).copied().unwrap_or(0);
                (name, tensor, g)
            })
            .collect();
        Self::with_params(params, groups.to_vec())
    }

    /// Optimises the given named tensors (leaves that require gradients), all with `hyper`.
    pub fn over(params: Vec<(String, Tensor)>, hyper: GroupHyper) -> Self {
        Self::with_params(params.into_iter().map(|(n, t)| (n, t, 0)).collect(), vec![hyper])
    }

    /// Optimises the given named tensors, each in the group its index names; `groups[g]` holds
    /// group g's hyperparameters (an index beyond `groups` takes `groups[0]`'s).
    pub fn over_groups(params: Vec<(String, Tensor, usize)>, groups: Vec<GroupHyper>) -> Self {
        Self::with_params(params, groups)
    }

    /// `params` with their group indices; an index beyond `groups` becomes 0.
    fn with_params(params: Vec<(String, Tensor, usize)>, groups: Vec<GroupHyper>) -> Self {
        let n = groups.len();
        let mut params: Vec<Param> = params
            .into_iter()
            .map(|(name, tensor, group)| Param { name, tensor, group: if group < n { group } else { 0 } })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        Adam { params, groups, betas: (0.9, 0.999), eps: 1e-8, step: 0, m: BTreeMap::new(), v: BTreeMap::new() }
    }

    /// Number of optimiser steps taken.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The group each optimised tensor belongs to, by name.
    pub fn groups_by_name(&self) -> BTreeMap<&str, usize> {
        self.params.iter().map(|p| (p.name.as_str(), p.group)).collect()
    }

    /// Sets the learning rate of group `group`.
    pub fn set_lr(&mut self, group: usize, lr: f64) {
        if let Some(g) = self.groups.get_mut(group) {
            g.lr = lr;
        }
    }

    /// Clears the gradients of the optimised tensors.
    pub fn zero_grad(&self) {
        for p in &self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// One update from the gradients currently stored on the tensors.
    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        tch::no_grad(|| {
            for Param { name, tensor, group } in &self.params {
                let mut p = tensor.shallow_clone();
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                let h = self.groups[*group];
                let grad = if h.weight_decay > 0.0 { &grad + &p * h.weight_decay } else { grad };
                let m = self.m.entry(name.clone()).or_insert_with(|| p.zeros_like());
                let _ = m.g_mul_scalar_(b1).g_add_(&(&grad * (1.0 - b1)));
                let v = self.v.entry(name.clone()).or_insert_with(|| p.zeros_like());
                let _ = v.g_mul_scalar_(b2).g_add_(&(grad.square() * (1.0 - b2)));
                let denom = (&*v / bc2).sqrt() + self.eps;
                let update = (&*m / bc1) / denom * h.lr;
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// The optimiser state as named tensors (`adam.m/<var>`, `adam.v/<var>`, `adam.step`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (n, t) in &self.m {
            out.push((format!("adam.m/{n}"), t.shallow_clone()));
        }
        for (n, t) in &self.v {
            out.push((format!("adam.v/{n}"), t.shallow_clone()));
        }
        out.push(("adam.step".into(), Tensor::from_slice(&[self.step]).to_kind(Kind::Int64)));
        out
    }

    /// Restores state produced by [`Adam::state`] (tensors moved to `device`).
    pub fn load_state(&mut self, named: &[(String, Tensor)], device: tch::Device) -> Result<()> {
        for (k, t) in named {
            if let Some(n) = k.strip_prefix("adam.m/") {
                self.m.insert(n.to_string(), t.to_device(device));
            } else if let Some(n) = k.strip_prefix("adam.v/") {
                self.v.insert(n.to_string(), t.to_device(device));
            } else if k == "adam.step" {
                self.step = t.int64_value(&[0]);
            }
        }
        Ok(())
    }
}

/// Saves the variables of `vs` plus extra named tensors to a safetensors file, atomically.
pub fn save_checkpoint(path: &Path, vs: &VarStore, extra: &[(String, Tensor)]) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (format!("var/{n}"), t)).collect();
    named.extend(extra.iter().map(|(n, t)| (n.clone(), t.shallow_clone())));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    crate::io::write_safetensors_atomic(path, &named)
}

/// Loads a checkpoint into `vs` (every variable must be present with the same shape) and
/// returns the extra tensors.
pub fn load_checkpoint(path: &Path, vs: &mut VarStore) -> Result<Vec<(String, Tensor)>> {
    let named = Tensor::read_safetensors(path)
        .map_err(|e| Error::parse(path, None, format!("not a readable checkpoint: {e}")))?;
    let mut extra = Vec::new();
    let mut found = HashSet::new();
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (k, t) in named {
            if let Some(n) = k.strip_prefix("var/") {
                let mut dst = vars
                    .get(n)
                    .ok_or_else(|| {
                        Error::parse(path, None, format!("unknown variable '{n}' (a checkpoint of another model?)"))
                    })?
                    .shallow_clone();
                if dst.size() != t.size() {
                    return Err(Error::parse(
                        path,
                        None,
                        format!("variable '{n}' has shape {:?}, the model expects {:?}", t.size(), dst.size()),
                    ));
                }
                dst.copy_(&t);
                found.insert(n.to_string());
            } else {
                extra.push((k, t));
            }
        }
        Ok(())
    })?;
    if let Some(missing) = vars.keys().find(|k| !found.contains(*k)) {
        return Err(Error::parse(path, None, format!("variable '{missing}' is missing")));
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quadratic_vs() -> (VarStore, Tensor) {
        let vs = VarStore::new(tch::Device::Cpu);
        let w = vs.root().sub("emb").zeros("w", &[3]);
        (vs, w)
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let (vs, w) = quadratic_vs();
        let target = Tensor::from_slice(&[1.0f32, -2.0, 0.5]);
        let mut opt = Adam::new(&vs, &[GroupHyper { lr: 0.1, weight_decay: 0.0 }]);
        for _ in 0..300 {
            opt.zero_grad();
            (&w - &target).square().sum(Kind::Float).backward();
            opt.step();
        }
        assert!((&w - &target).abs().max().double_value(&[]) < 1e-2);
    }

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // Adam's first bias-corrected step is lr · g / (|g| + eps) = lr · sign(g)
        let (vs, w) = quadratic_vs();
        let mut opt = Adam::new(&vs, &[GroupHyper { lr: 0.5, weight_decay: 0.0 }]);
        (&w * Tensor::from_slice(&[2.0f32, -3.0, 0.0])).sum(Kind::Float).backward();
        opt.step();
        let got: Vec<f32> = Vec::try_from(&w).unwrap();
        assert!((got[0] + 0.5).abs() < 1e-5 && (got[1] - 0.5).abs() < 1e-5 && got[2].abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn frozen_variables_stay_put() {
        let vs = VarStore::new(tch::Device::Cpu);
        let a = vs.root().sub("ids").ones("a", &[2]);
        let b = vs.root().sub("proj").ones("b", &[2]);
        let _ = a.set_requires_grad(false);
        let mut opt = Adam::new(&vs, &[GroupHyper { lr: 0.1, weight_decay: 0.0 }]);
        (&a * &b).sum(Kind::Float).backward();
        opt.step();
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), vec![1.0, 1.0]);
        assert!(Vec::<f32>::try_from(&b).unwrap()[0] < 1.0);
    }

    #[test]
    fn groups_come_from_the_path_that_created_each_variable() {
        // names say nothing here: the group is what `set_group` gave the path
        let vs = VarStore::new(tch::Device::Cpu);
        let slow = vs.root().sub("towers").set_group(1).ones("alpha", &[2]);
        let fast = vs.root().sub("towers").ones("beta", &[2]);
        let stray = vs.root().set_group(5).ones("gamma", &[2]);
        let groups = [GroupHyper { lr: 0.5, weight_decay: 0.0 }, GroupHyper { lr: 0.1, weight_decay: 0.0 }];
        let mut opt = Adam::new(&vs, &groups);
        assert_eq!(opt.groups_by_name(), [("gamma", 0), ("towers.alpha", 1), ("towers.beta", 0)].into());
        (&slow + &fast + &stray).sum(Kind::Float).backward();
        opt.step();
        // Adam's first step is lr · sign(g)
        assert!((Vec::<f32>::try_from(&slow).unwrap()[0] - 0.9).abs() < 1e-5);
        assert!((Vec::<f32>::try_from(&fast).unwrap()[0] - 0.5).abs() < 1e-5);
        assert!((Vec::<f32>::try_from(&stray).unwrap()[0] - 0.5).abs() < 1e-5);
    }

    #[test]
    fn checkpoint_round_trip_and_shape_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ck.safetensors");
        let (vs, w) = quadratic_vs();
        tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&[4.0f32, 5.0, 6.0])));
        save_checkpoint(&p, &vs, &[("extra".into(), Tensor::from_slice(&[7i64]))]).unwrap();
        let (mut vs2, w2) = quadratic_vs();
        let extra = load_checkpoint(&p, &mut vs2).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w2).unwrap(), vec![4.0, 5.0, 6.0]);
        assert_eq!(extra[0].0, "extra");
        let mut vs3 = VarStore::new(tch::Device::Cpu);
        let _ = vs3.root().sub("emb").zeros("w", &[4]);
        assert!(load_checkpoint(&p, &mut vs3).unwrap_err().to_string().contains("shape"));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load_checkpoint(&p, &mut vs2).unwrap_err().to_string().contains("ck.safetensors"));
    }
}
