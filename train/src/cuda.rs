//! Making libtorch's CUDA half available to a binary that was linked without
//! it.
//!
//! The linker drops `libtorch_cuda.so` from a binary that references none of
//! its symbols (`--as-needed`), and a binary built on a machine without the
//! NVIDIA libraries cannot link it at all. Its static initialisers are what
//! register CUDA with libtorch, so it is loaded at run time instead, from
//! the folder the running `libtorch_cpu.so` came from: where the CUDA
//! libraries are present (a GPU node) CUDA becomes available; where they are
//! not, loading fails and the process stays on the CPU.
//!
//! It must come first. libtorch creates its CUDA hooks at the first question
//! about CUDA (`hasCUDA`, `show_config`, a device count, a pinned buffer)
//! and keeps them for the rest of the process: asked before
//! `libtorch_cuda.so` is loaded, it settles on its CPU-only stand-ins, and
//! loading the library later changes nothing. So [`crate::kernels::pin`],
//! which every entry point calls before any tensor work, calls [`load`]
//! first (`pipeline run` takes [`crate::kernels::pin_cpu_only`] for a
//! workflow whose every libtorch stage says `device: cpu`, and saves the
//! load), and [`load`] checks that the hooks it leaves are the real ones.

use std::path::PathBuf;
use std::sync::OnceLock;

/// What loading `libtorch_cuda.so` gave: `Ok` with its path, or why not.
static LOADED: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once per process, if it can be; returns its path
/// or the reason it could not be loaded.
pub fn load() -> &'static Result<PathBuf, String> {
    LOADED.get_or_init(|| {
        let dir = torch_lib_dir().ok_or("libtorch_cpu.so is not mapped in this process")?;
        let path = dir.join("libtorch_cuda.so");
        if !path.is_file() {
            return Err(format!(
                "{} does not exist (a CPU-only libtorch)",
                path.display()
            ));
        }
        open(&path)?;
        if !crate::shim::cuda_hooks_real() {
            return Err(format!(
                "{} loaded after libtorch had settled on running without CUDA \
                 (something asked libtorch about CUDA before \
                 sciflow_train::cuda::load or kernels::pin ran): this process \
                 stays on the CPU",
                path.display()
            ));
        }
        Ok(path)
    })
}

/// CUDA devices libtorch sees, after trying to load its CUDA half.
pub fn device_count() -> usize {
    let _ = load();
    tch::Cuda::device_count().max(0) as usize
}

#[allow(unsafe_code)]
fn open(path: &std::path::Path) -> Result<(), String> {
    // SAFETY: libtorch_cuda.so is the CUDA half of the very libtorch this
    // process runs on (same folder, same build); its initialisers only
    // register CUDA kernels and hooks with libtorch, which is what loading
    // it is for. The library is never unloaded (it is leaked), so no code
    // or data of it is used after an unload.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::mem::forget(lib);
    Ok(())
}

/// The folder of the `libtorch_cpu.so` mapped into this process.
pub fn torch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| PathBuf::from(p).parent().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_is_found_and_cuda_loads_or_says_why() {
        // The test binary runs on libtorch: its folder is found.
        let dir = torch_lib_dir().expect("libtorch_cpu.so is mapped");
        assert!(dir.join("libtorch_cpu.so").is_file());
        match load() {
            // A set-up with the NVIDIA libraries (scripts/setup.sh installs
            // them), with or without a GPU.
            Ok(p) => assert!(p.ends_with("libtorch_cuda.so")),
            // A CPU-only libtorch, or one whose NVIDIA libraries are missing.
            Err(why) => assert!(why.contains("libtorch_cuda"), "{why}"),
        }
        // Loading or not, asking for the devices never fails.
        let _ = device_count();
    }
}
