//! The MGDA min-norm solver on gradients of 10^5 entries: Gram matrix plus solve, n = 2 and 10.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use painvrl::mask::min_norm_point;
use rand::{Rng, SeedableRng};

fn benches(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for n in [2usize, 10] {
        let grads: Vec<Vec<f64>> = (0..n).map(|_| (0..100_000).map(|_| rng.gen_range(-1.0..1.0)).collect()).collect();
        c.bench_function(&format!("solver/gram_and_solve_n{n}_1e5"), |b| {
            b.iter(|| {
                let gram =
                    Array2::from_shape_fn((n, n), |(i, j)| grads[i].iter().zip(&grads[j]).map(|(x, y)| x * y).sum());
                min_norm_point(&gram, 1000, 1e-9)
            })
        });
    }
}

criterion_group!(solver_benches, benches);
criterion_main!(solver_benches);
