//! The `pipeline` command's verbs, one file per group: [`args`] (the flags
//! and `--help`), [`run`], [`workflow`] (list, validate, plan, dag, doctor),
//! [`cluster`] (submit), [`records`] (history, show, metrics, report, clean).
//! Each verb's output goes through [`out`]'s buffered stdout.

#[macro_use]
pub mod out;
pub mod args;
pub mod cluster;
pub mod records;
pub mod run;
pub mod workflow;
