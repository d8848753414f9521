//! Rank 0's side of a run: the workdir's locks, the run records, each
//! stage's decision, start and end, and how a finished output replaces the
//! previous one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::engine::fingerprint::hash_path;
use crate::engine::lock::{lock_shared, lock_stage, lock_workdir, WorkdirLock};
use crate::engine::plan::{decide, kind_id, stage_mode, Decision};
use crate::records::{Records, StageState};
use crate::stages::kind::MetricsSink;
use crate::workflow::{Stage, Workflow};
use crate::Error;

/// Rank 0's bookkeeping: the locks, the run records and this run's id.
pub(super) struct Root<'a> {
    pub(super) wf: &'a Workflow,
    pub(super) _locks: Vec<WorkdirLock>,
    pub(super) records: Records,
    pub(super) run_id: i64,
    /// Recording into a run begun elsewhere (`--join`): its end is not ours.
    pub(super) joined: bool,
}

/// A stage rank 0 has started: its run's id in the records, and whether it
/// continues from a checkpoint.
pub(super) struct Started {
    pub(super) stage_run: i64,
    pub(super) resume: bool,
}

impl<'a> Root<'a> {
    /// Locks the workdir and records the start of a run with its command
    /// line `argv` (or, joining the run `join`, shares the workdir and locks
    /// the selected stages).
    pub(super) fn begin(
        wf: &'a Workflow,
        ranks: usize,
        (argv, join): (&str, Option<i64>),
        stages: &[&Stage],
    ) -> Result<Root<'a>, Error> {
        let Some(run_id) = join else {
            let lock = lock_workdir(&wf.workdir)?;
            let records = Records::open(&wf.workdir)?;
            records.mark_interrupted()?;
            let run_id = records.begin_run(&wf.name, &wf.file.to_string_lossy(), ranks, argv)?;
            let resolved = serde_json::to_string_pretty(&wf.resolved()).expect("JSON serialises");
            records.set_resolved(run_id, &resolved)?;
            return Ok(Root {
                wf,
                _locks: vec![lock],
                records,
                run_id,
                joined: false,
            });
        };
        let mut locks = vec![lock_shared(&wf.workdir)?];
        for stage in stages {
            locks.push(lock_stage(&wf.workdir, &stage.name)?);
        }
        let records = Records::open(&wf.workdir)?;
        match records.run_info(run_id)? {
            Some(info) if info.status == "running" => {}
            // A whole run in this workdir between two of the submission's
            // jobs marks it interrupted (no job held the workdir then): the
            // submission goes on.
            Some(info) if info.status == "interrupted" => records.reopen_run(run_id)?,
            Some(info) => {
                return Err(Error::Stage {
                    stage: stages.first().map_or(String::new(), |s| s.name.clone()),
                    message: format!("run {run_id} to join has ended ({})", info.status),
                })
            }
            None => {
                return Err(Error::NotRecorded {
                    path: wf.workdir.join(".pipeline/records.sqlite"),
                    message: format!("no run {run_id} to join"),
                })
            }
        }
        for stage in stages {
            // Under its lock, a stage left `running` is one whose job died.
            records.mark_stage_interrupted(run_id, &stage.name)?;
        }
        Ok(Root {
            wf,
            _locks: locks,
            records,
            run_id,
            joined: true,
        })
    }

    /// Records the end of the run (with its error) and writes its report.
    pub(super) fn end(&self, error: Option<&Error>) -> Result<(), Error> {
        if self.joined {
            return Ok(());
        }
        let wf = self.wf;
        let err = error.map(|e| e.to_string());
        self.records.end_run(self.run_id, err.as_deref())?;
        // The report is a view of the records: failing to write it loses
        // nothing the run made, so it warns rather than fails the run.
        match crate::report::write(&self.records, &wf.workdir, Some(self.run_id), None) {
            Ok(path) => tracing::info!("report: {}", path.display()),
            Err(e) => tracing::warn!("no report for run {}: {e}", self.run_id),
        }
        Ok(())
    }

    /// Decides a stage; an up-to-date one is recorded as skipped.
    pub(super) fn decide(
        &mut self,
        stage: &Stage,
        forced: bool,
        ranks: usize,
    ) -> Result<Decision, Error> {
        let wf = self.wf;
        // A stage is decided once the stages it needs have run, so every
        // upstream output hash is known: nothing is pending.
        let d = decide(wf, stage, &self.records, forced, &HashSet::new())?;
        if !d.run {
            self.records.stage_skipped(
                self.run_id,
                &stage.name,
                &kind_id(stage),
                &d.fingerprint,
                "up to date",
                ranks,
            )?;
            tracing::info!("{}: up to date", stage.name);
            if d.upgrade {
                // Made before configurations were recorded with their
                // defaults, and fresh by the fingerprint of that time: from
                // now on its configuration is recorded and compared.
                if let Some(mut state) = self.records.stage_state(&stage.name)? {
                    state.fingerprint = d.fingerprint.clone();
                    state.resolved = Some(stage.resolved.clone());
                    self.records.set_stage_state(&stage.name, &state)?;
                }
            }
        }
        Ok(d)
    }

    /// Readies the stage's scratch and checkpoint directories and records
    /// its start.
    pub(super) fn start(
        &mut self,
        stage: &Stage,
        d: &Decision,
        dirs: &StageDirs,
        resume: bool,
        ranks: usize,
    ) -> Result<Started, Error> {
        let tmp = &dirs.tmp;
        if tmp.exists() {
            std::fs::remove_dir_all(tmp).map_err(Error::io("failed to clear", tmp))?;
        }
        std::fs::create_dir_all(tmp).map_err(Error::io("failed to create", tmp))?;
        // The seed is not in the fingerprint (so fingerprints from before it
        // was recorded stay valid), but a checkpoint of another seed is not
        // this run's.
        let stamp = format!("{} seed {}", d.fingerprint, self.wf.seed);
        let resume = stage.kind.props.checkpoints
            && prepare_checkpoints(&dirs.checkpoints, &stamp, resume, &stage.name)?;
        let reason = d.reasons.join("; ");
        tracing::info!("{}: running ({}): {reason}", stage.name, stage.kind.name);
        let stage_run = self.records.stage_started(
            self.run_id,
            &stage.name,
            &kind_id(stage),
            &d.fingerprint,
            &reason,
            ranks,
        )?;
        Ok(Started { stage_run, resume })
    }

    /// Moves a finished stage's output into place and records it, its
    /// output hashes, its new state and its metrics in one transaction.
    pub(super) fn finish(
        &mut self,
        stage: &Stage,
        d: Decision,
        dirs: &StageDirs,
        started: &Started,
        seconds: f64,
        metrics: &MetricsSink,
    ) -> Result<(), Error> {
        let (wf, stage_run) = (self.wf, started.stage_run);
        let out = wf.stage_dir(&stage.name);
        replace_dir(&dirs.tmp, &out, &dirs.old)?;
        let ckpt = &dirs.checkpoints;
        if stage.kind.props.checkpoints && ckpt.exists() {
            std::fs::remove_dir_all(ckpt).map_err(Error::io("failed to remove", ckpt))?;
            // `.checkpoints` itself goes once no stage has one (fails, harmlessly, if some do).
            let _ = std::fs::remove_dir(wf.workdir.join(".checkpoints"));
        }
        let metrics = metrics.take();
        let run_id = self.run_id;
        self.records.batch(|r| {
            let (output_hash, files) = hash_path(r, &out)?;
            r.set_stage_state(
                &stage.name,
                &StageState {
                    fingerprint: d.fingerprint,
                    kind: kind_id(stage),
                    config: stage.config.clone(),
                    resolved: Some(stage.resolved.clone()),
                    inputs: d.inputs,
                    upstream: d.upstream,
                    output_hash,
                    run_id,
                    reproducible: stage_mode(self.wf, stage),
                    seed: Some(self.wf.seed),
                },
            )?;
            r.stage_finished(stage_run, &stage.name, seconds, None, &files, &metrics)
        })?;
        tracing::info!(
            "{}: done in {seconds:.1} s -> {}",
            stage.name,
            out.display()
        );
        Ok(())
    }

    /// Records a stage's failure (best effort: the stage's own error is what
    /// the user must see).
    pub(super) fn failed(&mut self, stage: &Stage, started: &Started, seconds: f64, error: &Error) {
        let _ = self.records.stage_finished(
            started.stage_run,
            &stage.name,
            seconds,
            Some(&error.to_string()),
            &[],
            &[],
        );
        if error.preempted() {
            let _ = self.records.mark_stopped(started.stage_run);
        }
    }
}

