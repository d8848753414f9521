//! Compiles the libtorch shim (src/shim.cpp) against the libtorch that
//! torch-sys links, found as torch-sys finds it: `LIBTORCH` (scripts/setup.sh
//! sets it through .cargo/config.toml).

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let libtorch = std::env::var("LIBTORCH")
        .expect("LIBTORCH is unset: run scripts/setup.sh, which points it at PyTorch's libtorch");
    let include = std::path::Path::new(&libtorch).join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("sciflow_shim");
    allow_bzip2_error_handler_twice();
}

/// cfitsio (built from source by fitsio-sys) and bzip2 (sciflow-ingest's
/// `.fits.bz2` reader, tch's zip support) each define bzip2's error hook
/// `bz_internal_error`, both as a stub that reports an error; a program
/// that pulls in both objects fails to link. The linker keeps the first.
/// Link arguments reach only this package's own programs, so ingest, eval
/// and pipeline say the same in their build scripts.
fn allow_bzip2_error_handler_twice() {
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
