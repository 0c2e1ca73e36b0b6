//! Full-ranking evaluation throughput next to a bare matmul + topk of the same shapes, so the
//! evaluator's overhead ratio is visible. TikTok scale (9,308 × 6,710, d = 128) always; paper
//! scale (36,656 × 76,085) when PAINVRL_BENCH_PAPER=1 (minutes on 2 CPU cores).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use painvrl::core::eval::{evaluate, EmbeddingScorer, EvalConfig};
use painvrl::core::{Interactions, UserItems};
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

fn setup(n_users: usize, n_items: usize, per_user: usize) -> (EmbeddingScorer, UserItems, UserItems) {
    tch::manual_seed(0);
    let d = 128;
    let users = Tensor::randn([n_users as i64, d], (Kind::Float, Device::Cpu));
    let items = Tensor::randn([n_items as i64, d], (Kind::Float, Device::Cpu));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut train = Interactions::default();
    let mut test = Interactions::default();
    for u in 0..n_users as u32 {
        for _ in 0..per_user {
            train.push(u, rng.gen_range(0..n_items as u32));
        }
        test.push(u, rng.gen_range(0..n_items as u32));
    }
    (EmbeddingScorer { users, items }, UserItems::build(n_users, &[&test]), UserItems::build(n_users, &[&train]))
}

fn bench_shape(c: &mut Criterion, name: &str, n_users: usize, n_items: usize) {
    tch::set_num_threads(std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1));
    let (scorer, test, train) = setup(n_users, n_items, 6);
    let cfg = EvalConfig::default();
    let block = cfg.block_size(n_items, n_users) as i64;
    let mut g = c.benchmark_group(format!("eval/{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(n_users as u64));
    g.bench_function("painvrl_evaluate", |b| b.iter(|| evaluate(&scorer, &test, &[&train], &cfg).unwrap()));
    g.bench_function("bare_matmul_topk", |b| {
        b.iter(|| {
            tch::no_grad(|| {
                let mut start = 0;
                while start < n_users as i64 {
                    let len = block.min(n_users as i64 - start);
                    let s = scorer.users.narrow(0, start, len).matmul(&scorer.items.tr());
                    let (_, idx) = s.topk(50, 1, true, true);
                    let _ = Vec::<i64>::try_from(idx.reshape([-1])).unwrap();
                    start += len;
                }
            })
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_shape(c, "tiktok_9308x6710", 9308, 6710);
    if std::env::var("PAINVRL_BENCH_PAPER").as_deref() == Ok("1") {
        bench_shape(c, "paper_36656x76085", 36656, 76085);
    }
}

criterion_group!(eval_benches, benches);
criterion_main!(eval_benches);
