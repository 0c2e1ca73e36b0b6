//! Build-script helper shared by every painvrl package: how binaries, tests, examples and benches
//! link libtorch. Call [`link_libtorch`] from `build.rs`.
//!
//! Why it exists: rustc passes `--as-needed` to the linker, and no Rust code references a symbol
//! of `libtorch_cuda.so` directly (its CUDA kernels register themselves from static
//! initialisers). The linker therefore drops the library, and a binary built against a CUDA
//! libtorch reports no CUDA device. Linking it with `--no-as-needed` keeps it.

use std::path::{Path, PathBuf};

/// The libraries whose presence in libtorch's `lib/` adds a `--no-as-needed` link, in order.
pub const CUDA_BACKEND_LIBS: [&str; 1] = ["torch_cuda"];

/// The linker arguments for a libtorch library directory `lib_dir`: an rpath to it, and each
/// CUDA backend library present there wrapped in `--no-as-needed … --as-needed`.
pub fn link_args(lib_dir: &Path) -> Vec<String> {
    let mut args = vec![format!("-Wl,-rpath,{}", lib_dir.display())];
    for lib in CUDA_BACKEND_LIBS {
        if lib_dir.join(format!("lib{lib}.so")).exists() {
            args.push(format!("-Wl,--no-as-needed,-l{lib},--as-needed"));
        }
    }
    args
}

/// libtorch's library directory as torch-sys reports it to packages that depend on it directly.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from)
}

/// Prints the cargo directives that link libtorch into this package's binaries, tests, examples
/// and benches (see [`link_args`]). Does nothing when torch-sys reported no directory.
pub fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(dir) = libtorch_lib_dir() {
        for lib in CUDA_BACKEND_LIBS {
            println!("cargo:rerun-if-changed={}", dir.join(format!("lib{lib}.so")).display());
        }
        for arg in link_args(&dir) {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_only_libtorch_gets_only_the_rpath() {
        let dir = std::env::temp_dir().join(format!("painvrl-build-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libtorch_cpu.so"), b"").unwrap();
        assert_eq!(link_args(&dir), vec![format!("-Wl,-rpath,{}", dir.display())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cuda_libtorch_keeps_the_cuda_backend() {
        let dir = std::env::temp_dir().join(format!("painvrl-build-cuda-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let args = link_args(&dir);
        assert_eq!(args.len(), 2);
        assert_eq!(args[1], "-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
