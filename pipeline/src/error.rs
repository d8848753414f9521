use std::path::PathBuf;

use crate::workflow::diagnostics::Diagnostics;

/// What can stop a workflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The workflow file is invalid (every problem found, one per line).
    #[error("{0}")]
    Config(Diagnostics),
    /// A file or directory operation of the engine failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The run records database refused a query.
    #[error("run records {path}: {source}")]
    Records {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The run records do not hold what was asked for.
    #[error("run records {path}: {message}")]
    NotRecorded {
        /// The database file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// Another run holds the workdir.
    #[error(
        "workdir {workdir} is locked by another run ({owner}); wait for it or use another workdir"
    )]
    Locked {
        /// The workdir.
        workdir: PathBuf,
        /// Who holds it, as far as known.
        owner: String,
    },
    /// `pipeline submit` could not write or submit the batch script.
    #[error("submit: {0}")]
    Submit(String),
    /// A stage's own configuration was refused when it ran.
    #[error("stage {stage}: {message}")]
    Stage {
        /// The stage.
        stage: String,
        /// What went wrong.
        message: String,
    },
    /// Reading or writing data failed.
    #[error(transparent)]
    Ingest(#[from] sciflow_ingest::Error),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] sciflow_train::Error),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] sciflow_eval::Error),
    /// With `--keep-going`: stages failed, and the stages needing them did not run.
    #[error(
        "{} stage(s) failed: {}{}",
        failed.len(),
        failed.iter().map(|(s, e)| format!("`{s}` ({e})")).collect::<Vec<_>>().join("; "),
        if not_run.is_empty() { String::new() } else { format!("; not run, as a stage they need failed: {}", not_run.join(", ")) }
    )]
    StagesFailed {
        /// Each failed stage and its error.
        failed: Vec<(String, String)>,
        /// Stages not run because a stage they need failed.
        not_run: Vec<String>,
    },
    /// A stage failed; `source` says why.
    #[error("stage `{stage}` failed on rank {rank}: {source}")]
    StageFailed {
        /// The stage.
        stage: String,
        /// The rank it failed on.
        rank: usize,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and on which path.
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The exit status of a run stopped at a checkpoint before a time limit
    /// (75, EX_TEMPFAIL: run it again with `--resume`).
    pub const PREEMPTED: i32 = 75;

    /// The process exit status: 78 (EX_CONFIG) for an invalid workflow,
    /// [`Error::PREEMPTED`] for training stopped at a checkpoint on request,
    /// 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 78,
            e if e.preempted() => Self::PREEMPTED,
            _ => 1,
        }
    }

    /// Training stopped at a checkpoint on request (see [`sciflow_train::preempt`]).
    pub fn preempted(&self) -> bool {
        match self {
            Error::Train(sciflow_train::Error::Preempted { .. }) => true,
            Error::Eval(sciflow_eval::Error::Model(sciflow_train::Error::Preempted { .. })) => true,
            Error::StageFailed { source, .. } => source.preempted(),
            _ => false,
        }
    }
}
