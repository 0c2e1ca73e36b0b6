//! Using a trained model: load a finished run, recommend top-K items per user, score items, rank
//! new items (feature rows without interactions) with the catalogue, and export the vectors.
//!
//! Scoring formula (what an approximate-nearest-neighbour index must reproduce):
//! `score(u, i) = users[u] · items[i]`, with `users.npy` and `items.npy` from [`Recommender::export_npy`].
//! A new item's vector is `[0 (id_dim) ; encode(x) · proj] · scale ++ 0 (trailing_zeros)` where
//! `encode(x)` is the raw (per-modality L2-normalised) features for ERM, and the converter's
//! `β·(m⊙x)W_inv + (1−β)·((1−m)⊙x)W_var` otherwise (see `model.json`).

use painvrl_convert::{Converter, Fusion};
use painvrl_core::{
    Backbone, ColdStartLayout, Dataset, Error, Interactions, ItemFeatures, Modality, Result, UserItems,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Version of the `model.json` / `model.safetensors` pair this build reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// `model.json`: what is needed to rebuild the scorer from `model.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// Format version; a run from another version is refused.
    pub format_version: u32,
    /// Method that produced the model.
    pub method: String,
    /// Backbone name.
    pub backbone: String,
    /// Item-content encoder: `none` (raw features) or the converter's fusion.
    pub fusion: Option<Fusion>,
    /// The weight γ of the converter's variant half in the item vectors
    /// ([`Converter::encode_with_variant_weight`]); new items are embedded with it too.
    /// Manifests written before it existed load as 1.
    #[serde(default = "full_variant_weight")]
    pub variant_weight: f64,
    /// Layout of a new item's vector; `None` when the backbone cannot embed new items.
    #[serde(default)]
    pub cold_start: Option<ColdStartLayout>,
    /// Modalities, in column order, that new feature rows must match.
    pub modalities: Vec<Modality>,
    /// Users.
    pub n_users: usize,
    /// Items at training time.
    pub n_items: usize,
    /// Width of the user and item vectors.
    pub dim: usize,
}

/// The variant weight of a manifest that does not name one: the model as trained.
fn full_variant_weight() -> f64 {
    1.0
}

/// What a finished run saves: final embeddings and everything needed to embed new items.
pub struct TrainedModel {
    /// `[n_users, dim]`.
    pub users: Tensor,
    /// `[n_items, dim]`.
    pub items: Tensor,
    /// Mask `[d_in]`, when the method learned one.
    pub mask: Option<Tensor>,
    /// Converter variables by name (`w_inv`, `w_var`, `att`, `att_bias`), when used.
    pub converter: Vec<(String, Tensor)>,
    /// The converter's fusion, when used.
    pub fusion: Option<Fusion>,
    /// The weight of the converter's variant half in `items` (1 without a converter).
    pub variant_weight: f64,
    /// How a new item is embedded, when the backbone can ([`ColdStart::of`]).
    pub cold_start: Option<ColdStart>,
}

/// A new item's embedding: the backbone's layout and its content projection.
pub struct ColdStart {
    /// Where the projected content sits in the embedding.
    pub layout: ColdStartLayout,
    /// The backbone's content projection `[content_dim, c]`.
    pub proj: Tensor,
}

impl ColdStart {
    /// The cold start a backbone declares ([`Backbone::cold_start`] with its
    /// [`Backbone::content_projection`]), checked against the width of its item embeddings:
    /// `id_dim + c + trailing_zeros` must equal it, or new items would get vectors that do not
    /// match the catalogue's.
    pub fn of(backbone: &dyn Backbone, item_width: usize) -> Result<Option<ColdStart>> {
        let Some(layout) = backbone.cold_start() else { return Ok(None) };
        let proj = backbone.content_projection().ok_or_else(|| {
            Error::config(
                "backbone",
                format!("backbone '{}' declares a cold-start layout but no content projection", backbone.name()),
            )
        })?;
        let width = layout.id_dim + proj.size().last().copied().unwrap_or(0) as usize + layout.trailing_zeros;
        if proj.dim() != 2 || width != item_width {
            return Err(Error::config(
                "backbone",
                format!(
                    "backbone '{}': cold-start layout gives new items width {width} (id_dim {} + projection {:?} + \
                     {} trailing zeros), its item embeddings have width {item_width}",
                    backbone.name(),
                    layout.id_dim,
                    proj.size(),
                    layout.trailing_zeros
                ),
            ));
        }
        Ok(Some(ColdStart { layout, proj: proj.detach() }))
    }
}

