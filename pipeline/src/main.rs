//! The `pipeline` command. Its verbs: `run` a workflow (alone or under
//! mpirun/srun), `plan` what would run and why, `validate` a file, draw its
//! `dag`, `submit` it to Slurm, read the run records (`history`, `show`,
//! `metrics`, `report`), `clean` a workdir, `list` the stage kinds and
//! `doctor` the machine. This file parses and dispatches; `cli/` does.

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command, RecordsArgs};
use cli::run::{init_logging, report};
use cli::{cluster, records, run, workflow};

mod cli;

// Planning a large workflow allocates millions of small nodes; mimalloc is
// markedly faster than glibc's malloc at that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging(cli.verbose, cli.quiet, 0);
    }
    let result = match cli.command {
        Command::Run { wf, select, exec } => {
            return run::run(&wf, &select.selection(), &exec, cli.verbose, cli.quiet)
        }
        Command::Doctor { workflow, set } => return workflow::doctor(workflow.as_deref(), &set),
        Command::List => {
            workflow::list();
            Ok(())
        }
        Command::Validate { wf } => workflow::validate(&wf),
        Command::Plan { wf, select } => workflow::plan(&wf, &select.selection()),
        Command::Dag { wf, format } => workflow::dag(&wf, format),
        Command::Submit { wf, select, opts } => cluster::submit(&wf, &select.selection(), &opts),
        Command::EndRun { wf, run, stages } => cluster::end_run(&wf, run, &stages),
        Command::Clean {
            workflow,
            set,
            keep_runs,
            dry_run,
        } => records::clean(&workflow, &set, keep_runs, dry_run),
        Command::History { at, records: r, n } => {
            let r = at.map_or(r, |target| RecordsArgs { target });
            records::history(&r, n)
        }
        Command::Show { run, records: r } => records::show(&r, run),
        Command::Metrics { stage, records: r } => records::metrics(&r, &stage),
        Command::Report {
            run,
            output,
            records: r,
        } => records::write_report(&r, run, output.as_deref()),
    };
    cli::out::flush_out();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, None),
    }
}
