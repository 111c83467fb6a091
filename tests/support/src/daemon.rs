use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::nats::terminate;
use crate::tail;

/// A server process a fixture owns (unbound, dnsdist, moto, Alertmanager):
/// its own directory, its stdout and stderr in `<name>.log` and
/// `<name>.err` there, the tail of both printed when a test panics, and
/// SIGTERM (then SIGKILL) on drop.
pub(crate) struct Daemon {
    name: &'static str,
    child: Option<Child>,
    dir: TempDir,
}

impl Daemon {
    /// A fresh directory for a daemon called `name` (to write its config
    /// into before [`Daemon::spawn`]).
    pub(crate) fn dir(name: &str) -> TempDir {
        tempfile::Builder::new()
            .prefix(&format!("rg-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("a directory for {name}: {e}"))
    }

    /// Runs `command` with its output in `dir`.
    pub(crate) fn spawn(name: &'static str, mut command: Command, dir: TempDir) -> Self {
        let out = |ext: &str| {
            std::fs::File::create(dir.path().join(format!("{name}.{ext}")))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out("log"))
            .stderr(out("err"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Self {
            name,
            child: Some(child),
            dir,
        }
    }

    /// Polls `ready` until it holds; panics with the log's tail when the
    /// process exits first or `within` passes.
    pub(crate) fn wait_ready(&mut self, within: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if ready() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("{} exited with {status}:\n{}", self.name, self.log_tail(30));
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "{} not ready after {within:?}:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The tail of its output (stdout, then stderr).
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        ["log", "err"]
            .map(|ext| tail(&self.dir.path().join(format!("{}.{ext}", self.name)), lines))
            .join("\n")
    }

    /// Kills it at once (SIGKILL).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log (tail) ---\n{}", self.name, self.log_tail(20));
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}
