//! Which CPU kernels libtorch runs, and the two reproducibility modes.
//!
//! libtorch chooses its CPU code by the machine it finds: ATen's vectorised
//! kernels by instruction set (`DEFAULT`, `AVX2`, `AVX512`), oneDNN's
//! convolutions by instruction set, and MKL's GEMMs by instruction set *and*
//! vendor (on an AMD CPU MKL ignores every `MKL_CBWR` branch but
//! `COMPATIBLE`, and its Intel and AMD paths round differently). Each choice
//! sums in its own order, so the same training gives other bits on another
//! CPU.
//!
//! * [`Reproducible::Native`] (the default) leaves every choice to the
//!   machine: the fastest kernels, the same bits run after run on that
//!   machine.
//! * [`Reproducible::Portable`] pins them before the first kernel runs: ATen
//!   at `avx2`, oneDNN at most AVX2, MKL on its `COMPATIBLE` branch (the one
//!   path MKL keeps equal on Intel and AMD), MKL's thread count fixed
//!   (`MKL_DYNAMIC=FALSE`). AVX2 with FMA is the floor because every x86-64
//!   server CPU since Intel Haswell (2013) and AMD Zen (2017) has it, as do
//!   all but the cheapest laptop chips (some Pentium, Celeron and Atom
//!   lack it), and it keeps ATen's and oneDNN's vectorised kernels; a
//!   machine without it is refused rather than silently run on other code.
//!   Same workflow, seed, ranks and threads per rank give the same bits on
//!   such machines.
//!
//! The settings are environment variables the libraries read once, when
//! first used, so [`pin`] must run before any tensor work; it then reads
//! ATen's level and MKL's branch back from libtorch and fails if they did
//! not take (oneDNN offers no way to ask from outside; its ceiling is
//! reported as set).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How far results are reproducible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reproducible {
    /// The machine's fastest kernels: the same bits on the same machine.
    #[default]
    Native,
    /// Kernels pinned to the AVX2 baseline: the same bits on any x86-64
    /// machine with AVX2 and FMA.
    Portable,
}

impl Reproducible {
    /// Every mode's name, as workflows and the command line write it.
    pub const NAMES: [&'static str; 2] = ["native", "portable"];

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "native" => Some(Reproducible::Native),
            "portable" => Some(Reproducible::Portable),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Reproducible::Native => "native",
            Reproducible::Portable => "portable",
        }
    }
}

impl std::fmt::Display for Reproducible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What portable mode sets, read by ATen, oneDNN and MKL at their first use.
/// MKL's code is linked into libtorch, so its environment variable is the
/// only way in.
pub const PORTABLE_ENV: [(&str, &str); 4] = [
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    ("MKL_CBWR", "COMPATIBLE"),
    // MKL may otherwise use fewer threads than asked (one per physical
    // core), which splits its reductions differently on another machine.
    ("MKL_DYNAMIC", "FALSE"),
];

/// cuBLAS's fixed workspace, which makes its GEMMs deterministic run to run.
const CUBLAS_ENV: (&str, &str) = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8");

/// MKL's code for its `COMPATIBLE` branch (`MKL_CBWR_COMPATIBLE`).
const MKL_COMPATIBLE: i32 = 3;

static MODE: std::sync::OnceLock<Reproducible> = std::sync::OnceLock::new();

/// The mode this process was pinned to ([`Reproducible::Native`] if
/// [`pin`] was never called).
pub fn mode() -> Reproducible {
    MODE.get().copied().unwrap_or_default()
}

/// Sets `mode` for this process, after loading libtorch's CUDA half
/// ([`crate::cuda::load`]). Call it once, before any tensor work and
/// before other threads read the environment: portable mode writes the
/// libraries' environment variables, then checks that libtorch took them.
/// A second call with another mode fails (the kernels are chosen once).
pub fn pin(mode: Reproducible) -> Result<Kernels> {
    pin_with(mode, true)
}

