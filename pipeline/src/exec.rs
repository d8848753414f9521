//! Running a compiled workflow, on one process or on every rank of an MPI job.
//!
//! Every rank walks the same stage order. Rank 0 prepares each stage's
//! temporary directory; after a barrier, collective stages run on every rank
//! and root-only stages on rank 0; after another barrier rank 0 renames the
//! temporary directory into place. A stage that fails leaves its previous
//! output (if any) untouched and no half-written directory under its name.

use std::path::Path;
use std::time::Instant;

use sciflow_train::Comm;

use crate::progress::Progress;
use crate::registry::StageContext;
use crate::workflow::Workflow;
use crate::Error;

/// How long each stage took.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// (stage, seconds), in run order.
    pub stages: Vec<(String, f64)>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs every stage of `wf` in order. All ranks of `comm` must call this.
pub fn run(
    wf: &Workflow,
    comm: &dyn Comm,
    progress: &Progress,
    threads: usize,
) -> Result<RunSummary, Error> {
    let rank = comm.rank();
    let scratch = wf.workdir.join(".tmp");
    let mut summary = RunSummary { stages: Vec::new() };
    for stage in &wf.stages {
        let tmp = scratch.join(&stage.name);
        let out = wf.stage_dir(&stage.name);
        if rank == 0 {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(io("failed to clear", &tmp))?;
            }
            std::fs::create_dir_all(&tmp).map_err(io("failed to create", &tmp))?;
            tracing::info!("{}: running ({})", stage.name, stage.kind.name);
        }
        comm.barrier();
        let started = Instant::now();
        if stage.kind.collective || rank == 0 {
            let ctx = StageContext {
                name: &stage.name,
                config: &stage.config,
                out: &tmp,
                seed: wf.seed,
                comm,
                threads,
                progress,
            };
            (stage.kind.run)(&ctx).map_err(|e| Error::StageFailed {
                stage: stage.name.clone(),
                rank,
                source: Box::new(e),
            })?;
        }
        comm.barrier();
        let seconds = started.elapsed().as_secs_f64();
        if rank == 0 {
            replace_dir(&tmp, &out, &scratch.join(format!("{}.old", stage.name)))?;
            tracing::info!(
                "{}: done in {seconds:.1} s -> {}",
                stage.name,
                out.display()
            );
        }
        summary.stages.push((stage.name.clone(), seconds));
    }
    comm.barrier();
    if rank == 0 {
        let _ = std::fs::remove_dir(&scratch);
    }
    Ok(summary)
}

/// Moves `new` to `dest`, replacing what was there; `old` is a scratch name.
fn replace_dir(new: &Path, dest: &Path, old: &Path) -> Result<(), Error> {
    if old.exists() {
        std::fs::remove_dir_all(old).map_err(io("failed to clear", old))?;
    }
    if dest.exists() {
        std::fs::rename(dest, old).map_err(io("failed to move aside", dest))?;
    }
    std::fs::rename(new, dest).map_err(io("failed to rename into", dest))?;
    if old.exists() {
        std::fs::remove_dir_all(old).map_err(io("failed to remove", old))?;
    }
    Ok(())
}
