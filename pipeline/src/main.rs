//! The `pipeline` command. Its verbs: `run` a workflow (alone or under
//! mpirun/srun), `plan` what would run and why, `validate` a file, draw its
//! `dag`, `submit` it to Slurm, read the run records (`history`, `show`,
//! `metrics`, `report`) and `list` the stage kinds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Planning a large workflow allocates millions of small nodes; mimalloc is
// markedly faster than glibc's malloc at that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sciflow_pipeline::plan::Selection;
use sciflow_pipeline::progress::Progress;
use sciflow_pipeline::records::{utc, Records};
use sciflow_pipeline::registry::REGISTRY;
use sciflow_pipeline::slurm::SubmitOptions;
use sciflow_pipeline::{dag, exec, plan, slurm, workflow, Error};

/// Scientific data to trained models: ingest, train and evaluate, as declared
/// in a YAML workflow, on a laptop or under MPI.
#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Scientific data to trained models: ingest, train and evaluate, as declared in a YAML workflow, on a laptop or under MPI.",
    after_help = "\
Examples:
  pipeline run workflows/quickstart.yaml
  pipeline run workflows/quickstart.yaml --set params.epochs=10
  pipeline plan workflows/quickstart.yaml          # what would run, and why
  mpirun -n 4 pipeline run workflows/quickstart.yaml
  pipeline run workflows/paper-figures.yaml -j 8    # independent stages side by side
  pipeline submit workflows/quickstart.yaml --nodes 16 --ranks-per-node 4 --gpus-per-rank 1
  pipeline submit --per-stage workflows/quickstart.yaml --time 2:00:00  # a job per stage
  pipeline history -w workflows/quickstart.yaml
  pipeline report -w workflows/quickstart.yaml     # HTML page of the latest run
  pipeline doctor workflows/quickstart.yaml        # what this machine gives a run

Exit status: 0 on success, 78 for an invalid workflow, 75 for training stopped
at a checkpoint before a time limit (rerun with --resume), 1 for a failed run.
Threads: each rank uses its share of the node's cores; PIPELINE_THREADS overrides."
)]
struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// The workflow file and its overrides.
#[derive(clap::Args, Clone)]
struct WorkflowArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Override a value: params.NAME=VALUE, seed=N, reproducible=MODE or
    /// workdir=PATH (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// How far results are reproducible (the workflow's `reproducible:`):
    /// `native`, the fastest kernels of this machine, the same bits on it;
    /// or `portable`, libtorch's CPU kernels pinned to AVX2 (ATen, oneDNN,
    /// MKL's compatible branch), the same bits on any x86-64 machine with
    /// AVX2 for the same seed, ranks and threads per rank.
    #[arg(long, value_name = "MODE", value_parser = workflow::Reproducible::NAMES)]
    reproducible: Option<String>,
}

impl WorkflowArgs {
    /// `--set` overrides, `--reproducible` among them.
    fn overrides(&self) -> Vec<String> {
        let mut all = self.set.clone();
        all.extend(
            self.reproducible
                .iter()
                .map(|m| format!("reproducible={m}")),
        );
        all
    }
}

/// Which stages a run or plan considers.
#[derive(clap::Args, Clone)]
struct SelectArgs {
    /// Run this stage even if it is up to date (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// Stop after this stage (it and the stages it depends on).
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    until: Option<String>,
    /// Only this stage; the stages it depends on must have run.
    #[arg(long, value_name = "STAGE")]
    only: Option<String>,
    /// Continue interrupted training stages from their last checkpoint
    /// (`<workdir>/.checkpoints/<stage>`, written at each epoch's end and every
    /// `checkpoint_every` steps) instead of starting them afresh. The stage's
    /// configuration and inputs must be unchanged, and the rank count the same.
    #[arg(long)]
    resume: bool,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        Selection {
            force: self.force.clone(),
            until: self.until.clone(),
            only: self.only.clone(),
            resume: self.resume,
        }
    }
}

