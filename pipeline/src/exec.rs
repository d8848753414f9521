//! Deciding what runs, and running it, on one process or on every rank of an MPI job.
//!
//! Rank 0 owns the workdir lock and the run records. For each stage in
//! order it computes the stage's fingerprint and compares it with what the
//! current output was made from ([`decide`]); it broadcasts the run/skip
//! decision, so every rank follows the same plan. A stage that runs writes
//! into `<workdir>/.tmp/<stage>`; rank 0 renames it into place only when every
//! rank has finished it, then hashes the output: a later stage whose inputs
//! come out byte-identical is not rerun. A crash or `kill -9` leaves the
//! previous output (or none) under the stage's name, so the next run redoes
//! exactly the unfinished stages.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sciflow_train::Comm;

use crate::fingerprint::{config_diff, fingerprint, hash_path};
use crate::progress::Progress;
use crate::records::{Records, StageState};
use crate::stage::{MetricsSink, StageContext};
use crate::workflow::{Stage, Workflow};
use crate::Error;

/// Which stages to consider and which to force.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Run these even if up to date.
    pub force: Vec<String>,
    /// Stop after this stage (it and what it depends on).
    pub until: Option<String>,
    /// Only this stage (its upstream outputs must exist).
    pub only: Option<String>,
    /// Continue stages from their checkpoints where the fingerprint matches.
    pub resume: bool,
}

impl Selection {
    /// The stages selected, in order; an unknown name is an error.
    pub fn stages<'a>(&self, wf: &'a Workflow) -> Result<Vec<&'a Stage>, Error> {
        let known = |n: &str| {
            if wf.stages.iter().any(|s| s.name == n) {
                Ok(())
            } else {
                Err(Error::Stage {
                    stage: n.to_string(),
                    message: format!(
                        "no such stage; the workflow has: {}",
                        wf.stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        };
        for f in &self.force {
            known(f)?;
        }
        if let Some(only) = &self.only {
            known(only)?;
            return Ok(wf.stages.iter().filter(|s| &s.name == only).collect());
        }
        if let Some(until) = &self.until {
            known(until)?;
            let mut keep: HashSet<&str> = HashSet::from([until.as_str()]);
            for s in wf.stages.iter().rev() {
                if keep.contains(s.name.as_str()) {
                    keep.extend(s.needs.iter().map(|n| n.as_str()));
                }
            }
            return Ok(wf
                .stages
                .iter()
                .filter(|s| keep.contains(s.name.as_str()))
                .collect());
        }
        Ok(wf.stages.iter().collect())
    }
}

/// What to do with a stage, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Run it (else it is up to date).
    pub run: bool,
    /// Human-readable reasons.
    pub reasons: Vec<String>,
    /// The fingerprint it has now (empty when it depends on a stage that will run).
    pub fingerprint: String,
    /// External inputs and their hashes.
    pub inputs: Vec<(String, String)>,
    /// Upstream stages and their output hashes.
    pub upstream: Vec<(String, String)>,
}

fn kind_id(stage: &Stage) -> String {
    format!("{}@{}", stage.kind.name, stage.kind.props.version)
}

/// Decides whether `stage` must run. `pending` holds stages that will run
/// before it in this run (their outputs are not known yet).
pub fn decide(
    wf: &Workflow,
    stage: &Stage,
    records: &Records,
    forced: bool,
    pending: &HashSet<String>,
) -> Result<Decision, Error> {
    let mut inputs = Vec::new();
    for p in (stage.kind.props.inputs)(&stage.config, &wf.workdir) {
        if !p.exists() {
            return Err(Error::Stage {
                stage: stage.name.clone(),
                message: format!("input {} does not exist", p.display()),
            });
        }
        let (h, _) = hash_path(records, &p)?;
        inputs.push((p.to_string_lossy().into_owned(), h));
    }
    let mut reasons = Vec::new();
    let mut upstream = Vec::new();
    for dep in &stage.needs {
        if pending.contains(dep) {
            reasons.push(format!("upstream `{dep}` runs first"));
            continue;
        }
        match records.stage_state(dep)? {
            Some(s) => upstream.push((dep.clone(), s.output_hash)),
            None => {
                return Err(Error::Stage {
                    stage: stage.name.clone(),
                    message: format!(
                        "upstream stage `{dep}` has no output yet; run it first (drop --only)"
                    ),
                })
            }
        }
    }
    let kind = kind_id(stage);
    let fp = if reasons.is_empty() {
        fingerprint(&kind, &stage.config, &inputs, &upstream)
    } else {
        String::new()
    };
    let decision = |run: bool, reasons: Vec<String>| Decision {
        run,
        reasons,
        fingerprint: fp.clone(),
        inputs: inputs.clone(),
        upstream: upstream.clone(),
    };
    if forced {
        reasons.insert(0, "forced".into());
    }
    let out = wf.stage_dir(&stage.name);
    let Some(old) = records.stage_state(&stage.name)? else {
        reasons.insert(0, "never run".into());
        return Ok(decision(true, reasons));
    };
    if !out.exists() {
        reasons.insert(0, "output missing".into());
        return Ok(decision(true, reasons));
    }
    if old.kind != kind {
        reasons.push(format!("stage kind changed: {} -> {kind}", old.kind));
    }
    let mut diff = Vec::new();
    config_diff(
        &old.config,
        &stage.config,
        &format!("stages.{}.with", stage.name),
        &mut diff,
    );
    reasons.extend(diff.into_iter().map(|d| format!("config {d}")));
    let old_inputs: HashMap<&str, &str> = old
        .inputs
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    for (p, h) in &inputs {
        match old_inputs.get(p.as_str()) {
            Some(oh) if oh == h => {}
            Some(_) => reasons.push(format!("input changed: {p}")),
            None => reasons.push(format!("new input: {p}")),
        }
    }
    let old_up: HashMap<&str, &str> = old
        .upstream
        .iter()
        .map(|(p, h)| (p.as_str(), h.as_str()))
        .collect();
    for (dep, h) in &upstream {
        if old_up.get(dep.as_str()) != Some(&h.as_str()) {
            reasons.push(format!("upstream `{dep}` output changed"));
        }
    }
    let (now_hash, _) = hash_path(records, &out)?;
    if now_hash != old.output_hash {
        reasons.push("output was modified since it was written".into());
    }
    if reasons.is_empty() && fp != old.fingerprint {
        // Parts of the fingerprint that no rule above names (e.g. input order).
        reasons.push("fingerprint changed".into());
    }
    let run = !reasons.is_empty();
    Ok(decision(run, reasons))
}

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

/// What `pipeline plan` shows for one stage.
#[derive(Debug, Clone)]
pub struct PlanLine {
    /// The stage.
    pub stage: String,
    /// The decision.
    pub decision: Decision,
}

/// Decides every selected stage without running anything (rank 0 view).
pub fn plan(wf: &Workflow, selection: &Selection) -> Result<Vec<PlanLine>, Error> {
    let mut records = Records::open(&wf.workdir)?;
    let stages = selection.stages(wf)?;
    // One read transaction for all the lookups, not one lock per query.
    records.batch(|records| {
        let mut pending: HashSet<String> = HashSet::new();
        let mut lines = Vec::with_capacity(stages.len());
        for stage in stages {
            let forced = selection.force.iter().any(|f| f == &stage.name);
            let d = decide(wf, stage, records, forced, &pending)?;
            if d.run {
                pending.insert(stage.name.clone());
            }
            lines.push(PlanLine {
                stage: stage.name.clone(),
                decision: d,
            });
        }
        Ok(lines)
    })
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