/// [`pin`] for a process that runs no tensor on a GPU: libtorch's CUDA half
/// is not loaded (where the NVIDIA libraries are installed it costs about
/// 0.1 s and 350 MB of resident library pages). Should a GPU be asked for
/// after all, [`crate::cuda::load`] still loads it, and says so if
/// something asked libtorch about CUDA first.
pub fn pin_cpu_only(mode: Reproducible) -> Result<Kernels> {
    pin_with(mode, false)
}

fn pin_with(mode: Reproducible, cuda: bool) -> Result<Kernels> {
    if let Some(&before) = MODE.get() {
        return if before == mode {
            Ok(current())
        } else {
            Err(Error::Kernels(format!(
                "this process already runs in {before} mode; it cannot switch to {mode}"
            )))
        };
    }
    // Before anything asks libtorch about CUDA (this function's own cuDNN
    // flags included): its CUDA half, where it loads. Why it did not is for
    // `pipeline doctor` and the device choice to say.
    if cuda {
        let _ = crate::cuda::load();
    }
    if mode == Reproducible::Portable {
        if let Some(missing) = missing_baseline() {
            return Err(Error::Kernels(format!(
                "portable mode needs a CPU with AVX2 and FMA; this one lacks {missing}"
            )));
        }
        for (k, v) in PORTABLE_ENV.iter().chain([&CUBLAS_ENV]) {
            std::env::set_var(k, v);
        }
        // On GPUs: cuDNN's deterministic algorithms, not the fastest it
        // times (the training loop then leaves benchmarking off).
        crate::shim::cudnn_deterministic(true);
    }
    let k = read_back(mode);
    if mode == Reproducible::Portable {
        if crate::shim::mkl_unreadable() {
            return Err(Error::Kernels(
                "this libtorch carries MKL but does not say which branch it runs: \
                 portable mode cannot be checked"
                    .into(),
            ));
        }
        let mkl_ok = k.mkl_branch.is_none_or(|b| b == MKL_COMPATIBLE);
        if k.aten != "AVX2" || !mkl_ok {
            return Err(Error::Kernels(format!(
                "portable mode was set after libtorch chose its CPU kernels ({})",
                k.describe()
            )));
        }
    }
    // Only once it took: a failed pin leaves the process unpinned.
    let _ = MODE.set(mode);
    Ok(k)
}

/// The instruction-set extension of portable mode's floor this CPU lacks
/// (`None`: it can run portable mode).
pub fn missing_baseline() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return Some("AVX2");
        }
        if !std::arch::is_x86_feature_detected!("fma") {
            return Some("FMA");
        }
        None
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Some("the x86-64 instruction set")
    }
}

/// The CPU kernels libtorch runs in this process, as `model.json` and the
/// logs record them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernels {
    /// The mode asked for.
    pub reproducible: Reproducible,
    /// ATen's vectorised-kernel level, as libtorch reports it.
    pub aten: String,
    /// oneDNN's instruction-set ceiling (`ONEDNN_MAX_CPU_ISA`); `None`: the
    /// CPU's best.
    pub onednn_max_isa: Option<String>,
    /// MKL's conditional-reproducibility branch (`MKL_CBWR_*` code: 1 off,
    /// 2 auto, 3 compatible, ...); `None` where libtorch carries no MKL.
    pub mkl_branch: Option<i32>,
}

impl Kernels {
    /// One line for logs: `ATen AVX2, oneDNN <= AVX2, MKL branch COMPATIBLE`.
    pub fn describe(&self) -> String {
        let onednn = self
            .onednn_max_isa
            .as_deref()
            .map_or("the CPU's best".to_string(), |i| format!("<= {i}"));
        let mkl = match self.mkl_branch {
            None => "none".to_string(),
            Some(1) => "branch off (the CPU's best)".to_string(),
            Some(2) => "branch auto".to_string(),
            Some(MKL_COMPATIBLE) => "branch COMPATIBLE".to_string(),
            Some(b) => format!("branch {b}"),
        };
        format!("ATen {}, oneDNN {onednn}, MKL {mkl}", self.aten)
    }
}

