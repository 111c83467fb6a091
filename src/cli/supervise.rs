//! `regionguard supervise -- PROGRAM ARGS...` (hidden): runs a program
//! that cannot watch its parent (nats-server) so that it stops with the
//! parent. The supervisor forwards SIGINT/SIGTERM to it, and signals it
//! too when its own stdin closes: `regionguard up` holds that pipe, so an
//! `up` killed with SIGKILL leaves no server behind.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

/// `regionguard supervise`.
#[derive(Debug, Args)]
pub(crate) struct SuperviseArgs {
    /// Signal sent to the program to stop it (INT or TERM).
    #[arg(long, default_value = "TERM", value_parser = ["INT", "TERM"])]
    signal: String,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub(crate) async fn run(args: SuperviseArgs) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        return ExitCode::from(2);
    };
    let mut child = match Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: starting {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("Error: cannot listen for signals");
        return ExitCode::FAILURE;
    };
    let parent_gone = rg_bus::service::stdin_closed();
    let status = tokio::select! {
        status = child.wait() => status,
        _ = term.recv() => stop(&mut child, &args.signal).await,
        _ = int.recv() => stop(&mut child, &args.signal).await,
        _ = parent_gone => {
            eprintln!("supervise: parent gone (stdin closed); stopping {program}");
            stop(&mut child, &args.signal).await
        }
    };
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c.clamp(1, 255) as u8)),
        Err(_) => ExitCode::FAILURE,
    }
}

/// Signals the child and waits up to 10 s, then kills it.
async fn stop(
    child: &mut tokio::process::Child,
    signal: &str,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        let _sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status();
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            child.kill().await?;
            child.wait().await
        }
    }
}