/// How `run` uses the machine and meets failures.
#[derive(clap::Args, Clone)]
struct ExecArgs {
    /// Cores to keep busy (default: this rank's share of the node). Stages
    /// whose inputs are ready run side by side while their threads fit
    /// (`resources.threads_per_rank`; compute stages take all N, commands
    /// and figures one); collective stages run one at a time on every rank.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<std::num::NonZeroUsize>,
    /// After a stage fails, finish every stage that does not need it, then
    /// exit non-zero listing the failures.
    #[arg(short = 'k', long)]
    keep_going: bool,
    /// Record into run ID, begun by `pipeline submit --per-stage` (set by
    /// the jobs it submits).
    #[arg(long, value_name = "ID", hide = true)]
    join: Option<i64>,
}

/// Where the run records are: a workflow file (its workdir) or a workdir.
#[derive(clap::Args, Clone)]
struct RecordsArgs {
    /// A workflow file or a workdir (default: the current directory).
    #[arg(
        short = 'w',
        long = "workdir",
        value_name = "WORKFLOW|DIR",
        default_value = "."
    )]
    target: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the stages of a workflow that are not up to date.
    ///
    /// A stage starts once the stages it needs have finished, beside others
    /// while their threads fit in -j cores. Under mpirun/srun every rank
    /// runs the same plan: collective stages (ingest, training) are shared,
    /// one at a time, root-only stages (evaluation, figures) run on rank 0.
    /// Every run ends by writing its report, <workdir>/reports/run-<id>.html.
    Run {
        #[command(flatten)]
        wf: WorkflowArgs,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Show what `run` would do, and why.
    ///
    /// Reasons: never run, output missing or modified, a config key changed
    /// (old -> new value), an input file changed, an upstream output changed,
    /// forced.
    Plan {
        #[command(flatten)]
        wf: WorkflowArgs,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Check a workflow (keys, types, references, cycles) without running anything.
    Validate {
        #[command(flatten)]
        wf: WorkflowArgs,
    },
    /// Print the stage graph as Graphviz dot or Mermaid.
    Dag {
        #[command(flatten)]
        wf: WorkflowArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: dag::Format,
    },
    /// Write a Slurm batch script that runs the workflow with srun, and submit it.
    ///
    /// By default one job runs the whole workflow (`srun --mpi=pmix pipeline
    /// run ...`). With --per-stage, each stage that is not up to date is a
    /// job of its own, sized by its `resources:`, started once the jobs of
    /// the stages it needs succeed (`--dependency=afterok`); the jobs record
    /// into one run (`pipeline history`, `show`). Jobs with a time limit
    /// checkpoint at Slurm's warning and are requeued to resume.
    Submit {
        #[command(flatten)]
        wf: WorkflowArgs,
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        opts: SubmitOptions,
    },
    /// Ends a per-stage submission's run record once its jobs have ended
    /// (the submission's last job runs it).
    #[command(hide = true)]
    EndRun {
        #[command(flatten)]
        wf: WorkflowArgs,
        /// The run.
        #[arg(long)]
        run: i64,
        /// The stages it submitted (repeatable).
        #[arg(long = "stage", value_name = "STAGE")]
        stages: Vec<String>,
    },
    /// Remove what the workflow no longer makes: outputs of stages it no
    /// longer has, leftovers of interrupted runs, and the records and
    /// reports of all but the latest runs.
    ///
    /// Says what it removes and how much that frees; --dry-run only says.
    Clean {
        /// A workflow file (its workdir is cleaned against it).
        workflow: PathBuf,
        /// Override a value, as `run` takes it (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Keep the records and reports of this many latest runs.
        #[arg(long, default_value = "20")]
        keep_runs: usize,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the recent runs recorded in a workdir.
    History {
        /// A workflow file or a workdir, as `run` takes it (or `-w`).
        #[arg(value_name = "WORKFLOW|DIR", conflicts_with = "target")]
        at: Option<PathBuf>,
        #[command(flatten)]
        records: RecordsArgs,
        /// How many runs.
        #[arg(short, long, default_value = "20")]
        n: usize,
    },
    /// Show one run: every stage, run or skipped and why, times, artifacts.
    Show {
        /// The run id (default: the latest).
        run: Option<i64>,
        #[command(flatten)]
        records: RecordsArgs,
    },
    /// Print the metrics a stage recorded in its latest execution, as TSV.
    Metrics {
        /// The stage.
        stage: String,
        #[command(flatten)]
        records: RecordsArgs,
    },
    /// Write a run's report: one self-contained HTML page (stages, times,
    /// metrics, figures, provenance, the resolved workflow).
    ///
    /// `pipeline run` writes it at the end of every run, as
    /// <workdir>/reports/run-<id>.html; this rewrites it for any recorded run.
    Report {
        /// The run (default: the latest).
        #[arg(long)]
        run: Option<i64>,
        /// Where to write it (default: <workdir>/reports/run-<id>.html).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        records: RecordsArgs,
    },
    /// List the stage kinds a workflow can use, with their outputs and an example.
    List,
    /// Check this machine: the libtorch loaded (version, CUDA), the GPUs,
    /// the CPU kernels, the MPI library and launcher, HDF5 and cfitsio, the
    /// threads; given a workflow, also what it needs (its devices, its
    /// reproducibility mode). One line per item; exit 1 if anything needed
    /// is missing. What to run first on a new cluster.
    Doctor {
        /// A workflow whose needs to check too.
        workflow: Option<PathBuf>,
        /// Override a value, as `run` takes it (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

thread_local! {
    /// Command output, buffered: `pipeline plan` on 100,000 stages writes
    /// 200,000 lines, and stdout flushes at every newline.
    static OUT: std::cell::RefCell<std::io::BufWriter<std::io::Stdout>> =
        std::cell::RefCell::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()));
}

/// Ends quietly when stdout is a closed pipe (`pipeline show | head`).
fn out_result(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// `println!` into the buffered stdout.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        OUT.with(|o| out_result(writeln!(o.borrow_mut(), $($arg)*)));
    }};
}

