//! Deciding what runs, and running it, on one process or on every rank of an MPI job.
//!
//! Rank 0 owns the workdir lock and the run records. For each stage in
//! order it computes the stage's fingerprint and compares it with what the
//! current output was made from ([`crate::engine::plan::decide`]); it broadcasts the run/skip
//! decision, so every rank follows the same plan. A stage that runs writes
//! into `<workdir>/.tmp/<stage>`; rank 0 renames it into place only when every
//! rank has finished it, then hashes the output: a later stage whose inputs
//! come out byte-identical is not rerun. A crash or `kill -9` leaves the
//! previous output (or none) under the stage's name, so the next run redoes
//! exactly the unfinished stages.

use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use sciflow_train::dist::Single;
use sciflow_train::{Comm, DeviceSpec};

pub use crate::engine::lock::{lock_workdir, WorkdirLock};
use crate::engine::plan::Selection;
use crate::engine::schedule::Schedule;
use crate::stages::kind::{MetricsSink, StageContext};
use crate::stages::progress::Progress;
use crate::workflow::{Stage, Workflow};
use crate::Error;

use super::root::{lock, Root, StageDirs, Started};

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

/// How a run goes beyond which stages it selects.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cores a stage that takes them all gets on each rank (`-j`; by default
    /// this rank's share of the node).
    pub jobs: usize,
    /// After a stage fails, finish every stage that does not depend on it,
    /// then fail listing the failures (else stop starting stages at once).
    pub keep_going: bool,
    /// The command line, for the records.
    pub argv: String,
    /// Record into this run, begun by `pipeline submit --per-stage`, instead
    /// of beginning one: the workdir is shared with the submission's other
    /// jobs, and only the selected stages are locked.
    pub join: Option<i64>,
}

/// Runs the selected stages of `wf` that are not up to date. All ranks of
/// `comm` must call this with the same arguments.
///
/// Rank 0 runs a stage as soon as the stages it needs have finished and its
/// threads fit in `opts.jobs` cores beside those running: rank-0 stages on
/// threads of their own, collective stages on the main thread with every
/// rank, one at a time and in the same order on all ranks (lock-step).
pub fn run(
    wf: &Workflow,
    selection: &Selection,
    comm: &dyn Comm,
    progress: &Progress,
    opts: &RunOptions,
) -> Result<RunSummary, Error> {
    // The records say the workflow's mode, so the process must run in it:
    // `pipeline run` pinned it already (a no-op here); a library caller
    // gets it pinned now, or an error if its process chose otherwise.
    wf.pin_kernels()?;
    let stages = selection.stages(wf)?;
    check_devices(&stages)?;
    // Rank 0 alone touches the locks and the records.
    let root = if comm.rank() == 0 {
        Some(Mutex::new(Root::begin(
            wf,
            comm.size(),
            (&opts.argv, opts.join),
            &stages,
        )?))
    } else {
        None
    };
    let runner = Runner {
        wf,
        selection,
        comm,
        progress,
        opts,
        scratch: wf.workdir.join(".tmp"),
    };
    let result = match &root {
        Some(root) => runner.lead(&stages, root),
        None => runner.follow(&stages),
    };
    if let Some(root) = root {
        let root = root.into_inner().unwrap_or_else(|p| p.into_inner());
        root.end(result.as_ref().err())?;
    }
    result
}

/// Resolves every selected stage's `device` on this rank before anything
/// runs, so a GPU asked for where there is none stops the run at once,
/// naming the stage, instead of after the stages before it.
pub(crate) fn check_devices(stages: &[&Stage]) -> Result<(), Error> {
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

/// The end of the collective stages, as rank 0 broadcasts it.
const END: u64 = u64::MAX;

/// What every rank runs the stages with.
struct Runner<'a> {
    wf: &'a Workflow,
    selection: &'a Selection,
    comm: &'a dyn Comm,
    progress: &'a Progress,
    opts: &'a RunOptions,
    scratch: PathBuf,
}

