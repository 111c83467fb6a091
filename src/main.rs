//! The `regionguard` binary: every service (each a library crate with its
//! `run`, started by its subcommand) and the operator's tools around them
//! (`up`, `status`, `tail`, `fault`, `failover request|approve`,
//! `provision`, `replay`, `bench`, `check-config`), which live in `cli/`.
//! No service logic lives here.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
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

/// `regionguard tail | head`, `failover request | head -2`: when the
/// reader goes away, `println!` fails with a broken pipe and would panic
/// with a backtrace. Exit quietly instead, with the status a shell gives a
/// process ended by SIGPIPE (128 + 13).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
