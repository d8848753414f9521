//! The `pipeline` command: run, validate and list workflow stages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sciflow_pipeline::progress::Progress;
use sciflow_pipeline::registry::REGISTRY;
use sciflow_pipeline::{exec, workflow, Error};

/// Scientific data to trained models: ingest, train and evaluate, as declared
/// in a YAML workflow, on a laptop or under MPI.
#[derive(Parser)]
#[command(name = "pipeline", version, about, long_about = None, after_help = "\
Examples:
  pipeline run workflows/quickstart.yaml
  pipeline run workflows/quickstart.yaml --set params.epochs=10
  mpirun -n 4 pipeline run workflows/quickstart.yaml
  pipeline validate workflows/quickstart.yaml

Exit status: 0 on success, 78 for an invalid workflow, 1 for a failed run.
Threads: each rank uses its share of the node's cores; PIPELINE_THREADS overrides.")]
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

#[derive(Subcommand)]
enum Command {
    /// Run every stage of a workflow, in dependency order. Under mpirun/srun,
    /// every rank runs the same plan: collective stages (ingest, training) are
    /// shared, root-only stages (evaluation, figures) run on rank 0.
    Run {
        /// The workflow file.
        workflow: PathBuf,
        /// Override a value: params.NAME=VALUE, seed=N or workdir=PATH (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Check a workflow (keys, types, references, cycles) without running anything.
    Validate {
        /// The workflow file.
        workflow: PathBuf,
        /// Override a value: params.NAME=VALUE, seed=N or workdir=PATH (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List the stage kinds a workflow can use, with their outputs and an example.
    List,
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
    match cli.command {
        Command::List => {
            for kind in REGISTRY {
                println!(
                    "{}  ({})",
                    kind.name,
                    if kind.collective {
                        "collective"
                    } else {
                        "rank 0"
                    }
                );
                println!("    {}", kind.summary);
                for o in kind.outputs {
                    println!("    output `{}`: {}", o.name, o.doc);
                }
                println!("    example:");
                for line in kind.example.lines() {
                    println!("      {line}");
                }
                println!();
            }
            ExitCode::SUCCESS
        }
        Command::Validate { workflow, set } => {
            init_logging(cli.verbose, cli.quiet, 0);
            match workflow::load(&workflow, &set) {
                Ok(wf) => {
                    println!("{}: valid, {} stages:", workflow.display(), wf.stages.len());
                    for s in &wf.stages {
                        let needs = if s.needs.is_empty() {
                            String::new()
                        } else {
                            format!(" after {}", s.needs.join(", "))
                        };
                        println!("  {} ({}){needs}", s.name, s.kind.name);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => report(&e, None),
            }
        }
        Command::Run { workflow, set } => run(&workflow, &set, cli.verbose, cli.quiet),
    }
}

fn run(file: &std::path::Path, set: &[String], verbose: u8, quiet: bool) -> ExitCode {
    // Validate before starting MPI, so a bad file costs nothing on a cluster.
    let wf = match workflow::load(file, set) {
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
    let threads = sciflow_train::set_threads_for_rank(comm.local_size());
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
    match exec::run(&wf, comm.as_ref(), &progress, threads) {
        Ok(summary) => {
            if comm.rank() == 0 {
                let total: f64 = summary.stages.iter().map(|s| s.1).sum();
                tracing::info!("workflow `{}` finished in {total:.1} s", wf.name);
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
