//! The text of Slurm batch scripts: the whole workflow as one job, or one
//! stage as a job of its own, with their `#SBATCH` lines and the `srun`
//! command that restarts this program.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::engine::plan::Selection;
use crate::workflow::resources::time_seconds;
use crate::workflow::{Stage, Workflow};
use crate::Error;

/// What to ask Slurm for.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitOptions {
    /// Nodes.
    #[arg(long, default_value = "1")]
    pub nodes: NonZeroUsize,
    /// MPI ranks per node (one per GPU, or one per core group).
    #[arg(long, default_value = "1")]
    pub ranks_per_node: NonZeroUsize,
    /// CPU cores per rank (sets libtorch's threads through PIPELINE_THREADS).
    #[arg(long)]
    pub cpus_per_rank: Option<NonZeroUsize>,
    /// GPUs per rank.
    #[arg(long)]
    pub gpus_per_rank: Option<NonZeroUsize>,
    /// Wall-time limit, in Slurm's format (e.g. 02:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Partition (queue).
    #[arg(long)]
    pub partition: Option<String>,
    /// Where to write the script (default: <workdir>/.pipeline/<name>.sbatch;
    /// with --per-stage, a directory for one script per stage).
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// The command that starts the ranks in the job: `srun --mpi=pmix`
    /// connects them through PMIx (Open MPI and MPICH builds; Debian's Slurm
    /// defaults to `--mpi=none`, which would start N unconnected copies), or
    /// e.g. `mpirun`.
    #[arg(long, default_value = "srun --mpi=pmix")]
    pub launcher: String,
    /// One job per stage that is not up to date, each with the stage's
    /// `resources:` (ranks, threads, GPUs, memory, time, partition; the
    /// options above are the defaults), started when the jobs of the stages
    /// it needs succeed; a last job ends the run record and writes its report.
    #[arg(long)]
    pub per_stage: bool,
    /// Seconds before a job's time limit at which Slurm warns it (USR1):
    /// training stages checkpoint and the job is requeued to resume
    /// (default: a tenth of the limit, 30 s to 10 min, less for limits
    /// of a few minutes; Slurm may warn up to 30 s earlier still).
    #[arg(long, value_name = "SECONDS")]
    pub warn_before: Option<u64>,
    /// Write the scripts and print them; do not call sbatch.
    #[arg(long)]
    pub dry_run: bool,
}

/// Quotes a word for a POSIX shell.
pub(super) fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub(super) fn check_word(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Submit(format!("{what} `{v}` must be one word")));
    }
    Ok(())
}

/// How often slurmctld checks time limits (its `PERIODIC_TIMEOUT`).
pub(super) const SLURM_CHECK_SECONDS: u64 = 30;

/// One batch job: its `#SBATCH` options and the `pipeline` arguments it runs.
#[derive(Debug, Clone, Default)]
pub(super) struct Job {
    pub(super) directives: Vec<(String, String)>,
    /// Arguments after the binary (`run WORKFLOW --set ...`).
    pub(super) args: Vec<String>,
    /// Started through the launcher on every rank (else run directly).
    pub(super) launched: bool,
    /// Requeue and resume when the time-limit warning made it checkpoint.
    pub(super) requeue: bool,
}

impl Job {
    pub(super) fn directive(&mut self, k: &str, v: impl ToString) {
        self.directives.push((k.to_string(), v.to_string()));
    }

