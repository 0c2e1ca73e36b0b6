//! Links libtorch into this package's binaries, tests, examples and benches: an rpath to its
//! library directory, and its CUDA backend when it has one (see `painvrl-build`).
fn main() {
    painvrl_build::link_libtorch();
}
