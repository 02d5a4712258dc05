//! `mesokit`: the command-line front of the mesokit libraries.
//!
//! Subcommands land with the libraries they drive; today: `decode` (inspect a captured Mesos
//! event stream), `executor` (the command executor an agent starts) and `local` (a
//! Mesos-compatible master and agents on this machine). `run`, `status` and `hook` follow
//! (see the README).

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mesokit: {e}");
            ExitCode::FAILURE
        }
    }
}
