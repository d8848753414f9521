//! `pipeline doctor`: what this machine gives a run, item by item, each
//! with a verdict: the libtorch it loaded and the GPUs it sees, the CPU
//! kernels, the MPI library and launcher, HDF5 and cfitsio, the threads.
//! Given a workflow, it also checks what that workflow needs (its devices,
//! its reproducibility mode) the way `run` would, without running a stage.

use std::fmt;

use sciflow_train::{kernels, Reproducible};

use crate::workflow::Workflow;

/// How an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Present and usable.
    Ok,
    /// Usable, with something worth knowing.
    Note,
    /// What the workflow (or any run) needs is not there.
    Missing,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so the report's columns line up.
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Note => "note",
            Verdict::Missing => "MISSING",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What is checked.
    pub name: &'static str,
    /// How it stands.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} {:<12} {}", self.verdict, self.name, self.detail)
    }
}

fn item(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Item {
    Item {
        name,
        verdict,
        detail: detail.into(),
    }
}

/// Checks this machine, and `wf`'s needs when given. Pins the CPU kernels
/// (the workflow's mode, else native), so call it before any tensor work.
pub fn examine(wf: Option<&Workflow>) -> Vec<Item> {
    let mode = wf.map_or(Reproducible::Native, |w| w.reproducible);
    let mut items = Vec::new();
    let kernels = kernels::pin(mode);

    let dir = sciflow_train::cuda::torch_lib_dir();
    let version = sciflow_train::shim::torch_version();
    let place = dir.map_or("(path unknown)".into(), |d| d.display().to_string());
    let cuda = match sciflow_train::cuda::load() {
        Ok(_) => "its CUDA half loaded".to_string(),
        Err(why) => format!("CPU only here: {why}"),
    };
    let series = sciflow_train::LIBTORCH_SERIES;
    let (verdict, aside) = if version.starts_with(series) {
        (Verdict::Ok, String::new())
    } else {
        (Verdict::Note, format!(" (built and tested with {series}x)"))
    };
    let shown = if version.is_empty() {
        "version unknown"
    } else {
        &version
    };
    items.push(item(
        "libtorch",
        verdict,
        format!("{shown} at {place}; {cuda}{aside}"),
    ));

    let gpus = sciflow_train::cuda::device_count();
    let devices = wf.map(|w| {
        let stages: Vec<&crate::workflow::Stage> = w.stages.iter().collect();
        crate::engine::exec::check_devices(&stages)
    });
    items.push(match devices {
        Some(Err(e)) => item("GPUs", Verdict::Missing, format!("{gpus} seen; {e}")),
        _ if gpus == 0 => item("GPUs", Verdict::Note, "none seen: training runs on the CPU"),
        _ => item(
            "GPUs",
            Verdict::Ok,
            format!("{gpus} seen (each rank takes its node-local one)"),
        ),
    });

    items.push(match kernels {
        Ok(k) => item(
            "CPU kernels",
            Verdict::Ok,
            format!(
                "reproducible: {mode}; {}{}",
                k.describe(),
                match kernels::missing_baseline() {
                    None => String::new(),
                    Some(m) => format!("; portable mode unavailable (no {m})"),
                }
            ),
        ),
        Err(e) => item("CPU kernels", Verdict::Missing, e.to_string()),
    });

    let launcher = sciflow_train::dist::launcher_variables();
    let launched = if launcher.is_empty() {
        "not under a launcher (one process)".to_string()
    } else {
        format!("launcher variables: {}", launcher.join(" "))
    };
    let unconnected = sciflow_train::dist::unconnected_slurm_tasks(1, |k| std::env::var(k).ok());
    items.push(
        match (sciflow_train::dist::library_version(), unconnected) {
            (_, Some(why)) => item("MPI", Verdict::Missing, why),
            (Ok(v), None) => item("MPI", Verdict::Ok, format!("{v}; {launched}")),
            (Err(why), None) => item("MPI", Verdict::Note, format!("{why}; {launched}")),
        },
    );

    for (name, version) in sciflow_ingest::native::library_versions() {
        // Built from the crates' bundled sources and linked in: present
        // wherever the binary runs.
        items.push(item(name, Verdict::Ok, format!("{version} (linked in)")));
    }

    // As `run` sizes them (its rank count from MPI, here from the
    // launcher's environment).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let local = sciflow_train::dist::local_size_from_env();
    let over = sciflow_train::thread_override();
    let threads = sciflow_train::threads_for_rank(local, over.map(|(n, _)| n));
    let why = over.map_or("an even share".into(), |(n, k)| format!("{k}={n}"));
    items.push(item(
        "threads",
        Verdict::Ok,
        format!("{threads} per rank ({why}); {cores} core(s) here, {local} rank(s) on this node"),
    ));
    items
}

/// Whether nothing is missing.
pub fn healthy(items: &[Item]) -> bool {
    items.iter().all(|i| i.verdict != Verdict::Missing)
}
