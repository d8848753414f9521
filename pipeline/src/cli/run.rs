//! `pipeline run`: logging, MPI, threads, the executor, and how an error
//! ends the process (its causes, every rank, the exit status).

use std::process::ExitCode;

use sciflow_pipeline::engine::exec;
use sciflow_pipeline::engine::plan::Selection;
use sciflow_pipeline::stages::progress::Progress;
use sciflow_pipeline::workflow;
use sciflow_pipeline::Error;

use super::args::{ExecArgs, WorkflowArgs};

pub fn init_logging(verbose: u8, quiet: bool, rank: usize) {
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

pub fn run(
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
    let kernels = match wf.pin_kernels() {
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
    // The engine's own parallel work (BLAKE3 of large inputs and outputs)
    // runs on rayon's global pool: at most `jobs` threads, as `-j` says.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build_global()
    {
        tracing::debug!("rayon's pool was set up before `-j` was known: {e}");
    }
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
pub fn report(e: &Error, world: Option<usize>) -> ExitCode {
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