    /// The time limit and the warning signal before it.
    pub(super) fn time(&mut self, time: &str, warn_before: Option<u64>) -> Result<(), Error> {
        check_word("--time", time)?;
        let secs = time_seconds(time).map_err(|e| Error::Submit(format!("--time: {e}")))?;
        self.directive("time", time);
        // Slurm checks limits every 30 s and sends the warning when the
        // next check could be too late: up to 30 s early. A lead within 30 s
        // of the limit would warn a (requeued) job as soon as it starts.
        let lead = match warn_before {
            Some(w) if w + SLURM_CHECK_SECONDS < secs => w,
            Some(w) => {
                return Err(Error::Submit(format!(
                    "--warn-before {w}: Slurm checks time limits every {SLURM_CHECK_SECONDS} s, so a warning {w} s before a limit of {secs} s would come as the job starts; use less than {}",
                    secs.saturating_sub(SLURM_CHECK_SECONDS)
                )))
            }
            None => (secs / 10)
                .clamp(30, 600)
                .min((secs / 2).saturating_sub(SLURM_CHECK_SECONDS).max(10)),
        };
        self.directive("signal", format!("B:USR1@{lead}"));
        self.directive("requeue", "");
        // The requeued job appends to the log its first part wrote.
        self.directive("open-mode", "append");
        self.requeue = true;
        Ok(())
    }

    /// The script text.
    pub(super) fn script(
        &self,
        launcher: &str,
        pipeline: &Path,
        cwd: &Path,
    ) -> Result<String, Error> {
        let mut s = String::from("#!/bin/bash\n");
        for (k, v) in &self.directives {
            if v.is_empty() {
                s.push_str(&format!("#SBATCH --{k}\n"));
            } else {
                s.push_str(&format!("#SBATCH --{k}={v}\n"));
            }
        }
        s.push_str("\nset -uo pipefail\n");
        s.push_str(&format!("cd {}\n", sh_quote(&cwd.to_string_lossy())));
        let mut cmd: Vec<String> = Vec::new();
        if self.launched {
            if launcher.trim().is_empty() || launcher.contains(['\n', ';', '&', '|']) {
                return Err(Error::Submit(format!(
                    "--launcher `{launcher}` must be a command and its options (e.g. `srun --mpi=pmix`)"
                )));
            }
            cmd.extend(launcher.split_whitespace().map(sh_quote));
        }
        cmd.push(sh_quote(&pipeline.to_string_lossy()));
        cmd.extend(self.args.iter().map(|a| sh_quote(a)));
        if !self.requeue {
            s.push_str(&format!("exec {}\n", cmd.join(" ")));
            return Ok(s);
        }
        s.push_str(&format!(
            r#"# A requeued job continues its training stages from their checkpoints.
# (A plain word, not an array: bash before 4.4 calls an empty array unbound under set -u.)
resume=""
if [[ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]]; then resume="--resume"; fi
{} $resume &
child=$!
# Slurm's warning before the time limit (--signal=B:USR1) reaches this shell:
# pass it on, so training checkpoints at its next step and exits {code}.
trap 'echo "pipeline: time limit near; asking the stage to checkpoint" >&2; kill -USR1 "$child" 2>/dev/null' USR1
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
if [[ $rc -eq {code} ]]; then
  echo "pipeline: checkpointed before the time limit; requeueing job $SLURM_JOB_ID to resume" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
if [[ $rc -eq 138 ]]; then
  # USR1 came before the ranks listened for it: resume from the last checkpoint.
  echo "pipeline: the warning came before the stage could checkpoint; requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit $rc
"#,
            cmd.join(" "),
            code = Error::PREEMPTED
        ));
        Ok(s)
    }
}

/// The options every job of a submission shares.
pub(super) fn common(
    job: &mut Job,
    wf: &Workflow,
    opts: &SubmitOptions,
    log: &str,
    time: Option<&str>,
    partition: Option<&str>,
) -> Result<(), Error> {
    if let Some(t) = time {
        job.time(t, opts.warn_before)?;
    }
    if let Some(a) = &opts.account {
        check_word("--account", a)?;
        job.directive("account", a);
    }
    if let Some(p) = partition {
        check_word("--partition", p)?;
        job.directive("partition", p);
    }
    let log = wf.workdir.join(".pipeline").join(log);
    job.directive("output", sh_quote(&log.to_string_lossy()));
    Ok(())
}

/// `pipeline run WORKFLOW --set ...` and the selection's options.
pub(super) fn run_args(wf: &Workflow, overrides: &[String]) -> Vec<String> {
    let mut args = vec!["run".to_string(), wf.file.to_string_lossy().into_owned()];
    for o in overrides {
        args.push("--set".into());
        args.push(o.clone());
    }
    args
}

