//! The workflow engine behind the `pipeline` command.
//!
//! A workflow file (YAML) declares stages, each of a registered kind
//! ([`stages::REGISTRY`]) with a typed `with:` block; `${stage.output}`
//! references between them form a DAG. [`workflow::compile`] validates the
//! whole file at once and reports every problem with its line and column;
//! [`engine::exec::run`] runs the stages in order on one process or on every
//! rank of an MPI job, each writing into a temporary directory that is
//! renamed into place only when the stage succeeds.
//!
//! The rooms, each importing only those listed after it:
//!
//! | room        | what it holds |
//! |-------------|---------------|
//! | `cluster/`  | Slurm job scripts and submission, `pipeline doctor` |
//! | `engine/`   | plan, fingerprints, the executor and its scheduler, locks, clean |
//! | `report/`   | the HTML page of a run |
//! | `workflow/` | the language: YAML with positions, diagnostics, entries, `foreach`, references, resources, the DAG |
//! | `stages/`   | what a stage kind is, the registry, its adapters (ingest, train, eval, `command`, `workflow`), progress |
//! | `records/`  | the SQLite run records, the file-system probe under them |
//!
//! `launcher.rs` (the program to restart) and `error.rs` sit beside them. The
//! stage libraries (`sciflow-ingest`, `-train`, `-eval`) know nothing of this
//! crate; `stages/` adapts them. `tests/modules.rs` fails on an import circle.

pub mod cluster;
pub mod engine;
pub mod launcher;
pub mod records;
pub mod report;
pub mod stages;
pub mod workflow;

mod error;

pub use error::Error;