fn flush_out() {
    use std::io::Write as _;
    OUT.with(|o| out_result(o.borrow_mut().flush()));
}

fn init_logging(verbose: u8, quiet: bool, rank: usize) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) if rank > 0 => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPELINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only on a terminal, and never under NO_COLOR: a Slurm output
    // file or a CI log should read as plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(cli.verbose, cli.quiet, 0);
    }
    let result = match cli.command {
        Command::List => {
            list();
            Ok(())
        }
        Command::Run { wf, select, exec } => {
            return run(&wf, &select.selection(), &exec, cli.verbose, cli.quiet)
        }
        Command::Doctor { workflow, set } => return doctor(workflow.as_deref(), &set),
        Command::Validate { wf } => validate(&wf),
        Command::Plan { wf, select } => plan(&wf, &select.selection()),
        Command::Dag { wf, format } => workflow::load(&wf.workflow, &wf.overrides())
            .map(|w| outln!("{}", dag::render(&w, format).trim_end())),
        Command::Submit { wf, select, opts } => submit(&wf, &select.selection(), &opts),
        Command::EndRun { wf, run, stages } => end_run(&wf, run, &stages),
        Command::Clean {
            workflow,
            set,
            keep_runs,
            dry_run,
        } => clean(&workflow, &set, keep_runs, dry_run),
        Command::History { at, records, n } => {
            let records = at.map_or(records, |target| RecordsArgs { target });
            history(&records, n)
        }
        Command::Show { run, records } => show(&records, run),
        Command::Metrics { stage, records } => metrics(&records, &stage),
        Command::Report {
            run,
            output,
            records,
        } => write_report(&records, run, output.as_deref()),
    };
    flush_out();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, None),
    }
}