/// What libtorch runs now. The first call makes ATen and MKL fix their
/// choices, so it belongs after [`pin`].
pub fn current() -> Kernels {
    read_back(mode())
}

fn read_back(reproducible: Reproducible) -> Kernels {
    Kernels {
        reproducible,
        aten: crate::shim::cpu_capability(),
        onednn_max_isa: std::env::var("ONEDNN_MAX_CPU_ISA")
            .or_else(|_| std::env::var("DNNL_MAX_CPU_ISA"))
            .ok(),
        mkl_branch: crate::shim::mkl_branch(),
    }
}

/// Replaces each element of `t` (floating point) by its square root; on
/// the CPU with the same bits on every x86-64 machine.
///
/// libtorch's `sqrt` of a contiguous float tensor on the CPU is MKL's
/// vector square root, which on AMD CPUs (whatever `MKL_CBWR` says) and in
/// MKL's compatible branch refines an `rsqrtps` estimate, and that
/// instruction's bits differ between CPU makers; 17 % of MKL's roots were
/// not the correctly rounded one on an AMD EPYC. `1 / (1 / sqrt(x))` is
/// ATen's own vector code instead, correctly rounded IEEE operations on
/// every CPU, 0 at 0 (how far from the root: the test below). GPUs keep
/// their own `sqrt`: no GPU result is the same across machines anyway.
pub fn sqrt_(t: &mut tch::Tensor) {
    if t.device() != tch::Device::Cpu {
        let _ = t.sqrt_();
        return;
    }
    let _ = t.rsqrt_();
    let _ = t.reciprocal_();
}

/// [`sqrt_`] of every tensor of `ts` (all on one device), as libtorch's
/// list operations: the same bits as [`sqrt_`] of each.
pub fn sqrt_all_(ts: &[tch::Tensor]) {
    use crate::shim::foreach;
    match ts.first() {
        Some(t) if t.device() == tch::Device::Cpu => {
            foreach::rsqrt_(ts);
            foreach::reciprocal_(ts);
        }
        Some(_) => foreach::sqrt_(ts),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_their_names() {
        for name in Reproducible::NAMES {
            let m = Reproducible::from_name(name).unwrap();
            assert_eq!(m.name(), name);
            assert_eq!(serde_json::to_value(m).unwrap(), name);
        }
        assert_eq!(Reproducible::from_name("fast"), None);
        assert_eq!(Reproducible::default(), Reproducible::Native);
    }

    #[test]
    fn the_portable_root_is_within_an_ulp_of_the_correctly_rounded_one() {
        // Every float in [1, 4): scaling by 4 is exact for sqrt, so these
        // stand for every normal input.
        let bits: Vec<f32> = (1.0f32.to_bits()..4.0f32.to_bits())
            .map(f32::from_bits)
            .collect();
        let mut x = tch::Tensor::from_slice(&bits);
        sqrt_(&mut x);
        let got = Vec::<f32>::try_from(&x).unwrap();
        let (mut off, mut worst) = (0usize, 0u32);
        for (g, v) in got.iter().zip(&bits) {
            let d = g.to_bits().abs_diff(v.sqrt().to_bits());
            off += usize::from(d > 0);
            worst = worst.max(d);
        }
        assert!(worst <= 1, "{off} roots off, by up to {worst} ulp");
        let mut edges = tch::Tensor::from_slice(&[0.0f32, 1.0, 4.0]);
        sqrt_(&mut edges);
        assert_eq!(Vec::<f32>::try_from(&edges).unwrap(), [0.0, 1.0, 2.0]);
    }

    #[test]
    fn descriptions_name_each_library() {
        let k = Kernels {
            reproducible: Reproducible::Portable,
            aten: "AVX2".into(),
            onednn_max_isa: Some("AVX2".into()),
            mkl_branch: Some(3),
        };
        assert_eq!(
            k.describe(),
            "ATen AVX2, oneDNN <= AVX2, MKL branch COMPATIBLE"
        );
    }
}
