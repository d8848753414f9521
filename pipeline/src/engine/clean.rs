//! `pipeline clean`: removes what the current workflow no longer makes —
//! the outputs (and checkpoints) of stages it no longer has, the scratch
//! left by interrupted runs — and the records and reports of old runs,
//! keeping the latest ones and every run that made a current output.
//!
//! It takes the workdir's lock, so it never races a run, and removes only
//! what the records say a stage wrote (a file of the user's own in the
//! workdir is left alone).

use std::path::{Path, PathBuf};

use crate::engine::lock::lock_workdir;
use crate::records::Records;
use crate::workflow::Workflow;
use crate::Error;

/// One thing removed (or, dry, that would be).
#[derive(Debug, Clone, PartialEq)]
pub struct Cleaned {
    /// The path.
    pub path: PathBuf,
    /// Why it goes.
    pub why: String,
}

/// What a clean did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Paths removed.
    pub items: Vec<Cleaned>,
    /// Runs whose records (and reports) were dropped.
    pub runs_dropped: usize,
    /// Bytes freed (files and the records database).
    pub bytes: u64,
}

/// Cleans `wf`'s workdir, keeping the records of the `keep_runs` latest
/// runs; with `dry_run`, only says what it would remove.
pub fn clean(wf: &Workflow, keep_runs: usize, dry_run: bool) -> Result<Summary, Error> {
    let workdir = &wf.workdir;
    if !workdir.join(".pipeline/records.sqlite").is_file() {
        return Ok(Summary::default());
    }
    let _lock = lock_workdir(workdir)?;
    let mut records = Records::open(workdir)?;
    let mut summary = Summary::default();
    let current: std::collections::HashSet<&str> =
        wf.stages.iter().map(|s| s.name.as_str()).collect();
    let remove = |path: PathBuf, why: String, summary: &mut Summary| -> Result<(), Error> {
        if !path.exists() {
            return Ok(());
        }
        summary.bytes += size_of(&path);
        if !dry_run {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(Error::io("failed to remove", &path))?;
            } else {
                std::fs::remove_file(&path).map_err(Error::io("failed to remove", &path))?;
            }
        }
        summary.items.push(Cleaned { path, why });
        Ok(())
    };
    for stage in records.recorded_stages()? {
        if current.contains(stage.as_str()) {
            continue;
        }
        remove(
            wf.stage_dir(&stage),
            format!("output of stage `{stage}`, which the workflow no longer has"),
            &mut summary,
        )?;
        if !dry_run {
            records.forget_stage(&stage)?;
        }
    }
    // Scratch and checkpoints: under the lock no run is using them.
    remove(
        workdir.join(".tmp"),
        "scratch left by an interrupted run".into(),
        &mut summary,
    )?;
    if let Ok(entries) = std::fs::read_dir(workdir.join(".checkpoints")) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names.into_iter().filter(|n| !current.contains(n.as_str())) {
            remove(
                workdir.join(".checkpoints").join(&name),
                format!("checkpoint of stage `{name}`, which the workflow no longer has"),
                &mut summary,
            )?;
        }
    }
    let old = records.runs_beyond(keep_runs)?;
    for id in &old {
        remove(
            crate::report::path_for(workdir, *id),
            format!("report of run {id}"),
            &mut summary,
        )?;
    }
    summary.runs_dropped = old.len();
    if !dry_run && !old.is_empty() {
        summary.bytes += records.drop_runs(&old)?;
    }
    Ok(summary)
}

/// Bytes under `path` (a file or a directory tree; links not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}
