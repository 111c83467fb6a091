//! The one service harness: every `regionguard <service>` runs through
//! [`main`], in this order:
//!
//! 1. logging is set up (by the caller, once per process: [`crate::telemetry::init`]);
//! 2. config is loaded and validated *before anything binds*; a bad key
//!    exits with code 2 and names the key;
//! 3. `/metrics` is bound and its real address logged;
//! 4. SIGINT/SIGTERM cancel the service's token; a second signal exits at
//!    once; with `RG_STOP_WITH_PARENT=1` (set by `regionguard up`), the end
//!    of stdin cancels it too: the parent holds the other end of the pipe,
//!    so a parent killed with SIGKILL leaves no service behind;
//! 5. `run` is awaited; after cancellation it gets a grace period to drain,
//!    with a warning when it runs over;
//! 6. the result becomes the exit code (0 ok, 1 failed, 2 bad config).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;
use crate::metrics;

/// Exit code for invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

/// How long a service may drain after shutdown is requested.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Runs one service to completion and maps the outcome to an exit code.
///
/// `load` loads and validates the config; `metrics_addr` picks the
/// `/metrics` address out of it; `run` is the service's `run`.
pub async fn main<C, L, A, R, Fut>(name: &'static str, load: L, metrics_addr: A, run: R) -> ExitCode
where
    L: FnOnce() -> Result<C, ConfigError>,
    A: FnOnce(&C) -> SocketAddr,
    R: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("Error: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let shutdown = CancellationToken::new();
    let handle = metrics::install();
    let addr = metrics_addr(&config);
    let listener = match metrics::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {name}: cannot bind the metrics listener on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(service = name, metrics = %bound, "serving /metrics and /healthz on http://{bound}");
    let metrics_task = tokio::spawn(metrics::serve(listener, handle, shutdown.clone()));
    ::metrics::gauge!("regionguard_up", "service" => name).set(1.0);

    spawn_signal_handler(name, shutdown.clone());
    if std::env::var_os(STOP_WITH_PARENT).is_some_and(|v| v == "1") {
        spawn_parent_watch(name, shutdown.clone());
    }

    let service = run(config, shutdown.clone());
    tokio::pin!(service);
    let result = tokio::select! {
        r = &mut service => r,
        _ = shutdown.cancelled() => {
            tracing::info!(service = name, grace = ?DEFAULT_GRACE, "shutting down: draining in-flight work");
            match tokio::time::timeout(DEFAULT_GRACE, &mut service).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(service = name, grace = ?DEFAULT_GRACE, "drain exceeded the grace period; exiting anyway");
                    Ok(())
                }
            }
        }
    };
    shutdown.cancel();
    let _ended = metrics_task.await;
    match result {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(service = name, error = format!("{e:#}"), "service failed");
            eprintln!("Error: {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The environment variable that makes a service stop when its stdin
/// closes (its parent is gone).
pub const STOP_WITH_PARENT: &str = "RG_STOP_WITH_PARENT";

/// Cancels `shutdown` when stdin reaches its end or fails: the parent that
/// held the pipe's other end exited, however it died.
pub fn spawn_parent_watch(name: &'static str, shutdown: CancellationToken) {
    let closed = stdin_closed();
    tokio::spawn(async move {
        if closed.await.is_err() {
            return; // the watch thread could not start
        }
        if !shutdown.is_cancelled() {
            // Cancel first: the parent held stdout and stderr too, so the
            // log line below may have nowhere to go.
            shutdown.cancel();
            tracing::warn!(
                service = name,
                "parent process gone (stdin closed); shutting down"
            );
        }
    });
}

/// Resolves when stdin reaches its end or fails. The read runs on a plain
/// thread, not tokio's blocking pool: a runtime shutting down waits for
/// its blocking reads, and this one may never end while the parent lives.
pub fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _told = tx.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch stdin for the parent's exit");
    }
    rx
}

/// SIGINT or SIGTERM cancels `shutdown`; a second one exits at once.
/// SIGTERM matters because that is what `docker stop` and process managers
/// send.
pub fn spawn_signal_handler(name: &'static str, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            if wait_for_signal().await.is_err() {
                tracing::warn!(
                    service = name,
                    "cannot listen for signals; stop with SIGKILL"
                );
                return;
            }
            seen += 1;
            if seen == 1 {
                tracing::info!(
                    service = name,
                    "signal received; shutting down (again to exit at once)"
                );
                shutdown.cancel();
            } else {
                tracing::warn!(service = name, "second signal; exiting now");
                std::process::exit(130);
            }
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
