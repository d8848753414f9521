//! Portable mode pins libtorch's CPU kernels before the first one runs, and
//! refuses to claim it once they have been chosen. Each case needs a fresh
//! process (the libraries choose once), so the refusal runs in a child.

use std::process::Command;

use sciflow_train::kernels::{self, Reproducible, PORTABLE_ENV};
use tch::{Device, Kind, Tensor};

#[test]
fn portable_mode_pins_every_library_before_the_first_kernel() {
    let k = kernels::pin(Reproducible::Portable).expect("this CPU has AVX2 and FMA");
    assert_eq!(k.reproducible, Reproducible::Portable);
    assert_eq!(k.aten, "AVX2");
    assert_eq!(k.onednn_max_isa.as_deref(), Some("AVX2"));
    // PyPI's libtorch carries MKL: its compatible branch.
    assert_eq!(k.mkl_branch, Some(3));
    for (key, value) in PORTABLE_ENV {
        assert_eq!(std::env::var(key).unwrap(), value);
    }
    let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&a);
    assert_eq!(kernels::current(), k);
    assert_eq!(kernels::mode(), Reproducible::Portable);
    // Pinning the same mode again is harmless; switching is refused.
    assert_eq!(kernels::pin(Reproducible::Portable).unwrap(), k);
    let err = kernels::pin(Reproducible::Native).unwrap_err().to_string();
    assert!(err.contains("cannot switch to native"), "{err}");
}

const CHILD: &str = "SCIFLOW_KERNELS_TEST_CHILD";

#[test]
fn portable_mode_asked_for_after_the_first_kernel_is_refused() {
    if std::env::var_os(CHILD).is_some() {
        // A GEMM makes MKL settle on its native branch.
        let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
        let _ = a.matmul(&a);
        let err = kernels::pin(Reproducible::Portable)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("after libtorch chose its CPU kernels"),
            "{err}"
        );
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "portable_mode_asked_for_after_the_first_kernel_is_refused",
        ])
        .env(CHILD, "1");
    // The other test of this process may have pinned it already.
    for (key, _) in PORTABLE_ENV {
        child.env_remove(key);
    }
    let out = child.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child ran the case (a filter that matched nothing would also succeed).
    assert!(text.contains("1 passed"), "{text}");
}
