//! The workflow engine behind the `pipeline` command.
//!
//! A workflow file (YAML) declares stages, each of a registered kind
//! ([`registry::REGISTRY`]) with a typed `with:` block; `${stage.output}`
//! references between them form a DAG. [`workflow::compile`] validates the
//! whole file at once and reports every problem with its line and column;
//! [`exec::run`] runs the stages in order on one process or on every rank of
//! an MPI job, each writing into a temporary directory that is renamed into
//! place only when the stage succeeds.
//!
//! Stage libraries (`sciflow-ingest`, `-train`, `-eval`) know nothing of this
//! crate; the registry adapts them.

pub mod clean;
pub mod command;
pub mod dag;
pub mod diagnostics;
pub mod doctor;
pub mod exec;
pub mod fingerprint;
pub mod launcher;
mod lock;
mod mounts;
pub mod plan;
pub mod progress;
pub mod records;
pub mod registry;
pub mod report;
pub mod resources;
mod schedule;
pub mod slurm;
pub mod stage;
pub mod subworkflow;
pub mod workflow;
pub mod yaml;

mod error;

pub use error::Error;
