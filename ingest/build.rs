//! Lets this package's programs link cfitsio and bzip2 together: both
//! define bzip2's error hook `bz_internal_error` (see train/build.rs).

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
}