impl Runner<'_> {
    /// The threads a stage runs with on each rank.
    fn threads(&self, stage: &Stage) -> usize {
        let jobs = self.opts.jobs.max(1);
        stage.resources.threads(stage.kind, jobs).min(jobs)
    }

    /// Rank 0: schedules the stages (on a thread of its own) and runs the
    /// collective ones here, on the thread that owns the communicator.
    fn lead(&self, stages: &[&Stage], root: &Mutex<Root<'_>>) -> Result<RunSummary, Error> {
        let run_id = lock(root).run_id;
        let (to_main, collectives) = mpsc::channel::<usize>();
        let (done, finished) = mpsc::channel::<Finished>();
        let result = std::thread::scope(|s| {
            let scheduler = {
                let done = done.clone();
                s.spawn(move || self.schedule(s, stages, root, to_main, done, finished))
            };
            let mut lockstep = true;
            for i in collectives {
                self.comm.broadcast_bytes(&mut (i as u64).to_le_bytes(), 0);
                let result = self.run_stage(stages[i], Some(root), self.comm);
                // Ranks that may be inside the failed stage's collectives
                // cannot take part in another broadcast.
                lockstep &= result.is_ok() || self.comm.size() == 1;
                let _ = done.send(Finished { index: i, result });
            }
            if lockstep {
                self.comm.broadcast_bytes(&mut END.to_le_bytes(), 0);
            }
            scheduler
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        if self.comm.size() > 1 {
            self.comm.barrier();
        }
        let _ = std::fs::remove_dir(&self.scratch);
        Ok(RunSummary {
            run_id,
            stages: result,
        })
    }

    /// Other ranks: run the collective stages rank 0 names, until it says END.
    fn follow(&self, stages: &[&Stage]) -> Result<RunSummary, Error> {
        let mut outcomes = Vec::new();
        loop {
            let mut word = [0u8; 8];
            self.comm.broadcast_bytes(&mut word, 0);
            let i = u64::from_le_bytes(word);
            if i == END {
                break;
            }
            let stage = stages.get(i as usize).ok_or_else(|| Error::Stage {
                stage: String::new(),
                message: format!("rank 0 named stage {i} of {}", stages.len()),
            })?;
            outcomes.push(self.run_stage(stage, None, self.comm)?);
        }
        self.comm.barrier();
        Ok(RunSummary {
            run_id: 0,
            stages: outcomes,
        })
    }

    /// Rank 0's scheduler: starts each stage once what it needs is done and
    /// its threads fit, rank-0 stages on threads of their own and collective
    /// ones through `to_main`; returns the outcomes in workflow order.
    fn schedule<'s>(
        &'s self,
        scope: &'s std::thread::Scope<'s, '_>,
        stages: &'s [&'s Stage],
        root: &'s Mutex<Root<'_>>,
        to_main: mpsc::Sender<usize>,
        done: mpsc::Sender<Finished>,
        finished: mpsc::Receiver<Finished>,
    ) -> Result<Vec<StageOutcome>, Error> {
        let mut plan = Schedule::new(stages);
        let jobs = self.opts.jobs.max(1);
        let mut busy = 0usize;
        let mut collective_running = false;
        let mut outcomes: Vec<Option<StageOutcome>> = vec![None; stages.len()];
        let mut failures: Vec<(String, Error)> = Vec::new();
        let mut stop = false;
        loop {
            // Start every stage that is ready and fits (none once stopping).
            loop {
                let fits = |i: usize| {
                    let s = stages[i];
                    busy + self.threads(s) <= jobs
                        && !(s.kind.props.collective && collective_running)
                };
                let Some(i) = (!stop).then(|| plan.next_ready(fits)).flatten() else {
                    break;
                };
                busy += self.threads(stages[i]);
                if stages[i].kind.props.collective {
                    collective_running = true;
                    let _ = to_main.send(i);
                } else {
                    let done = done.clone();
                    scope.spawn(move || {
                        let result = self.run_stage(stages[i], Some(root), &Single);
                        let _ = done.send(Finished { index: i, result });
                    });
                }
            }
            if plan.running == 0 {
                break;
            }
            let Ok(Finished { index, result }) = finished.recv() else {
                break;
            };
            busy -= self.threads(stages[index]);
            if stages[index].kind.props.collective {
                collective_running = false;
            }
            match result {
                Ok(outcome) => {
                    plan.succeeded(index);
                    outcomes[index] = Some(outcome);
                }
                Err(e) => {
                    plan.failed(index);
                    let lost_lockstep = stages[index].kind.props.collective && self.comm.size() > 1;
                    // A stage stopped at the time limit: so is the run.
                    stop |= !self.opts.keep_going || lost_lockstep || e.preempted();
                    failures.push((stages[index].name.clone(), e));
                }
            }
        }
        drop(to_main);
        if failures.is_empty() {
            return Ok(outcomes.into_iter().flatten().collect());
        }
        if !self.opts.keep_going || failures.len() == 1 && plan.blocked().is_empty() {
            return Err(failures.swap_remove(0).1);
        }
        Err(Error::StagesFailed {
            failed: failures
                .into_iter()
                .map(|(stage, e)| (stage, e.to_string()))
                .collect(),
            not_run: plan.blocked(),
        })
    }

    /// Decides (rank 0) and, where it must, runs one stage on every rank of
    /// `comm` (a collective stage: the job's; a rank-0 stage: [`Single`]).
    fn run_stage(
        &self,
        stage: &Stage,
        root: Option<&Mutex<Root<'_>>>,
        comm: &dyn Comm,
    ) -> Result<StageOutcome, Error> {
        let (rank, ranks) = (comm.rank(), comm.size());
        // Rank 0 decides; everyone follows. An error deciding is broadcast as
        // a verdict too, so no rank waits for a stage that will not come.
        let mut decision = None;
        let verdict = match root {
            Some(root) => {
                let forced = self.selection.force.iter().any(|f| f == &stage.name);
                let decided = lock(root).decide(stage, forced, ranks);
                match decided {
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
            tmp: self.scratch.join(&stage.name),
            old: self.scratch.join(format!("{}.old", stage.name)),
            checkpoints: self.wf.workdir.join(".checkpoints").join(&stage.name),
        };
        // Whether to continue from a checkpoint: rank 0 decides, everyone follows.
        let mut started = Started {
            stage_run: 0,
            resume: false,
        };
        if let (Some(root), Some(d)) = (root, &decision) {
            started = lock(root).start(stage, d, &dirs, self.selection.resume, ranks)?;
        }
        let mut resume = [started.resume as u8];
        comm.broadcast_bytes(&mut resume, 0);
        let threads = self.threads(stage);
        // Sizes libtorch's pool for this thread's parallel regions.
        sciflow_train::set_threads(threads);
        let clock = Instant::now();
        let metrics = MetricsSink::default();
        let ctx = StageContext {
            name: &stage.name,
            config: &stage.config,
            out: &dirs.tmp,
            seed: self.wf.seed,
            comm,
            threads,
            progress: self.progress,
            metrics: &metrics,
            checkpoint_dir: &dirs.checkpoints,
            resume: resume[0] == 1,
        };
        // A panic is a bug, but it must end as a failed stage: unwinding past
        // the executor would leave the scheduler waiting for this stage's
        // result, and the run hanging instead of exiting.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (stage.kind.run)(&ctx)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Error::Stage {
                        stage: stage.name.clone(),
                        message: format!("panicked (a bug; please report it): {what}"),
                    })
                });
        let seconds = clock.elapsed().as_secs_f64();
        if let Err(e) = result {
            if let Some(root) = root {
                lock(root).failed(stage, &started, seconds, &e);
            }
            return Err(Error::StageFailed {
                stage: stage.name.clone(),
                rank,
                source: Box::new(e),
            });
        }
        comm.barrier();
        if let (Some(root), Some(d)) = (root, decision) {
            lock(root).finish(stage, d, &dirs, &started, seconds, &metrics)?;
        }
        Ok(StageOutcome {
            stage: stage.name.clone(),
            ran: true,
            seconds,
        })
    }
}

/// A stage's result, as the thread that ran it reports it.
struct Finished {
    index: usize,
    result: Result<StageOutcome, Error>,
}
