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
  pipeline submit workflows/quickstart.yaml --nodes 16 --ranks-per-node 4 --gpus-per-rank 1
  pipeline history -w workflows/quickstart.yaml
  pipeline report -w workflows/quickstart.yaml     # HTML page of the latest run

Exit status: 0 on success, 78 for an invalid workflow, 1 for a failed run.
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
    /// Override a value: params.NAME=VALUE, seed=N or workdir=PATH (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
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
    /// Stages run in dependency order. Under mpirun/srun every rank runs the
    /// same plan: collective stages (ingest, training) are shared, root-only
    /// stages (evaluation, figures) run on rank 0. Every run ends by writing
    /// its report, <workdir>/reports/run-<id>.html.
    Run {
        #[command(flatten)]
        wf: WorkflowArgs,
        #[command(flatten)]
        select: SelectArgs,
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
    Submit {
        #[command(flatten)]
        wf: WorkflowArgs,
        #[command(flatten)]
        opts: SubmitOptions,
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
        Command::Run { wf, select } => {
            return run(&wf, &select.selection(), cli.verbose, cli.quiet)
        }
        Command::Validate { wf } => validate(&wf),
        Command::Plan { wf, select } => plan(&wf, &select.selection()),
        Command::Dag { wf, format } => workflow::load(&wf.workflow, &wf.set)
            .map(|w| outln!("{}", dag::render(&w, format).trim_end())),
        Command::Submit { wf, opts } => submit(&wf, &opts),
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

fn validate(args: &WorkflowArgs) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.set)?;
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
    let wf = workflow::load(&args.workflow, &args.set)?;
    let lines = plan::plan(&wf, selection)?;
    let (run, fresh): (Vec<_>, Vec<_>) = lines.iter().partition(|l| l.decision.run);
    if run.is_empty() {
        outln!("nothing to run: {} stage(s) up to date", fresh.len());
    }
    for l in &run {
        outln!("run    {}", l.stage);
        for r in &l.decision.reasons {
            outln!("         {r}");
        }
    }
    for l in &fresh {
        outln!("fresh  {}", l.stage);
    }
    Ok(())
}

fn submit(args: &WorkflowArgs, opts: &SubmitOptions) -> Result<(), Error> {
    let wf = workflow::load(&args.workflow, &args.set)?;
    let (path, text, answer) = slurm::submit(&wf, opts, &args.set)?;
    match answer {
        None => {
            outln!("{}", text.trim_end());
            eprintln!("wrote {} (not submitted: --dry-run)", path.display());
        }
        Some(a) => outln!("{a} ({})", path.display()),
    }
    Ok(())
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

fn run(args: &WorkflowArgs, selection: &Selection, verbose: u8, quiet: bool) -> ExitCode {
    // Validate before starting MPI, so a bad file costs nothing on a cluster.
    let wf = match workflow::load(&args.workflow, &args.set) {
        Ok(wf) => wf,
        Err(e) => {
            init_logging(verbose, quiet, 0);
            return report(&e, None);
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
    if let Some(why) =
        sciflow_train::dist::unconnected_slurm_tasks(comm.size(), |k| std::env::var(k).ok())
    {
        eprintln!("error: {why}");
        return ExitCode::from(1);
    }
    // PIPELINE_THREADS, else the cores Slurm gave each task, override the
    // even share of the node's cores.
    let threads_override = ["PIPELINE_THREADS", "SLURM_CPUS_PER_TASK"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok());
    let threads = sciflow_train::set_threads_for_rank(comm.local_size(), threads_override);
    if comm.rank() == 0 {
        tracing::info!(
            "workflow `{}`: {} stages, {} rank(s), {threads} thread(s) per rank, workdir {}",
            wf.name,
            wf.stages.len(),
            comm.size(),
            wf.workdir.display()
        );
    }
    let progress = Progress::new(comm.rank() == 0 && !quiet);
    let argv: Vec<String> = std::env::args().collect();
    match exec::run(
        &wf,
        selection,
        comm.as_ref(),
        &progress,
        threads,
        &argv.join(" "),
    ) {
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
