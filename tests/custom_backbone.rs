//! A recommender of your own, with variable names unlike the built-in backbones', trains with
//! the intended learning rates, runs through every stage of PaInvRL, saves a model that reloads
//! to the same metrics, and is refused at saving time when its cold-start layout does not
//! match its embeddings.

use painvrl::config::Method;
use painvrl::core::{Backbone, Batch, ColdStartLayout, Result, UserItems, EMBEDDING_GROUP};
use painvrl::data::NegativeSampler;
use painvrl::graph::{fit, Stage, TrainConfig, TrainData, TrainGraph};
use painvrl::pipeline::Run;
use painvrl::recommender::Recommender;
use tch::{nn, Device, Kind, Tensor};

mod common;
use common::{small_config, small_synthetic};

/// A two-tower dot product; `layout` is what it declares for new items.
struct Towers {
    who: Tensor,
    what: Tensor,
    lens: Tensor,
    layout: Option<ColdStartLayout>,
}

impl Towers {
    fn new(p: &nn::Path, g: &TrainGraph, content_in: usize, layout: Option<ColdStartLayout>) -> Self {
        let ids = p.set_group(EMBEDDING_GROUP);
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.1 };
        Towers {
            who: ids.var("who", &[g.n_users as i64, 12], init),
            what: ids.var("what", &[g.n_items as i64, 4], init),
            lens: p.var("lens", &[content_in as i64, 8], init),
            layout,
        }
    }
}

impl Backbone for Towers {
    fn embeddings(&self, content: &Tensor) -> (Tensor, Tensor) {
        (self.who.shallow_clone(), Tensor::cat(&[self.what.shallow_clone(), content.matmul(&self.lens)], 1))
    }

    fn loss(&self, b: &Batch, content: &Tensor) -> Tensor {
        let (users, items) = self.embeddings(content);
        let u = users.index_select(0, &b.users);
        let score = |i: &Tensor| (&u * items.index_select(0, i)).sum_dim_intlist(1, false, Kind::Float);
        -(score(&b.pos_items) - score(&b.neg_items.squeeze_dim(1))).log_sigmoid().mean(Kind::Float)
    }

    fn content_projection(&self) -> Option<Tensor> {
        Some(self.lens.shallow_clone())
    }

    fn cold_start(&self) -> Option<ColdStartLayout> {
        self.layout
    }
}

/// Variables after one epoch with learning rates `lr` (embedding group) and `lr_content`.
fn after_one_epoch(lr: f64, lr_content: f64) -> (bool, bool) {
    let ds = small_synthetic();
    let graph = TrainGraph::new(ds.n_users, ds.n_items, &ds.train);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = Towers::new(&vs.root(), &graph, ds.features.dim(), None);
    let (who0, lens0) = (model.who.copy(), model.lens.copy());
    let val = UserItems::build(ds.n_users, &[&ds.val]);
    let sampler = NegativeSampler::new(UserItems::build(ds.n_users, &[&ds.train]), ds.n_items).unwrap();
    let data = TrainData { train: &ds.train, sampler: &sampler, val: &val, objective: None, stop: None };
    let cfg = TrainConfig { epochs: 1, lr, lr_content, progress: false, ..Default::default() };
    let x = ds.features.to_tensor(Device::Cpu);
    fit(&mut vs, &model, &|| x.shallow_clone(), &data, &cfg, &Stage { name: "t", ..Default::default() }).unwrap();
    let moved = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) > 0.0;
    (moved(&model.who, &who0), moved(&model.lens, &lens0))
}

#[test]
fn id_vectors_take_the_embedding_rate_whatever_their_names() {
    assert_eq!(after_one_epoch(0.01, 0.0), (true, false));
    assert_eq!(after_one_epoch(0.0, 0.01), (false, true));
}

#[test]
fn runs_every_method_stage_and_saves_a_model_that_reloads() {
    let ds = small_synthetic();
    let layout = Some(ColdStartLayout { id_dim: 4, scale: 1.0, trailing_zeros: 0 });
    let factory = |p: &nn::Path, g: &TrainGraph, c: usize| -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Towers::new(p, g, c, layout)))
    };
    for method in [Method::Erm, Method::Painvrl] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config(method);
        let r = Run::new(&ds, &cfg).backbone(&factory).output(dir.path()).execute().unwrap();
        assert_eq!(r.backbone, "custom");
        assert!(r.metrics["test"]["recall@20"] > 0.0, "{method:?}: {:?}", r.metrics["test"]);
        if method == Method::Painvrl {
            assert_eq!(r.mask.len(), ds.features.dim());
        }
        let rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
        let again = painvrl::report::evaluate_splits(&rec.scorer(), &ds, ds.n_users, &cfg.train.eval).unwrap();
        for (split, m) in again {
            assert_eq!(m.values, r.metrics[split], "{method:?} {split}");
        }
    }
}

#[test]
fn a_cold_start_layout_that_does_not_fit_is_refused_when_saving() {
    let ds = small_synthetic();
    // 4 ID columns + 8 projected = 12; declaring 5 ID columns would give new items width 13
    let wrong = Some(ColdStartLayout { id_dim: 5, scale: 1.0, trailing_zeros: 0 });
    let factory = |p: &nn::Path, g: &TrainGraph, c: usize| -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Towers::new(p, g, c, wrong)))
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(Method::Erm);
    let e = Run::new(&ds, &cfg).backbone(&factory).output(dir.path()).execute().unwrap_err().to_string();
    assert!(e.contains("backbone 'custom'") && e.contains("width 13") && e.contains("width 12"), "{e}");
    assert!(!dir.path().join("report.json").exists() && !dir.path().join("model.json").exists());
}

#[test]
fn a_model_without_cold_start_says_so_when_given_new_items() {
    let ds = small_synthetic();
    let factory = |p: &nn::Path, g: &TrainGraph, c: usize| -> Result<Box<dyn Backbone>> {
        Ok(Box::new(Towers::new(p, g, c, None)))
    };
    let dir = tempfile::tempdir().unwrap();
    Run::new(&ds, &small_config(Method::Erm)).backbone(&factory).output(dir.path()).execute().unwrap();
    let mut rec = Recommender::load(dir.path(), Device::Cpu).unwrap();
    let e = rec.add_items(&ds.features).unwrap_err().to_string();
    assert!(e.contains("cannot rank new items"), "{e}");
}
