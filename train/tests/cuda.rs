//! libtorch's CUDA half as a process meets it, checked on any machine whose
//! libtorch has one (the PyPI wheel scripts/setup.sh installs), GPU or not.
//! Each case needs a fresh libtorch, so each runs in a child process.
//!
//! * libtorch settles on its CUDA hooks at the first question about CUDA and
//!   keeps them: the entry points' common first call ([`kernels::pin`]) must
//!   load the CUDA half before anything asks, or the process never sees a
//!   GPU. The real hooks and the CPU-only stand-ins can be told apart without
//!   a GPU.
//! * Pinning a batch for its upload must print nothing: a warning per call is
//!   lines per step in every job log.

use std::process::Command;

use sciflow_train::kernels::{self, Reproducible};
use sciflow_train::{cuda, input, shim};
use tch::{Device, Kind, Tensor};

const ORDER: &str = "SCIFLOW_CUDA_TEST_ORDER";
/// What a child prints to stderr once its case is done: what came before it
/// is what the case printed.
const MARK: &str = "-- case done --";

/// Runs the child process in order `order`: its stdout and stderr.
fn run_child(order: &str) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--ignored", "--nocapture"])
        .env(ORDER, order)
        .output()
        .unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}{err}"
    );
    (text, err)
}

/// What the child saw, in order `order`: whether libtorch's CUDA half
/// loaded (or why not), and whether the hooks are the real ones.
fn child(order: &str) -> (Result<String, String>, bool) {
    let (text, _) = run_child(order);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    let loaded = field("loaded: ");
    let loaded = match loaded.strip_prefix("ok ") {
        Some(path) => Ok(path.to_string()),
        None => Err(loaded),
    };
    (loaded, field("real hooks: ") == "true")
}

/// Not a test of its own: the child process of the test below (ignored, so
/// it runs only when the parent asks for it).
#[test]
#[ignore]
fn child_process() {
    let order = std::env::var(ORDER).expect("run by cuda_hooks_are_the_real_ones...");
    match order.as_str() {
        // As every entry point starts; then a question about CUDA
        // (show_config asks whether CUDA is there).
        "entry" => {
            kernels::pin(Reproducible::Native).unwrap();
            let _ = shim::torch_version();
        }
        // The trap: a question about CUDA before its half is loaded.
        "early" => {
            let _ = shim::torch_version();
        }
        // A batch pinned for its upload, as the training does it, then
        // (`pin_memory`) as it did before: on a machine without a GPU both
        // fail, after whatever they print.
        "pinned" | "pin_memory" => {
            kernels::pin(Reproducible::Native).unwrap();
            let t = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
            let device = Device::Cuda(0);
            let pinned = if order == "pinned" {
                input::pinned(&t, device)
            } else {
                t.f_pin_memory(device)
            };
            println!("pinned: {}", pinned.is_ok());
            eprintln!("{MARK}");
            return;
        }
        other => panic!("unknown order {other}"),
    }
    match cuda::load() {
        Ok(p) => println!("loaded: ok {}", p.display()),
        Err(why) => println!("loaded: {why}"),
    }
    println!("real hooks: {}", shim::cuda_hooks_real());
}

#[test]
fn cuda_hooks_are_the_real_ones_after_the_entry_points_first_call() {
    let lib = cuda::torch_lib_dir()
        .expect("libtorch_cpu.so is mapped")
        .join("libtorch_cuda.so");
    let (entry, entry_real) = child("entry");
    let (early, early_real) = child("early");
    if !lib.is_file() {
        // A CPU-only libtorch: nothing to load, and both orders say so.
        for loaded in [&entry, &early] {
            assert!(loaded.as_ref().unwrap_err().contains("does not exist"));
        }
        assert!(!entry_real && !early_real);
        eprintln!("{} is absent: a CPU-only libtorch", lib.display());
        return;
    }
    // The wheel's CUDA half loads on a machine without a GPU (its NVIDIA
    // libraries come with it), and then installs the real hooks.
    let path = entry.unwrap_or_else(|why| panic!("{} does not load: {why}", lib.display()));
    assert!(path.ends_with("libtorch_cuda.so"), "{path}");
    assert!(
        entry_real,
        "pin loaded libtorch_cuda, yet the hooks are the stand-ins"
    );
    // Asked first, libtorch keeps its stand-ins even once the library is
    // loaded; `load` says so instead of claiming CUDA.
    let why = early.unwrap_err();
    assert!(why.contains("settled on running without CUDA"), "{why}");
    assert!(!early_real);
}

#[test]
fn pinning_a_batch_prints_nothing() {
    // Whatever the case printed, libtest's own lines excluded.
    let printed = |order: &str| {
        let (text, err) = run_child(order);
        let case = err.split(MARK).next().unwrap().to_string();
        (text.contains("pinned: true"), case)
    };
    let (ok, case) = printed("pinned");
    assert!(!case.contains("deprecated"), "{case}");
    if ok {
        // A GPU: pinned, and not a word.
        assert!(case.trim().is_empty(), "{case}");
    }
    // The call it replaced warns twice a call, GPU or not: the check above
    // would see it.
    let (_, case) = printed("pin_memory");
    assert_eq!(case.matches("deprecated").count(), 2, "{case}");
}