/// Where a running stage writes.
pub(super) struct StageDirs {
    /// `<workdir>/.tmp/<stage>`: the output until it is complete.
    pub(super) tmp: PathBuf,
    /// `<workdir>/.tmp/<stage>.old`: the previous output while it is replaced.
    pub(super) old: PathBuf,
    /// `<workdir>/.checkpoints/<stage>`.
    pub(super) checkpoints: PathBuf,
}

/// Rank 0's locks on the records (a poisoned lock still holds sound
/// records: every write is a statement or a transaction).
pub(super) fn lock<'r, 'a>(root: &'r Mutex<Root<'a>>) -> std::sync::MutexGuard<'r, Root<'a>> {
    root.lock().unwrap_or_else(|p| p.into_inner())
}

/// Readies a stage's checkpoint directory and says whether to resume from it:
/// only with `--resume` and a checkpoint left by a run of the same
/// fingerprint and seed (`stamp`: configuration, inputs, upstream outputs).
/// Otherwise any old checkpoint is cleared and the stamp recorded for the
/// run starting.
pub(super) fn prepare_checkpoints(
    dir: &Path,
    fingerprint: &str,
    resume: bool,
    stage: &str,
) -> Result<bool, Error> {
    let stamp = dir.join("fingerprint");
    let matches = std::fs::read_to_string(&stamp).is_ok_and(|f| f == fingerprint);
    let has_state = dir.join("current").is_dir() || dir.join("previous").is_dir();
    if resume && matches && has_state {
        tracing::info!("{stage}: resuming from the checkpoint in {}", dir.display());
        return Ok(true);
    }
    if has_state {
        if resume {
            tracing::warn!(
                "{stage}: the checkpoint in {} is from another configuration or input; starting afresh",
                dir.display()
            );
        } else if matches {
            tracing::warn!(
                "{stage}: discarding the checkpoint in {} (pass --resume to continue from it)",
                dir.display()
            );
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("failed to clear", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    std::fs::write(&stamp, fingerprint).map_err(Error::io("failed to write", &stamp))?;
    Ok(false)
}

/// Moves `new` to `dest`, replacing what was there; `old` is a scratch name.
pub(super) fn replace_dir(new: &Path, dest: &Path, old: &Path) -> Result<(), Error> {
    if old.exists() {
        std::fs::remove_dir_all(old).map_err(Error::io("failed to clear", old))?;
    }
    if dest.exists() {
        std::fs::rename(dest, old).map_err(Error::io("failed to move aside", dest))?;
    }
    std::fs::rename(new, dest).map_err(Error::io("failed to rename into", dest))?;
    if old.exists() {
        std::fs::remove_dir_all(old).map_err(Error::io("failed to remove", old))?;
    }
    Ok(())
}
