//! `mesokit`: the command-line front of the mesokit libraries.
//!
//! `run` (a job on Mesos), `status` (a cluster's frameworks and tasks), `local` (a
//! Mesos-compatible master and agents on this machine), `executor` (the executor an agent
//! starts), `hook` (Criteo command modules) and `decode` (inspect a captured event stream).

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run work on Apache Mesos.
#[derive(Debug, Parser)]
#[command(name = "mesokit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode a RecordIO stream of scheduler events (as captured from a SUBSCRIBE response)
    /// and print each event.
    Decode(cmd::decode::Args),
    /// Run as a Mesos command executor: started by an agent with the MESOS_* environment, run
    /// the task it sends and report its states.
    Executor(cmd::executor::Args),
    /// Run a Mesos-compatible master and agents on this machine (for development and tests).
    Local(cmd::local::Args),
    /// Run a job (YAML or JSON spec) on Mesos: on the embedded local cluster unless --master
    /// is given.
    Run(cmd::run::Args),
    /// Show a cluster's frameworks and tasks.
    Status(cmd::status::Args),
    /// Work with Criteo command modules (agent hooks and isolators run as scripts).
    Hook(cmd::hook::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => cmd::decode::run(args),
        Command::Executor(args) => cmd::executor::run(args),
        Command::Local(args) => cmd::local::run(args),
        Command::Hook(args) => cmd::hook::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Status(args) => cmd::status::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mesokit: {e}");
            ExitCode::FAILURE
        }
    }
}
