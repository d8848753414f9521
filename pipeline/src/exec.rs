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
use crate::registry::{MetricsSink, StageContext};
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
    format!("{}@{}", stage.kind.name, stage.kind.version)
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
    for p in (stage.kind.inputs)(&stage.config, &wf.workdir) {
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

/// How each stage went.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id in the records (rank 0; 0 elsewhere).
    pub run_id: i64,
    /// (stage, ran, seconds), in order.
    pub stages: Vec<(String, bool, f64)>,
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
    let rank = comm.rank();
    let stages = selection.stages(wf)?;
    // Rank 0 alone touches the lock and the records.
    let mut root: Option<(WorkdirLock, Records, i64)> = None;
    if rank == 0 {
        let lock = lock_workdir(&wf.workdir)?;
        let records = Records::open(&wf.workdir)?;
        records.mark_interrupted()?;
        let run_id = records.begin_run(&wf.name, &wf.file.to_string_lossy(), comm.size(), argv)?;
        let resolved = serde_json::to_string_pretty(&wf.resolved()).expect("JSON serialises");
        records.set_resolved(run_id, &resolved)?;
        root = Some((lock, records, run_id));
    }
    let result = run_stages(
        wf,
        &stages,
        selection,
        comm,
        progress,
        threads,
        root.as_mut().map(|r| (&mut r.1, r.2)),
    );
    if let Some((_, records, run_id)) = &root {
        let err = result.as_ref().err().map(|e| e.to_string());
        records.end_run(*run_id, err.as_deref())?;
        // The report is a view of the records: failing to write it loses
        // nothing the run made, so it warns rather than fails the run.
        match crate::report::write(records, &wf.workdir, Some(*run_id), None) {
            Ok(path) => tracing::info!("report: {}", path.display()),
            Err(e) => tracing::warn!("no report for run {run_id}: {e}"),
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn run_stages(
    wf: &Workflow,
    stages: &[&Stage],
    selection: &Selection,
    comm: &dyn Comm,
    progress: &Progress,
    threads: usize,
    mut root: Option<(&mut Records, i64)>,
) -> Result<RunSummary, Error> {
    let rank = comm.rank();
    let scratch = wf.workdir.join(".tmp");
    let mut summary = RunSummary {
        run_id: root.as_ref().map_or(0, |r| r.1),
        stages: Vec::new(),
    };
    // Stages are decided one at a time after their upstream stages have run,
    // so every upstream output hash is known: nothing is pending.
    let pending = HashSet::new();
    for stage in stages {
        // Rank 0 decides; everyone follows. An error deciding is broadcast as
        // a decision too, so no rank waits for a stage that will not come.
        let mut flag = [0u8; 1];
        let mut decision = None;
        if let Some((records, run_id)) = root.as_mut() {
            let forced = selection.force.iter().any(|f| f == &stage.name);
            match decide(wf, stage, records, forced, &pending) {
                Ok(d) => {
                    flag[0] = d.run as u8;
                    if !d.run {
                        records.stage_skipped(
                            *run_id,
                            &stage.name,
                            &kind_id(stage),
                            &d.fingerprint,
                            "up to date",
                            comm.size(),
                        )?;
                        tracing::info!("{}: up to date", stage.name);
                    }
                    decision = Some(d);
                }
                Err(e) => {
                    flag[0] = 2;
                    comm.broadcast_bytes(&mut flag, 0);
                    return Err(e);
                }
            }
        }
        comm.broadcast_bytes(&mut flag, 0);
        match flag[0] {
            0 => {
                summary.stages.push((stage.name.clone(), false, 0.0));
                continue;
            }
            2 => {
                return Err(Error::Stage {
                    stage: stage.name.clone(),
                    message: "rank 0 could not plan this stage".into(),
                })
            }
            _ => {}
        }
        let tmp = scratch.join(&stage.name);
        let out = wf.stage_dir(&stage.name);
        let ckpt_dir = wf.workdir.join(".checkpoints").join(&stage.name);
        let mut stage_run = 0;
        // Whether to continue from a checkpoint: rank 0 decides, everyone follows.
        let mut resume = [0u8; 1];
        if let (Some((records, run_id)), Some(d)) = (root.as_mut(), &decision) {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(Error::io("failed to clear", &tmp))?;
            }
            std::fs::create_dir_all(&tmp).map_err(Error::io("failed to create", &tmp))?;
            if stage.kind.checkpoints {
                resume[0] =
                    prepare_checkpoints(&ckpt_dir, &d.fingerprint, selection.resume, &stage.name)?
                        as u8;
            }
            let reason = d.reasons.join("; ");
            tracing::info!("{}: running ({}): {reason}", stage.name, stage.kind.name);
            stage_run = records.stage_started(
                *run_id,
                &stage.name,
                &kind_id(stage),
                &d.fingerprint,
                &reason,
                comm.size(),
            )?;
        }
        comm.broadcast_bytes(&mut resume, 0);
        let started = Instant::now();
        let metrics = MetricsSink::default();
        let result = if stage.kind.collective || rank == 0 {
            let ctx = StageContext {
                name: &stage.name,
                config: &stage.config,
                out: &tmp,
                seed: wf.seed,
                comm,
                threads,
                progress,
                metrics: &metrics,
                checkpoint_dir: &ckpt_dir,
                resume: resume[0] == 1,
            };
            (stage.kind.run)(&ctx)
        } else {
            Ok(())
        };
        let seconds = started.elapsed().as_secs_f64();
        if let Err(e) = result {
            if let Some((records, _)) = root.as_mut() {
                let _ = records.stage_finished(
                    stage_run,
                    &stage.name,
                    seconds,
                    Some(&e.to_string()),
                    &[],
                    &[],
                );
            }
            return Err(Error::StageFailed {
                stage: stage.name.clone(),
                rank,
                source: Box::new(e),
            });
        }
        comm.barrier();
        if let (Some((records, run_id)), Some(d)) = (root.as_mut(), decision) {
            replace_dir(&tmp, &out, &scratch.join(format!("{}.old", stage.name)))?;
            if stage.kind.checkpoints && ckpt_dir.exists() {
                std::fs::remove_dir_all(&ckpt_dir)
                    .map_err(Error::io("failed to remove", &ckpt_dir))?;
                // `.checkpoints` itself goes once no stage has one (fails, harmlessly, if some do).
                let _ = std::fs::remove_dir(wf.workdir.join(".checkpoints"));
            }
            let metrics = metrics.take();
            // Output hashes, the stage's new state and its record: one transaction.
            records.batch(|r| {
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
                        run_id: *run_id,
                    },
                )?;
                r.stage_finished(stage_run, &stage.name, seconds, None, &files, &metrics)
            })?;
            tracing::info!(
                "{}: done in {seconds:.1} s -> {}",
                stage.name,
                out.display()
            );
        }
        summary.stages.push((stage.name.clone(), true, seconds));
    }
    comm.barrier();
    if rank == 0 {
        let _ = std::fs::remove_dir(&scratch);
    }
    Ok(summary)
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

/// Paths named in a config that exist outside the workdir (the default input rule).
pub fn external_paths(config: &serde_json::Value, workdir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![config];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                let p = PathBuf::from(s);
                if !s.is_empty() && !p.starts_with(workdir) && p.exists() {
                    out.push(p);
                }
            }
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            serde_json::Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}
