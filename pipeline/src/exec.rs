//! Deciding what runs, and running it, on one process or on every rank of an MPI job.
//!
//! Rank 0 owns the workdir lock and the run records. For each stage in
//! order it computes the stage's fingerprint and compares it with what the
//! current output was made from ([`crate::plan::decide`]); it broadcasts the run/skip
//! decision, so every rank follows the same plan. A stage that runs writes
//! into `<workdir>/.tmp/<stage>`; rank 0 renames it into place only when every
//! rank has finished it, then hashes the output: a later stage whose inputs
//! come out byte-identical is not rerun. A crash or `kill -9` leaves the
//! previous output (or none) under the stage's name, so the next run redoes
//! exactly the unfinished stages.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sciflow_train::{Comm, DeviceSpec};

use crate::fingerprint::hash_path;
use crate::plan::{decide, kind_id, Decision, Selection};
use crate::progress::Progress;
use crate::records::{Records, StageState};
use crate::stage::{MetricsSink, StageContext};
use crate::workflow::{Stage, Workflow};
use crate::Error;

/// How one stage went.
#[derive(Debug, Clone, PartialEq)]
pub struct StageOutcome {
    /// The stage.
    pub stage: String,
    /// It ran (else it was up to date).
    pub ran: bool,
    /// Wall time of its run, 0 when it did not run.
    pub seconds: f64,
}

/// How each stage went.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id in the records (rank 0; 0 elsewhere).
    pub run_id: i64,
    /// The selected stages, in order.
    pub stages: Vec<StageOutcome>,
}

/// Holds the workdir lock for the life of a run.
pub struct WorkdirLock {
    _file: File,
}

/// Takes the workdir's lock, or fails at once naming who holds it.
pub fn lock_workdir(workdir: &Path) -> Result<WorkdirLock, Error> {
    let dir = workdir.join(".pipeline");
    std::fs::create_dir_all(&dir).map_err(Error::io("failed to create", &dir))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(Error::io("failed to open", &path))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::write(
                dir.join("lock.owner"),
                format!(
                    "pid {} on {}\n",
                    std::process::id(),
                    crate::records::hostname()
                ),
            );
            Ok(WorkdirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let owner = std::fs::read_to_string(dir.join("lock.owner")).unwrap_or_default();
            Err(Error::Locked {
                workdir: workdir.to_path_buf(),
                owner: owner.trim().to_string(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("failed to lock", &path)(e)),
    }
}

/// Runs the selected stages of `wf` that are not up to date. All ranks of
/// `comm` must call this with the same arguments.
pub fn run(
    wf: &Workflow,
    selection: &Selection,
    comm: &dyn Comm,
    progress: &Progress,
    threads: usize,
    argv: &str,
) -> Result<RunSummary, Error> {
    let stages = selection.stages(wf)?;
    check_devices(&stages)?;
    // Rank 0 alone touches the lock and the records.
    let mut root = if comm.rank() == 0 {
        Some(Root::begin(wf, comm.size(), argv)?)
    } else {
        None
    };
    let runner = Runner {
        wf,
        selection,
        comm,
        progress,
        threads,
    };
    let result = runner.run_stages(&stages, root.as_mut());
    if let Some(root) = &root {
        root.end(result.as_ref().err())?;
    }
    result
}

/// Resolves every selected stage's `device` on this rank before anything
/// runs, so a GPU asked for where there is none stops the run at once,
/// naming the stage, instead of after the stages before it.
fn check_devices(stages: &[&Stage]) -> Result<(), Error> {
    for stage in stages {
        let Some(spec) = stage.config.get("device") else {
            continue;
        };
        let fail = |message: String| Error::Stage {
            stage: stage.name.clone(),
            message,
        };
        let spec: DeviceSpec =
            serde_json::from_value(spec.clone()).map_err(|e| fail(format!("device: {e}")))?;
        let device = spec.resolve().map_err(|e| fail(e.to_string()))?;
        tracing::debug!(
            "{}: device {spec} is {}",
            stage.name,
            sciflow_train::learner::describe(device)
        );
    }
    Ok(())
}

/// Rank 0's verdict on a stage, broadcast so every rank follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Up to date: skip it.
    Skip,
    /// Run it.
    Run,
    /// Rank 0 could not decide (its error stops the run): stop.
    Abort,
}

impl Verdict {
    /// Rank 0's verdict, as every rank receives it.
    fn broadcast(self, comm: &dyn Comm) -> Verdict {
        let mut byte = [match self {
            Verdict::Skip => 0u8,
            Verdict::Run => 1,
            Verdict::Abort => 2,
        }];
        comm.broadcast_bytes(&mut byte, 0);
        match byte[0] {
            0 => Verdict::Skip,
            1 => Verdict::Run,
            _ => Verdict::Abort,
        }
    }
}

/// Rank 0's bookkeeping: the workdir lock, the run records and this run's id.
struct Root<'a> {
    wf: &'a Workflow,
    _lock: WorkdirLock,
    records: Records,
    run_id: i64,
}

