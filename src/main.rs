//! The `regionguard` binary: every service (each a library crate with its
//! `run`, started by its subcommand) and the operator's tools around them
//! (`up`, `status`, `tail`, `fault`, `failover request|approve`,
//! `provision`, `replay`, `bench`, `check-config`), which live in `cli/`.
//! No service logic lives here.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(args))
}
