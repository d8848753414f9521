//! The native libraries the readers run on, for `pipeline doctor` and bug
//! reports: HDF5 and cfitsio are built from their crates' bundled sources
//! and linked in statically, and each says its own version here (what
//! runs, not what a header said at build time).

/// `(name, version)` of HDF5 and cfitsio, as the libraries report them.
pub fn library_versions() -> Vec<(&'static str, String)> {
    let (major, minor, release) = hdf5::library_version();
    vec![
        ("HDF5", format!("{major}.{minor}.{release}")),
        ("cfitsio", cfitsio_version()),
    ]
}

#[allow(unsafe_code)]
fn cfitsio_version() -> String {
    let mut v = 0.0f32;
    // SAFETY: ffvers writes one float through the pointer it is given (and
    // returns it); `v` outlives the call.
    unsafe { fitsio::sys::ffvers(&mut v) };
    // major + minor / 100 + micro / 10000: 4.02 is 4.2.0, 3.49 is 3.49.0.
    let ten_thousandths = (f64::from(v) * 10_000.0).round() as u64;
    format!(
        "{}.{}.{}",
        ten_thousandths / 10_000,
        ten_thousandths / 100 % 100,
        ten_thousandths % 100
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_libraries_report_a_version() {
        let v = super::library_versions();
        assert_eq!(v[0].0, "HDF5");
        // The 2.x series hdf5-metno-src builds: a 1.x would be a system
        // library, which the static build must not pick up.
        assert!(v[0].1.starts_with("2."), "{v:?}");
        assert_eq!(v[1].0, "cfitsio");
        let parts: Vec<u32> = v[1].1.split('.').map(|p| p.parse().unwrap()).collect();
        assert!(parts.len() == 3 && parts[0] >= 3, "{v:?}");
    }
}