/// The post-hoc popularity adjustment as one more embedding column: `1` for every user and
/// `−β·ln(1 + popularity)` for every item, so that `users · items` gains the adjustment's term
/// (what `PopularityAdjusted` subtracts from any scorer). A new item has no training
/// popularity, ln(1 + 0) = 0: its vector gains a trailing zero.
pub fn popularity_columns(n_users: usize, popularity: &[u32], beta: f64, device: Device) -> (Tensor, Tensor) {
    let adj: Vec<f32> = popularity.iter().map(|&p| -(beta as f32) * (1.0 + p as f32).ln()).collect();
    let users = Tensor::ones([n_users as i64, 1], (Kind::Float, device));
    (users, Tensor::from_slice(&adj).to_device(device).unsqueeze(1))
}

/// Reads a run directory's `model.json`, refusing another format version.
pub fn read_manifest(run_dir: &Path) -> Result<ModelManifest> {
    let mpath = run_dir.join("model.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let version: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::parse(&mpath, None, e.to_string()))?;
    let v = version.get("format_version").and_then(|v| v.as_u64());
    if v != Some(MODEL_FORMAT_VERSION as u64) {
        return Err(Error::parse(&mpath, None, format!("model format version {v:?}, this build reads version {MODEL_FORMAT_VERSION}; retrain or use a matching painvrl")));
    }
    let manifest: ModelManifest =
        serde_json::from_value(version).map_err(|e| Error::parse(&mpath, None, e.to_string()))?;
    if !(0.0..=1.0).contains(&manifest.variant_weight) {
        return Err(Error::parse(
            &mpath,
            None,
            format!("variant_weight must be in [0, 1], got {}", manifest.variant_weight),
        ));
    }
    Ok(manifest)
}

/// Writes into `out` a copy of the model saved in `run_dir` whose scores carry the post-hoc
/// popularity adjustment with strength `beta` (finite, ≥ 0) and the training `popularity` of
/// every item: the operating point `painvrl pareto` chose, ready for `recommend` (and its `--export`) and
/// `eval`. The manifest's method becomes `<method>+posthoc`, `adjustment.json` records the source
/// and β. Refuses an `out` that holds a model, and a popularity of another catalogue size.
pub fn adjust_run(run_dir: &Path, popularity: &[u32], beta: f64, out: &Path) -> Result<ModelManifest> {
    if !(beta.is_finite() && beta >= 0.0) {
        return Err(Error::config("beta", format!("{beta} is not a finite number ≥ 0")));
    }
    if out.join("model.json").exists() {
        return Err(Error::config("out", format!("{} already holds a model; choose another directory", out.display())));
    }
    let manifest = read_manifest(run_dir)?;
    if popularity.len() != manifest.n_items {
        return Err(Error::InvalidData(format!(
            "the popularity covers {} items, the model in {} ranks {}",
            popularity.len(),
            run_dir.display(),
            manifest.n_items
        )));
    }
    let (user_col, item_col) = popularity_columns(manifest.n_users, popularity, beta, Device::Cpu);
    let source = serde_json::json!({ "source": run_dir, "posthoc_beta": beta });
    rewrite_model(run_dir, out, ("adjustment.json", source), |users, items, manifest| {
        *users = Tensor::cat(&[users.shallow_clone(), user_col], 1);
        *items = Tensor::cat(&[items.shallow_clone(), item_col], 1);
        manifest.method = format!("{}+posthoc", manifest.method);
        manifest.dim += 1;
        if let Some(c) = manifest.cold_start.as_mut() {
            c.trailing_zeros += 1;
        }
        Ok(())
    })
}

/// Writes into `out` a transformed copy of the model saved in `run_dir`: `transform` edits its
/// user and item vectors and its manifest (every other tensor is copied as is), `sidecar` (file
/// name, JSON) records where the copy came from. `model.json` is written last, so that its
/// presence marks a finished copy.
pub(crate) fn rewrite_model(
    run_dir: &Path,
    out: &Path,
    sidecar: (&str, serde_json::Value),
    transform: impl FnOnce(&mut Tensor, &mut Tensor, &mut ModelManifest) -> Result<()>,
) -> Result<ModelManifest> {
    let mut manifest = read_manifest(run_dir)?;
    let tpath = run_dir.join("model.safetensors");
    let mut named = Tensor::read_safetensors(&tpath).map_err(|e| Error::parse(&tpath, None, e.to_string()))?;
    let position = |key: &str| {
        named
            .iter()
            .position(|(n, _)| n == key)
            .ok_or_else(|| Error::parse(&tpath, None, format!("tensor '{key}' is missing")))
    };
    let (u, i) = (position("users")?, position("items")?);
    let (mut users, mut items) = (named[u].1.shallow_clone(), named[i].1.shallow_clone());
    transform(&mut users, &mut items, &mut manifest)?;
    (named[u].1, named[i].1) = (users, items);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    painvrl_core::io::write_safetensors_atomic(&out.join("model.safetensors"), &named)?;
    painvrl_core::io::write_json_atomic(&out.join(sidecar.0), &sidecar.1)?;
    painvrl_core::io::write_json_atomic(&out.join("model.json"), &manifest)?;
    Ok(manifest)
}

/// Writes `model.safetensors` and `model.json` into `dir`; every interaction of `ds` is saved
/// as "seen" (excluded from recommendations by default).
pub fn save_model(dir: &Path, method: &str, backbone: &str, ds: &Dataset, model: &TrainedModel) -> Result<()> {
    let manifest = ModelManifest {
        format_version: MODEL_FORMAT_VERSION,
        method: method.into(),
        backbone: backbone.into(),
        fusion: model.fusion,
        variant_weight: model.variant_weight,
        cold_start: model.cold_start.as_ref().map(|c| c.layout),
        modalities: ds.features.modalities().to_vec(),
        n_users: ds.n_users,
        n_items: ds.n_items,
        dim: model.users.size()[1] as usize,
    };
    let seen_lists: Vec<&Interactions> = ds.splits().into_iter().map(|(_, x)| x).collect();
    let seen = UserItems::build(ds.n_users, &seen_lists);
    let offsets: Vec<i64> = seen.offsets().iter().map(|&o| o as i64).collect();
    let items: Vec<i64> = (0..seen.n_users()).flat_map(|u| seen.items_of(u).iter().map(|&i| i as i64)).collect();
    let cpu = Tensor::shallow_clone; // write_safetensors_atomic moves them to the CPU
    let mut named: Vec<(String, Tensor)> = vec![
        ("users".into(), cpu(&model.users)),
        ("items".into(), cpu(&model.items)),
        ("seen.offsets".into(), Tensor::from_slice(&offsets)),
        ("seen.items".into(), Tensor::from_slice(&items)),
    ];
    if let Some(c) = &model.cold_start {
        named.push(("proj".into(), cpu(&c.proj)));
    }
    if let Some(m) = &model.mask {
        named.push(("mask".into(), cpu(m)));
    }
    for (n, v) in &model.converter {
        named.push((format!("convert.{n}"), cpu(v)));
    }
    painvrl_core::io::write_safetensors_atomic(&dir.join("model.safetensors"), &named)?;
    painvrl_core::io::write_json_atomic(&dir.join("model.json"), &manifest)
}

/// A trained model ready to recommend.
pub struct Recommender {
    manifest: ModelManifest,
    users: Tensor,
    items: Tensor,
    /// The content projection for new items, when the model can embed them.
    proj: Option<Tensor>,
    mask: Option<Tensor>,
    converter: Option<(VarStore, Converter)>,
    seen: UserItems,
    device: Device,
}

/// One recommended item.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Item id (new items continue after the training catalogue).
    pub item: u32,
    /// Score `users[u] · items[i]`.
    pub score: f32,
}

