use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::tail;

/// A program (a `regionguard` service, typically) run as a process of its
/// own, its stdout and stderr in a log file; killed on drop. It can be
/// killed with SIGKILL (`kill -9`) and started again with the same command,
/// appending to the same log.
pub struct ServiceProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `program args` with `env` added to the environment (and
    /// `RG_CONFIG`/`RG_NATS_URL` removed: the test says what it wants), its
    /// output in `<dir>/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Self {
        let mut p = Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the process log");
        let err = log.try_clone().expect("clone the log handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .env_remove("RG_CONFIG")
            .env_remove("RG_NATS_URL")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.name));
        self.child = Some(child);
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`: no signal handler runs, nothing is drained.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ignored = child.kill();
            let _ignored = child.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for it to exit (SIGKILL after);
    /// returns how it exited.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ignored = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ignored = child.kill();
        child.wait().ok()
    }

    /// Starts it again with the same command (after `kill9`/`terminate`).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.spawn();
    }

    /// Everything it has written.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines it wrote.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log (tail) ---\n{}", self.name, self.log_tail(25));
        }
        self.kill9();
    }
}