pub(super) fn selection_args(selection: &Selection) -> Vec<String> {
    let mut args = Vec::new();
    for f in &selection.force {
        args.extend(["--force".to_string(), f.clone()]);
    }
    if let Some(u) = &selection.until {
        args.extend(["--until".to_string(), u.clone()]);
    }
    if let Some(o) = &selection.only {
        args.extend(["--only".to_string(), o.clone()]);
    }
    if selection.resume {
        args.push("--resume".into());
    }
    args
}

/// The single-allocation batch script: the whole workflow in one job.
/// `pipeline` is the binary to run, `cwd` the directory the job starts in,
/// `overrides` the `--set` values to pass on.
pub fn script(
    wf: &Workflow,
    opts: &SubmitOptions,
    selection: &Selection,
    pipeline: &Path,
    cwd: &Path,
    overrides: &[String],
) -> Result<String, Error> {
    check_word("workflow name", &wf.name)?;
    let mut job = Job {
        launched: true,
        ..Job::default()
    };
    job.directive("job-name", &wf.name);
    job.directive("nodes", opts.nodes);
    job.directive("ntasks-per-node", opts.ranks_per_node);
    if let Some(c) = opts.cpus_per_rank {
        job.directive("cpus-per-task", c);
    }
    if let Some(g) = opts.gpus_per_rank {
        job.directive("gpus-per-task", g);
    }
    common(
        &mut job,
        wf,
        opts,
        "slurm-%j.out",
        opts.time.as_deref(),
        opts.partition.as_deref(),
    )?;
    job.args = run_args(wf, overrides);
    job.args.extend(selection_args(selection));
    job.script(&opts.launcher, pipeline, cwd)
}

/// The job of one stage of a per-stage submission, recording into `run_id`.
pub(super) fn stage_job(
    wf: &Workflow,
    stage: &Stage,
    opts: &SubmitOptions,
    selection: &Selection,
    run_id: i64,
    after: &[String],
    overrides: &[String],
) -> Result<Job, Error> {
    let r = &stage.resources;
    let default_ranks = opts.nodes.get() * opts.ranks_per_node.get();
    let ranks = r.ranks(stage.kind, default_ranks);
    let mut job = Job {
        launched: true,
        ..Job::default()
    };
    job.directive("job-name", format!("{}.{}", wf.name, stage.name));
    if ranks == default_ranks && opts.nodes.get() > 1 {
        job.directive("nodes", opts.nodes);
        job.directive("ntasks-per-node", opts.ranks_per_node);
    } else {
        job.directive("ntasks", ranks);
    }
    // Without --cpus-per-rank, a stage taking every core leaves it to Slurm.
    let all = opts.cpus_per_rank.map(NonZeroUsize::get);
    if let Some(c) = r.threads_if_known(stage.kind, all) {
        job.directive("cpus-per-task", c);
    }
    if let Some(g) = r
        .gpus_per_rank
        .or(opts.gpus_per_rank.map(NonZeroUsize::get))
    {
        if g > 0 {
            job.directive("gpus-per-task", g);
        }
    }
    if let Some(m) = &r.memory {
        job.directive("mem", m);
    }
    if !after.is_empty() {
        job.directive("dependency", format!("afterok:{}", after.join(":")));
        // A failed stage cancels those that need it, instead of leaving them pending.
        job.directive("kill-on-invalid-dep", "yes");
    }
    common(
        &mut job,
        wf,
        opts,
        &format!("slurm-%j-{}.out", stage.name),
        r.time.as_deref().or(opts.time.as_deref()),
        r.partition.as_deref().or(opts.partition.as_deref()),
    )?;
    job.args = run_args(wf, overrides);
    job.args.extend(["--only".into(), stage.name.clone()]);
    if selection.force.contains(&stage.name) {
        job.args.extend(["--force".into(), stage.name.clone()]);
    }
    if selection.resume {
        job.args.push("--resume".into());
    }
    job.args.extend(["--join".into(), run_id.to_string()]);
    Ok(job)
}
