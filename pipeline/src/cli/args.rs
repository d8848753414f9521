//! The command line: verbs, their flags and `--help` text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use sciflow_pipeline::cluster::slurm::SubmitOptions;
use sciflow_pipeline::engine::plan::Selection;
use sciflow_pipeline::workflow::{self, dag};

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
pub struct Cli {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The workflow file and its overrides.
#[derive(clap::Args, Clone)]
pub struct WorkflowArgs {
    /// The workflow file.
    pub workflow: PathBuf,
    /// Override a value: params.NAME=VALUE, seed=N, reproducible=MODE or
    /// workdir=PATH (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// How far results are reproducible (the workflow's `reproducible:`):
    /// `native`, the fastest kernels of this machine, the same bits on it;
    /// or `portable`, libtorch's CPU kernels pinned to AVX2 (ATen, oneDNN,
    /// MKL's compatible branch), the same bits on any x86-64 machine with
    /// AVX2 for the same seed, ranks and threads per rank.
    #[arg(long, value_name = "MODE", value_parser = workflow::Reproducible::NAMES)]
    pub reproducible: Option<String>,
}

impl WorkflowArgs {
    /// `--set` overrides, `--reproducible` among them.
    pub fn overrides(&self) -> Vec<String> {
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
pub struct SelectArgs {
    /// Run this stage even if it is up to date (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Stop after this stage (it and the stages it depends on).
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub until: Option<String>,
    /// Only this stage; the stages it depends on must have run.
    #[arg(long, value_name = "STAGE")]
    pub only: Option<String>,
    /// Continue interrupted training stages from their last checkpoint
    /// (`<workdir>/.checkpoints/<stage>`, written at each epoch's end and every
    /// `checkpoint_every` steps) instead of starting them afresh. The stage's
    /// configuration and inputs must be unchanged, and the rank count the same.
    #[arg(long)]
    pub resume: bool,
}

impl SelectArgs {
    pub fn selection(&self) -> Selection {
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
pub struct ExecArgs {
    /// Cores to keep busy (default: this rank's share of the node). Stages
    /// whose inputs are ready run side by side while their threads fit
    /// (`resources.threads_per_rank`; compute stages take all N, commands
    /// and figures one); collective stages run one at a time on every rank.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<std::num::NonZeroUsize>,
    /// After a stage fails, finish every stage that does not need it, then
    /// exit non-zero listing the failures.
    #[arg(short = 'k', long)]
    pub keep_going: bool,
    /// Record into run ID, begun by `pipeline submit --per-stage` (set by
    /// the jobs it submits).
    #[arg(long, value_name = "ID", hide = true)]
    pub join: Option<i64>,
}

/// Where the run records are: a workflow file (its workdir) or a workdir.
#[derive(clap::Args, Clone)]
pub struct RecordsArgs {
    /// A workflow file or a workdir (default: the current directory).
    #[arg(
        short = 'w',
        long = "workdir",
        value_name = "WORKFLOW|DIR",
        default_value = "."
    )]
    pub target: PathBuf,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// (old -> new value), a default of the stage's kind changed (`default
    /// of with.KEY changed`), an input file changed, an upstream output
    /// changed, forced.
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
