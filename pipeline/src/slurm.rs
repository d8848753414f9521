//! `pipeline submit`: Slurm batch scripts that run a workflow with `srun
//! --mpi=pmix` (or another launcher) — the whole workflow in one
//! allocation, or (`--per-stage`) each stage that is not up to date as its
//! own job, with its own resources, chained with `afterok` dependencies.
//!
//! Every job that has a time limit asks Slurm for a warning signal
//! (`--signal=B:USR1@<lead>`); the script passes it on to the ranks, a
//! training stage writes a checkpoint at its next step and exits with
//! [`crate::Error::PREEMPTED`], and the script requeues the job, which
//! resumes from the checkpoint (`--resume`).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::plan::{self, Selection};
use crate::records::Records;
use crate::resources::time_seconds;
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
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn check_word(what: &str, v: &str) -> Result<(), Error> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Submit(format!("{what} `{v}` must be one word")));
    }
    Ok(())
}

/// How often slurmctld checks time limits (its `PERIODIC_TIMEOUT`).
const SLURM_CHECK_SECONDS: u64 = 30;

/// One batch job: its `#SBATCH` options and the `pipeline` arguments it runs.
#[derive(Debug, Clone, Default)]
struct Job {
    directives: Vec<(String, String)>,
    /// Arguments after the binary (`run WORKFLOW --set ...`).
    args: Vec<String>,
    /// Started through the launcher on every rank (else run directly).
    launched: bool,
    /// Requeue and resume when the time-limit warning made it checkpoint.
    requeue: bool,
}

impl Job {
    fn directive(&mut self, k: &str, v: impl ToString) {
        self.directives.push((k.to_string(), v.to_string()));
    }

