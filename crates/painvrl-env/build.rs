//! Embeds libtorch's library directory as an rpath, so that this package's tests, examples and
//! binaries find libtorch at run time without LD_LIBRARY_PATH. torch-sys reports the directory.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