fn list() {
    for kind in REGISTRY {
        outln!(
            "{}  ({})",
            kind.name,
            if kind.props.collective {
                "collective"
            } else {
                "rank 0"
            }
        );
        outln!("    {}", kind.summary);
        for o in kind.outputs {
            outln!("    output `{}`: {}", o.name, o.doc);
        }
        outln!("    example:");
        for line in kind.example.lines() {
            outln!("      {line}");
        }
        outln!();
    }
}

fn doctor(workflow: Option<&Path>, set: &[String]) -> ExitCode {
    let wf = match workflow.map(|w| workflow::load(w, set)).transpose() {
        Ok(wf) => wf,
        Err(e) => return report(&e, None),
    };
    let items = sciflow_pipeline::doctor::examine(wf.as_ref());
    for i in &items {
        outln!("{i}");
    }
    flush_out();
    if sciflow_pipeline::doctor::healthy(&items) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn validate(args: &WorkflowArgs) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    outln!(
        "{}: valid, {} stages:",
        args.workflow.display(),
        wf.stages.len()
    );
    for s in &wf.stages {
        let needs = if s.needs.is_empty() {
            String::new()
        } else {
            format!(" after {}", s.needs.join(", "))
        };
        outln!("  {} ({}){needs}", s.name, s.kind.name);
    }
    Ok(())
}

fn plan(args: &WorkflowArgs, selection: &Selection) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let lines = plan::plan(&wf, selection)?;
    let (run, fresh): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.decision.run);
    if run.is_empty() {
        outln!("nothing to run: {} stage(s) up to date", fresh.len());
    }
    // What each stage would take on this machine: one rank, all its cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_name: std::collections::HashMap<&str, &workflow::Stage> =
        wf.stages.iter().map(|s| (s.name.as_str(), s)).collect();
    let resources = |name: &str| {
        by_name
            .get(name)
            .map(|s| s.resources.describe(s.kind, 1, cores))
            .unwrap_or_default()
    };
    for l in &run {
        outln!("run    {}  [{}]", l.stage, resources(&l.stage));
        for r in &l.decision.reasons {
            outln!("         {r}");
        }
    }
    for l in &fresh {
        outln!("fresh  {}  [{}]", l.stage, resources(&l.stage));
    }
    Ok(())
}

fn submit(args: &WorkflowArgs, selection: &Selection, opts: &SubmitOptions) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let argv: Vec<String> = std::env::args().collect();
    let done = slurm::submit(&wf, opts, selection, &args.overrides(), &argv.join(" "))?;
    if opts.per_stage && done.jobs.is_empty() {
        outln!(
            "nothing to submit: {} stage(s) up to date",
            done.up_to_date.len()
        );
        return Ok(());
    }
    for (path, text, id) in &done.jobs {
        match id {
            None => {
                outln!("# {}", path.display());
                outln!("{}", text.trim_end());
            }
            Some(id) => outln!("Submitted batch job {id} ({})", path.display()),
        }
    }
    if opts.dry_run {
        eprintln!(
            "wrote {} script(s) (not submitted: --dry-run)",
            done.jobs.len()
        );
    }
    if let Some(run) = done.run_id {
        eprintln!(
            "run {run}: {} stage job(s); `pipeline show {run} -w {}` follows it",
            done.jobs.len() - 1,
            wf.workdir.display()
        );
    }
    Ok(())
}

fn end_run(args: &WorkflowArgs, run: i64, stages: &[String]) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.overrides())?;
    let records = Records::open_existing(&wf.workdir)?;
    let missing = records.end_submitted_run(run, stages)?;
    match sciflow_pipeline::report::write(&records, &wf.workdir, Some(run), None) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("warning: no report for run {run}: {e}"),
    }
    if missing.is_empty() {
        outln!("run {run}: ok");
    } else {
        outln!("run {run}: failed; not completed: {}", missing.join(", "));
    }
    Ok(())
}