/// A stage rank 0 has started: its run's id in the records, and whether it
/// continues from a checkpoint.
struct Started {
    stage_run: i64,
    resume: bool,
}

impl<'a> Root<'a> {
    /// Locks the workdir and records the start of a run.
    fn begin(wf: &'a Workflow, ranks: usize, argv: &str) -> Result<Root<'a>, Error> {
        let lock = lock_workdir(&wf.workdir)?;
        let records = Records::open(&wf.workdir)?;
        records.mark_interrupted()?;
        let run_id = records.begin_run(&wf.name, &wf.file.to_string_lossy(), ranks, argv)?;
        let resolved = serde_json::to_string_pretty(&wf.resolved()).expect("JSON serialises");
        records.set_resolved(run_id, &resolved)?;
        Ok(Root {
            wf,
            _lock: lock,
            records,
            run_id,
        })
    }

    /// Records the end of the run (with its error) and writes its report.
    fn end(&self, error: Option<&Error>) -> Result<(), Error> {
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
    fn decide(&mut self, stage: &Stage, forced: bool, ranks: usize) -> Result<Decision, Error> {
        let wf = self.wf;
        // Stages are decided one at a time after their upstream stages have
        // run, so every upstream output hash is known: nothing is pending.
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
        }
        Ok(d)
    }

    /// Readies the stage's scratch and checkpoint directories and records
    /// its start.
    fn start(
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
        let resume = stage.kind.props.checkpoints
            && prepare_checkpoints(&dirs.checkpoints, &d.fingerprint, resume, &stage.name)?;
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
    fn finish(
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
        replace_dir(
            &dirs.tmp,
            &out,
            &dirs.scratch.join(format!("{}.old", stage.name)),
        )?;
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
                    inputs: d.inputs,
                    upstream: d.upstream,
                    output_hash,
                    run_id,
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
    fn failed(&mut self, stage: &Stage, started: &Started, seconds: f64, error: &Error) {
        let _ = self.records.stage_finished(
            started.stage_run,
            &stage.name,
            seconds,
            Some(&error.to_string()),
            &[],
            &[],
        );
    }
}

/// Where a running stage writes.
struct StageDirs {
    /// `<workdir>/.tmp`.
    scratch: PathBuf,
    /// `<workdir>/.tmp/<stage>`: the output until it is complete.
    tmp: PathBuf,
    /// `<workdir>/.checkpoints/<stage>`.
    checkpoints: PathBuf,
}

/// What every rank runs the stages with.
struct Runner<'a> {
    wf: &'a Workflow,
    selection: &'a Selection,
    comm: &'a dyn Comm,
    progress: &'a Progress,
    threads: usize,
}

impl Runner<'_> {
    fn run_stages(
        &self,
        stages: &[&Stage],
        mut root: Option<&mut Root<'_>>,
    ) -> Result<RunSummary, Error> {
        let scratch = self.wf.workdir.join(".tmp");
        let mut summary = RunSummary {
            run_id: root.as_ref().map_or(0, |r| r.run_id),
            stages: Vec::new(),
        };
        for stage in stages {
            let outcome = self.run_stage(stage, &scratch, root.as_deref_mut())?;
            summary.stages.push(outcome);
        }
        self.comm.barrier();
        if self.comm.rank() == 0 {
            let _ = std::fs::remove_dir(&scratch);
        }
        Ok(summary)
    }

    /// Decides (rank 0) and, where it must, runs one stage on every rank
    /// that takes part.
    fn run_stage(
        &self,
        stage: &Stage,
        scratch: &Path,
        mut root: Option<&mut Root<'_>>,
    ) -> Result<StageOutcome, Error> {
        let (comm, rank, ranks) = (self.comm, self.comm.rank(), self.comm.size());
        // Rank 0 decides; everyone follows. An error deciding is broadcast as
        // a verdict too, so no rank waits for a stage that will not come.
        let mut decision = None;
        let verdict = match root.as_deref_mut() {
            Some(root) => {
                let forced = self.selection.force.iter().any(|f| f == &stage.name);
                match root.decide(stage, forced, ranks) {
                    Ok(d) => {
                        let v = if d.run { Verdict::Run } else { Verdict::Skip };
                        decision = Some(d);
                        v.broadcast(comm)
                    }
                    Err(e) => {
                        Verdict::Abort.broadcast(comm);
                        return Err(e);
                    }
                }
            }
            None => Verdict::Skip.broadcast(comm),
        };
        match verdict {
            Verdict::Skip => {
                return Ok(StageOutcome {
                    stage: stage.name.clone(),
                    ran: false,
                    seconds: 0.0,
                })
            }
            Verdict::Abort => {
                return Err(Error::Stage {
                    stage: stage.name.clone(),
                    message: "rank 0 could not plan this stage".into(),
                })
            }
            Verdict::Run => {}
        }
        let dirs = StageDirs {
            scratch: scratch.to_path_buf(),
            tmp: scratch.join(&stage.name),
            checkpoints: self.wf.workdir.join(".checkpoints").join(&stage.name),
        };
        // Whether to continue from a checkpoint: rank 0 decides, everyone follows.
        let mut started = Started {
            stage_run: 0,
            resume: false,
        };
        if let (Some(root), Some(d)) = (root.as_deref_mut(), &decision) {
            started = root.start(stage, d, &dirs, self.selection.resume, ranks)?;
        }
        let mut resume = [started.resume as u8];
        comm.broadcast_bytes(&mut resume, 0);
        let clock = Instant::now();
        let metrics = MetricsSink::default();
        let result = if stage.kind.props.collective || rank == 0 {
            let ctx = StageContext {
                name: &stage.name,
                config: &stage.config,
                out: &dirs.tmp,
                seed: self.wf.seed,
                comm,
                threads: self.threads,
                progress: self.progress,
                metrics: &metrics,
                checkpoint_dir: &dirs.checkpoints,
                resume: resume[0] == 1,
            };
            (stage.kind.run)(&ctx)
        } else {
            Ok(())
        };
        let seconds = clock.elapsed().as_secs_f64();
        if let Err(e) = result {
            if let Some(root) = root.as_deref_mut() {
                root.failed(stage, &started, seconds, &e);
            }
            return Err(Error::StageFailed {
                stage: stage.name.clone(),
                rank,
                source: Box::new(e),
            });
        }
        comm.barrier();
        if let (Some(root), Some(d)) = (root, decision) {
            root.finish(stage, d, &dirs, &started, seconds, &metrics)?;
        }
        Ok(StageOutcome {
            stage: stage.name.clone(),
            ran: true,
            seconds,
        })
    }
}

/// Readies a stage's checkpoint directory and says whether to resume from it:
/// only with `--resume` and a checkpoint left by a run of the same
/// fingerprint (configuration, inputs, upstream outputs). Otherwise any old
/// checkpoint is cleared and the fingerprint recorded for the run starting.
fn prepare_checkpoints(
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
fn replace_dir(new: &Path, dest: &Path, old: &Path) -> Result<(), Error> {
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
