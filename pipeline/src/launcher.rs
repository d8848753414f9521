//! How this program starts itself again: Slurm job scripts and
//! sub-workflows run `pipeline` in another process. Started from the
//! release archive, that must be the archive's launcher (`bin/pipeline`,
//! which finds libtorch and sets the library path), not the bare binary in
//! `libexec/`; the launcher says where it is in `SCIFLOW_LAUNCHER`.

use std::path::PathBuf;

/// The environment variable the release archive's launcher sets to itself.
pub const LAUNCHER_ENV: &str = "SCIFLOW_LAUNCHER";

/// The program to run for another `pipeline` process: the launcher that
/// started this one, when there is one, else this executable.
pub fn program() -> std::io::Result<PathBuf> {
    match std::env::var_os(LAUNCHER_ENV).map(PathBuf::from) {
        Some(launcher) if launcher.is_file() => Ok(launcher),
        _ => std::env::current_exe(),
    }
}
