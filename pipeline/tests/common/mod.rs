//! What pipeline's integration tests share: where the repository is, how to
//! start the binary (alone or under `mpirun`), a deadline so a hung MPI job
//! fails its test instead of hanging the suite, and success checks that show
//! the output.
#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `pipeline` binary, run in `dir`.
pub fn pipeline(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    c.current_dir(dir);
    c
}

/// `mpirun -n N` with the options a root container and 2 cores need.
pub fn mpirun(n: usize) -> Command {
    let mut c = Command::new("mpirun");
    // Root in containers and CI; the cargo environment sets the OMPI_ALLOW_* pair too.
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["-n", &n.to_string(), "--oversubscribe", "--bind-to", "none"]);
    c
}

/// The Python interpreter scripts/setup.sh installed: a missing one is a
/// failure, not a skip.
pub fn python() -> String {
    std::env::var("PIPELINE_PYTHON").expect("PIPELINE_PYTHON is unset: run scripts/setup.sh first")
}

/// Runs `cmd` with a deadline, so a hung MPI job fails the test instead of hanging it.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Panics with the exit status and both streams unless `out` succeeded.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Like [`assert_success`], returning stdout and stderr as text.
pub fn ok(out: Output) -> (String, String) {
    assert_success(&out);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run WORKFLOW --set K=V ...` as arguments.
pub fn run_args(workflow: &Path, sets: &[String]) -> Vec<String> {
    let mut v = vec!["run".to_string(), workflow.to_string_lossy().into_owned()];
    for s in sets {
        v.push("--set".into());
        v.push(s.clone());
    }
    v
}