fn clean(workflow: &Path, set: &[String], keep_runs: usize, dry_run: bool) -> Result<(), Error> {
    let wf = workflow::load(workflow, set)?;
    let cleaned = sciflow_pipeline::clean::clean(&wf, keep_runs, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for item in &cleaned.items {
        outln!("{verb} {} ({})", item.path.display(), item.why);
    }
    outln!(
        "{verb} {} item(s), {} run record(s): {} freed",
        cleaned.items.len(),
        cleaned.runs_dropped,
        human_bytes(cleaned.bytes)
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn workdir_of(args: &RecordsArgs) -> Result<PathBuf, Error> {
    Ok(if args.target.is_file() {
        workflow::load(&args.target, &[])?.workdir
    } else {
        args.target.clone()
    })
}

fn open_records(args: &RecordsArgs) -> Result<Records, Error> {
    Records::open_existing(&workdir_of(args)?)
}

fn write_report(args: &RecordsArgs, run: Option<i64>, output: Option<&Path>) -> Result<(), Error> {
    let workdir = workdir_of(args)?;
    let records = Records::open_existing(&workdir)?;
    let path = sciflow_pipeline::report::write(&records, &workdir, run, output)?;
    outln!("{}", path.display());
    Ok(())
}

fn history(args: &RecordsArgs, n: usize) -> Result<(), Error> {
    let records = open_records(args)?;
    outln!(
        "{:>5}  {:<20}  {:>9}  {:<11}  {:>5}  {:>8}  {:>7}  workflow",
        "run",
        "started (UTC)",
        "seconds",
        "status",
        "ranks",
        "executed",
        "skipped"
    );
    for r in records.history(n)? {
        let secs = r
            .finished
            .map_or("-".into(), |f| format!("{:.1}", f - r.started));
        outln!(
            "{:>5}  {:<20}  {:>9}  {:<11}  {:>5}  {:>8}  {:>7}  {}",
            r.id,
            utc(r.started),
            secs,
            r.status,
            r.world_size,
            r.executed,
            r.skipped,
            r.workflow
        );
    }
    Ok(())
}

fn show(args: &RecordsArgs, run: Option<i64>) -> Result<(), Error> {
    let records = open_records(args)?;
    let Some(id) = run.or(records.last_run()?) else {
        outln!("no runs recorded");
        return Ok(());
    };
    outln!("run {id}");
    for s in records.stage_runs(id)? {
        outln!(
            "  {:<16} {:<11} {:>8.1} s  ranks {}  {}",
            s.stage,
            s.status,
            s.seconds,
            s.ranks,
            &s.fingerprint[..s.fingerprint.len().min(12)]
        );
        outln!("      {}", s.reason);
        if let Some(e) = s.error {
            outln!("      error: {e}");
        }
    }
    let artifacts = records.artifacts(id)?;
    if !artifacts.is_empty() {
        outln!("  artifacts (path, bytes, BLAKE3; up to {SHOWN} per stage):");
        const SHOWN: usize = 8;
        let mut i = 0;
        while i < artifacts.len() {
            let stage = &artifacts[i].stage;
            let n = artifacts[i..]
                .iter()
                .take_while(|a| &a.stage == stage)
                .count();
            for a in artifacts[i..i + n].iter().take(SHOWN) {
                outln!(
                    "    {stage:<16} {:>12}  {}  {}",
                    a.bytes,
                    &a.blake3[..12],
                    a.path
                );
            }
            if n > SHOWN {
                outln!("    {stage:<16} ... and {} more files", n - SHOWN);
            }
            i += n;
        }
    }
    Ok(())
}

fn metrics(args: &RecordsArgs, stage: &str) -> Result<(), Error> {
    let records = open_records(args)?;
    outln!("step\tname\tvalue");
    for m in records.metrics(stage)? {
        outln!("{}\t{}\t{}", m.step, m.name, m.value);
    }
    Ok(())
}

fn run(
    args: &WorkflowArgs,
    selection: &Selection,
    exec_args: &ExecArgs,
    verbose: u8,
    quiet: bool,
) -> ExitCode {
    // First of all: Slurm's warning before a time limit may come at any
    // moment, and by default it would end the process.
    let listening = sciflow_train::preempt::listen().err();
    // Validate before starting MPI, so a bad file costs nothing on a cluster.
    let wf = match workflow::load(&args.workflow, &args.overrides()) {
        Ok(wf) => wf,
        Err(e) => {
            init_logging(verbose, quiet, 0);
            return report(&e, None);
        }
    };
    // Before MPI, threads and any tensor: the libraries choose their CPU
    // kernels at first use.
    let kernels = match sciflow_train::kernels::pin(wf.reproducible) {
        Ok(k) => k,
        Err(e) => {
            init_logging(verbose, quiet, 0);
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let comm = match sciflow_train::dist::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(verbose, quiet, comm.rank());
    tracing::debug!(
        "rank {}: reproducible: {}; CPU kernels: {}",
        comm.rank(),
        wf.reproducible,
        kernels.describe()
    );
    if let Some(e) = listening {
        tracing::warn!("cannot listen for SIGUSR1 (checkpoint before a time limit): {e}");
    }
    if let Some(why) =
        sciflow_train::dist::unconnected_slurm_tasks(comm.size(), |k| std::env::var(k).ok())
    {
        eprintln!("error: {why}");
        return ExitCode::from(1);
    }
    // PIPELINE_THREADS, else the cores Slurm gave each task, override the
    // even share of the node's cores.
    let threads_override = sciflow_train::thread_override().map(|(n, _)| n);
    let threads = sciflow_train::set_threads_for_rank(comm.local_size(), threads_override);
    let jobs = exec_args.jobs.map_or(threads, |j| j.get());
    if comm.rank() == 0 {
        tracing::info!(
            "workflow `{}`: {} stages, {} rank(s), {jobs} core(s) per rank, workdir {}{}",
            wf.name,
            wf.stages.len(),
            comm.size(),
            wf.workdir.display(),
            match wf.reproducible {
                workflow::Reproducible::Native => String::new(),
                m => format!(", reproducible: {m}"),
            }
        );
    }
    let progress = Progress::new(comm.rank() == 0 && !quiet);
    let argv: Vec<String> = std::env::args().collect();
    let opts = exec::RunOptions {
        jobs,
        keep_going: exec_args.keep_going,
        argv: argv.join(" "),
        join: exec_args.join,
    };
    match exec::run(&wf, selection, comm.as_ref(), &progress, &opts) {
        Ok(summary) => {
            if comm.rank() == 0 {
                let total: f64 = summary.stages.iter().map(|s| s.seconds).sum();
                let ran = summary.stages.iter().filter(|s| s.ran).count();
                tracing::info!(
                    "workflow `{}` finished: {ran} stage(s) run, {} up to date, {total:.1} s (run {})",
                    wf.name,
                    summary.stages.len() - ran,
                    summary.run_id
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = report(&e, Some(comm.size()));
            if comm.size() > 1 {
                // The other ranks may be waiting in a collective: end them all.
                comm.abort(e.exit_code());
            }
            code
        }
    }
}

/// Prints an error with its causes and returns the exit status.
fn report(e: &Error, world: Option<usize>) -> ExitCode {
    let mut msg = format!("error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!("\n  caused by: {text}"));
        }
        source = s.source();
    }
    if world.is_some_and(|w| w > 1) {
        msg.push_str("\n  (ending every rank of the job)");
    }
    eprintln!("{msg}");
    ExitCode::from(e.exit_code() as u8)
}