impl Recommender {
    /// Loads `model.json` and `model.safetensors` from a run directory onto `device`.
    pub fn load(run_dir: &Path, device: Device) -> Result<Self> {
        let manifest = read_manifest(run_dir)?;
        let tpath = run_dir.join("model.safetensors");
        let named = Tensor::read_safetensors(&tpath)
            .map_err(|e| Error::parse(&tpath, None, format!("not a readable model: {e}")))?;
        let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, t)| t.to_device(device));
        let need = |k: &str| get(k).ok_or_else(|| Error::parse(&tpath, None, format!("tensor '{k}' is missing")));
        let users = need("users")?;
        let items = need("items")?;
        let offsets: Vec<i64> = Vec::try_from(need("seen.offsets")?.to_device(Device::Cpu))?;
        let seen_items: Vec<i64> = Vec::try_from(need("seen.items")?.to_device(Device::Cpu))?;
        let mut seen_list = Interactions::default();
        for u in 0..offsets.len().saturating_sub(1) {
            for &i in &seen_items[offsets[u] as usize..offsets[u + 1] as usize] {
                seen_list.push(u as u32, i as u32);
            }
        }
        let converter = match manifest.fusion {
            Some(f) => {
                let w = need("convert.w_inv")?;
                let vs = VarStore::new(device);
                let c = Converter::new(&(vs.root() / "convert"), w.size()[0] as usize, w.size()[1] as usize, f)?;
                tch::no_grad(|| -> Result<()> {
                    for (name, var) in vs.variables() {
                        let key = name.clone();
                        var.shallow_clone().copy_(&need(&key)?);
                    }
                    Ok(())
                })?;
                Some((vs, c))
            }
            None => None,
        };
        Ok(Recommender {
            seen: UserItems::build(manifest.n_users, &[&seen_list]),
            proj: manifest.cold_start.map(|_| need("proj")).transpose()?,
            mask: get("mask"),
            manifest,
            users,
            items,
            converter,
            device,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// A full-ranking scorer over the model's vectors (for `painvrl_core::evaluate`).
    pub fn scorer(&self) -> painvrl_core::EmbeddingScorer {
        painvrl_core::EmbeddingScorer { users: self.users.shallow_clone(), items: self.items.shallow_clone() }
    }

    /// Items in the catalogue, new items included.
    pub fn n_items(&self) -> usize {
        self.items.size()[0] as usize
    }

    fn check_user(&self, u: u32) -> Result<()> {
        if (u as usize) < self.manifest.n_users {
            Ok(())
        } else {
            Err(Error::config("user", format!("user {u} is unknown; the model has users 0..{}", self.manifest.n_users)))
        }
    }

    /// Top-`k` items with scores for each user, best first; `exclude_seen` drops items the user
    /// interacted with in any split.
    pub fn recommend(&self, users: &[u32], k: usize, exclude_seen: bool) -> Result<Vec<Vec<Scored>>> {
        let n = self.n_items();
        if k == 0 || k > n {
            return Err(Error::config("k", format!("{k} is not in 1..={n}")));
        }
        for &u in users {
            self.check_user(u)?;
        }
        let mut out = Vec::with_capacity(users.len());
        tch::no_grad(|| -> Result<()> {
            for chunk in users.chunks(1024) {
                let ids: Vec<i64> = chunk.iter().map(|&u| u as i64).collect();
                let mut s = self
                    .users
                    .index_select(0, &Tensor::from_slice(&ids).to_device(self.device))
                    .matmul(&self.items.tr());
                if exclude_seen {
                    let (mut r, mut c) = (Vec::new(), Vec::new());
                    for (row, &u) in chunk.iter().enumerate() {
                        for &i in self.seen.items_of(u as usize) {
                            r.push(row as i64);
                            c.push(i as i64);
                        }
                    }
                    if !r.is_empty() {
                        let idx = [
                            Some(Tensor::from_slice(&r).to_device(self.device)),
                            Some(Tensor::from_slice(&c).to_device(self.device)),
                        ];
                        s = s.index_put_(&idx, &Tensor::from(f32::NEG_INFINITY).to_device(self.device), false);
                    }
                }
                let (val, idx) = s.topk(k as i64, 1, true, true);
                let val: Vec<f32> = Vec::try_from(val.to_device(Device::Cpu).reshape([-1]))?;
                let idx: Vec<i64> = Vec::try_from(idx.to_device(Device::Cpu).reshape([-1]))?;
                for row in 0..chunk.len() {
                    out.push(
                        (0..k)
                            .map(|j| Scored { item: idx[row * k + j] as u32, score: val[row * k + j] })
                            .filter(|x| x.score.is_finite())
                            .collect(),
                    );
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Scores of `items` for `user`.
    pub fn score(&self, user: u32, items: &[u32]) -> Result<Vec<f32>> {
        self.check_user(user)?;
        let n = self.n_items();
        if let Some(&i) = items.iter().find(|&&i| i as usize >= n) {
            return Err(Error::config("items", format!("item {i} is unknown; the catalogue has items 0..{n}")));
        }
        let ids: Vec<i64> = items.iter().map(|&i| i as i64).collect();
        let s = tch::no_grad(|| {
            let it = self.items.index_select(0, &Tensor::from_slice(&ids).to_device(self.device));
            it.matmul(&self.users.get(user as i64)).to_device(Device::Cpu)
        });
        Ok(Vec::try_from(s)?)
    }

    /// Appends new items from their feature rows (same modalities and widths as training, already
    /// L2-normalised per modality as the loaders do); returns their ids.
    pub fn add_items(&mut self, features: &ItemFeatures) -> Result<std::ops::Range<u32>> {
        if features.modalities() != self.manifest.modalities.as_slice() {
            return Err(Error::InvalidData(format!(
                "new items have modalities {:?}; the model was trained on {:?}",
                features.modalities(),
                self.manifest.modalities
            )));
        }
        let (Some(l), Some(proj)) = (self.manifest.cold_start, &self.proj) else {
            return Err(Error::InvalidData(format!(
                "backbone '{}' has no cold-start embedding: this model cannot rank new items",
                self.manifest.backbone
            )));
        };
        let x = features.to_tensor(self.device);
        let emb = tch::no_grad(|| {
            let content = match (&self.converter, &self.mask) {
                (Some((_, c)), Some(m)) => c.encode_with_variant_weight(&x, m, self.manifest.variant_weight),
                _ => x.shallow_clone(),
            };
            let n = x.size()[0];
            let opts = (Kind::Float, self.device);
            let body = Tensor::cat(&[Tensor::zeros([n, l.id_dim as i64], opts), content.matmul(proj)], 1) * l.scale;
            Tensor::cat(&[body, Tensor::zeros([n, l.trailing_zeros as i64], opts)], 1)
        });
        if emb.size()[1] != self.items.size()[1] {
            return Err(Error::InvalidData(format!(
                "new-item vectors have width {}, the model's have {}",
                emb.size()[1],
                self.items.size()[1]
            )));
        }
        let start = self.n_items() as u32;
        self.items = Tensor::cat(&[self.items.shallow_clone(), emb], 0);
        Ok(start..self.n_items() as u32)
    }

    /// Writes `users.npy`, `items.npy` (and `proj.npy`, `mask.npy` and the converter's
    /// `convert.*.npy` when present) plus `manifest.json` to `dir`: `score(u, i) = users[u] · items[i]`.
    pub fn export_npy(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let write = |name: &str, t: &Tensor| -> Result<()> {
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let (r, c) =
                if t.dim() == 1 { (1, t.size()[0] as usize) } else { (t.size()[0] as usize, t.size()[1] as usize) };
            let v: Vec<f32> = Vec::try_from(t.reshape([-1]))?;
            painvrl_data::npy::write_matrix(&dir.join(name), r, c, &v)
        };
        write("users.npy", &self.users)?;
        write("items.npy", &self.items)?;
        if let Some(p) = &self.proj {
            write("proj.npy", p)?;
        }
        if let Some(m) = &self.mask {
            write("mask.npy", m)?;
        }
        if let Some((vs, _)) = &self.converter {
            for (name, t) in vs.variables() {
                write(&format!("{name}.npy"), &t)?;
            }
        }
        let manifest = serde_json::json!({
            "scoring": "score(u, i) = users[u] · items[i] (inner product)",
            "users": self.users.size(),
            "items": self.items.size(),
            "model": &self.manifest,
        });
        painvrl_core::io::write_json_atomic(&dir.join("manifest.json"), &manifest)
    }
}