    /// The time limit and the warning signal before it.
    fn time(&mut self, time: &str, warn_before: Option<u64>) -> Result<(), Error> {
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
    fn script(&self, launcher: &str, pipeline: &Path, cwd: &Path) -> Result<String, Error> {
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
fn common(
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
fn run_args(wf: &Workflow, overrides: &[String]) -> Vec<String> {
    let mut args = vec!["run".to_string(), wf.file.to_string_lossy().into_owned()];
    for o in overrides {
        args.push("--set".into());
        args.push(o.clone());
    }
    args
}

fn selection_args(selection: &Selection) -> Vec<String> {
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
fn stage_job(
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

/// What `pipeline submit` wrote and what sbatch said.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// Each script, its text, and the job id (none with `--dry-run`).
    pub jobs: Vec<(PathBuf, String, Option<String>)>,
    /// The run the jobs record into (`--per-stage`).
    pub run_id: Option<i64>,
    /// Stages left out as up to date (`--per-stage`).
    pub up_to_date: Vec<String>,
}

/// Writes the script(s) and, unless `dry_run`, submits them with sbatch.
pub fn submit(
    wf: &Workflow,
    opts: &SubmitOptions,
    selection: &Selection,
    overrides: &[String],
    argv: &str,
) -> Result<Submitted, Error> {
    let pipeline = crate::launcher::program()
        .map_err(|e| Error::Submit(format!("cannot find the pipeline binary: {e}")))?;
    let cwd =
        std::env::current_dir().map_err(|e| Error::Submit(format!("no current directory: {e}")))?;
    if !opts.per_stage {
        let text = script(wf, opts, selection, &pipeline, &cwd, overrides)?;
        let path = opts.script.clone().unwrap_or_else(|| {
            wf.workdir
                .join(".pipeline")
                .join(format!("{}.sbatch", wf.name))
        });
        let id = write_and_submit(&path, &text, opts.dry_run)?;
        return Ok(Submitted {
            jobs: vec![(path, text, id)],
            run_id: None,
            up_to_date: Vec::new(),
        });
    }
    check_word("workflow name", &wf.name)?;
    let lines = plan::plan(wf, selection)?;
    let (to_run, fresh): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| l.decision.run);
    let up_to_date: Vec<String> = fresh.into_iter().map(|l| l.stage).collect();
    if to_run.is_empty() {
        return Ok(Submitted {
            jobs: Vec::new(),
            run_id: None,
            up_to_date,
        });
    }
    // The submission is one run in the records; every job joins it.
    let run_id = if opts.dry_run {
        0
    } else {
        let records = Records::open(&wf.workdir)?;
        let ranks = to_run
            .iter()
            .filter_map(|l| wf.stages.iter().find(|s| s.name == l.stage))
            .map(|s| {
                s.resources
                    .ranks(s.kind, opts.nodes.get() * opts.ranks_per_node.get())
            })
            .max()
            .unwrap_or(1);
        let id = records.begin_run(&wf.name, &wf.file.to_string_lossy(), ranks, argv)?;
        let resolved = serde_json::to_string_pretty(&wf.resolved()).expect("JSON serialises");
        records.set_resolved(id, &resolved)?;
        id
    };
    let dir = opts.script.clone().unwrap_or_else(|| {
        wf.workdir
            .join(".pipeline")
            .join(format!("submit-{run_id}"))
    });
    let mut jobs = Vec::new();
    let mut ids: std::collections::HashMap<String, String> = Default::default();
    for line in &to_run {
        let stage = wf
            .stages
            .iter()
            .find(|s| s.name == line.stage)
            .expect("planned stages are the workflow's");
        let after: Vec<String> = stage
            .needs
            .iter()
            .filter_map(|n| ids.get(n).cloned())
            .collect();
        let job = stage_job(wf, stage, opts, selection, run_id, &after, overrides)?;
        let text = job.script(&opts.launcher, &pipeline, &cwd)?;
        let path = dir.join(format!("{}.sbatch", stage.name));
        match write_and_submit(&path, &text, opts.dry_run) {
            Ok(id) => {
                if let Some(id) = &id {
                    ids.insert(stage.name.clone(), id.clone());
                }
                jobs.push((path, text, id));
            }
            Err(e) => return Err(abandon(wf, run_id, opts.dry_run, &ids, e)),
        }
    }
    // The last job ends the run record (ok, or failed naming the stages
    // that did not complete) once every stage job has ended, however.
    let mut end = Job::default();
    end.directive("job-name", format!("{}.end", wf.name));
    end.directive("ntasks", 1);
    end.directive("cpus-per-task", 1);
    let all: Vec<String> = ids.values().cloned().collect();
    if !all.is_empty() {
        end.directive("dependency", format!("afterany:{}", all.join(":")));
    }
    common(
        &mut end,
        wf,
        opts,
        "slurm-%j-end.out",
        None,
        opts.partition.as_deref(),
    )?;
    end.args = vec![
        "end-run".into(),
        wf.file.to_string_lossy().into_owned(),
        "--run".into(),
        run_id.to_string(),
    ];
    for o in overrides {
        end.args.extend(["--set".into(), o.clone()]);
    }
    for l in &to_run {
        end.args.extend(["--stage".into(), l.stage.clone()]);
    }
    let text = end.script(&opts.launcher, &pipeline, &cwd)?;
    let path = dir.join("end.sbatch");
    match write_and_submit(&path, &text, opts.dry_run) {
        Ok(id) => jobs.push((path, text, id)),
        Err(e) => return Err(abandon(wf, run_id, opts.dry_run, &ids, e)),
    }
    Ok(Submitted {
        jobs,
        run_id: (!opts.dry_run).then_some(run_id),
        up_to_date,
    })
}

/// When a job was refused: cancels those already submitted and ends the
/// run record, so nothing runs under a run that no job would end.
fn abandon(
    wf: &Workflow,
    run_id: i64,
    dry_run: bool,
    ids: &std::collections::HashMap<String, String>,
    e: Error,
) -> Error {
    if !ids.is_empty() {
        let _ = std::process::Command::new("scancel")
            .args(ids.values())
            .output();
    }
    if let (false, Ok(records)) = (dry_run, Records::open(&wf.workdir)) {
        let _ = records.end_run(run_id, Some(&format!("submission failed: {e}")));
    }
    e
}

/// Writes `text` to `path` atomically and, unless `dry_run`, submits it;
/// returns the job id.
fn write_and_submit(path: &Path, text: &str, dry_run: bool) -> Result<Option<String>, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("failed to create", dir))?;
    }
    sciflow_ingest::files::write_atomic(path, text.as_bytes())?;
    if dry_run {
        return Ok(None);
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(path)
        .output()
        .map_err(|e| {
            Error::Submit(format!(
                "cannot run sbatch ({e}); the script is at {}; use --dry-run to only write it",
                path.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Submit(format!(
            "sbatch refused {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let answer = String::from_utf8_lossy(&out.stdout);
    let id = answer
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Submit(format!(
            "sbatch gave no job id for {}: `{}`",
            path.display(),
            answer.trim()
        )));
    }
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SubmitOptions {
        SubmitOptions {
            nodes: NonZeroUsize::new(16).unwrap(),
            ranks_per_node: NonZeroUsize::new(4).unwrap(),
            cpus_per_rank: NonZeroUsize::new(8),
            gpus_per_rank: NonZeroUsize::new(1),
            time: Some("02:00:00".into()),
            account: Some("bbx-delta".into()),
            partition: Some("gpuA100x4".into()),
            script: None,
            launcher: "srun --mpi=pmix".into(),
            per_stage: false,
            warn_before: None,
            dry_run: true,
        }
    }

    #[test]
    fn the_script_asks_for_the_resources_and_runs_the_same_workflow_with_srun() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../workflows/quickstart.yaml"
        ))
        .unwrap();
        let wf =
            crate::workflow::compile(&text, Path::new("workflows/quickstart.yaml"), &[]).unwrap();
        let s = script(
            &wf,
            &opts(),
            &Selection::default(),
            Path::new("/opt/sciflow/bin/pipeline"),
            Path::new("/home/u/my project"),
            &["params.epochs=30".into()],
        )
        .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        for want in [
            "#SBATCH --job-name=quickstart",
            "#SBATCH --nodes=16",
            "#SBATCH --ntasks-per-node=4",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --time=02:00:00",
            "#SBATCH --account=bbx-delta",
            "#SBATCH --partition=gpuA100x4",
            "#SBATCH --output=runs/quickstart/.pipeline/slurm-%j.out",
            "cd '/home/u/my project'",
            "srun --mpi=pmix /opt/sciflow/bin/pipeline run workflows/quickstart.yaml --set params.epochs=30 $resume &",
            "#SBATCH --signal=B:USR1@600",
        ] {
            assert!(lines.contains(&want), "missing `{want}` in\n{s}");
        }
        // Directives must precede the first command for sbatch to read them.
        let first_cmd = lines
            .iter()
            .position(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        assert!(lines[first_cmd..].iter().all(|l| !l.starts_with("#SBATCH")));

        let render = |o: &SubmitOptions| {
            script(
                &wf,
                o,
                &Selection::default(),
                Path::new("p"),
                Path::new("."),
                &[],
            )
        };
        let mut bad = opts();
        bad.time = Some("2 hours".into());
        assert!(render(&bad).is_err());
        let mut bad = opts();
        bad.launcher = "srun; rm -rf /".into();
        assert!(render(&bad).is_err());
        // A 1-minute limit is warned 10 s ahead (Slurm may warn 30 s earlier
        // still); a lead Slurm would honour at the job's start is refused.
        let mut short = opts();
        short.time = Some("1".into());
        let s = render(&short).unwrap();
        assert!(s.contains("#SBATCH --signal=B:USR1@10\n"), "{s}");
        short.warn_before = Some(40);
        let e = render(&short).unwrap_err().to_string();
        assert!(e.contains("use less than 30"), "{e}");
        let mut mpirun = opts();
        mpirun.launcher = "mpirun --bind-to none".into();
        let s = render(&mpirun).unwrap();
        assert!(s.contains("\nmpirun --bind-to none p run"), "{s}");
    }
}
