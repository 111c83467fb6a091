use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::nats::terminate;
use crate::{find_program, free_port, tail};

/// Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a free
/// loopback port, alone (no cluster), with its own storage directory and a
/// config that routes everything to a receiver that sends nothing. Killed
/// on drop.
pub struct Alertmanager {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Alertmanager {
    /// Starts it; ready when `/-/ready` answers.
    pub fn start() -> Self {
        let bin = find_program("prometheus-alertmanager")
            .or_else(|| find_program("alertmanager"))
            .expect("prometheus-alertmanager not found: run scripts/install-deps.sh");
        let dir = tempfile::Builder::new()
            .prefix("rg-alertmanager-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: quiet\n  group_wait: 1s\nreceivers:\n  - name: quiet\n",
        )
        .expect("alertmanager config");
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ))
            .spawn()
            .expect("spawn prometheus-alertmanager");
        let mut am = Self {
            child: Some(child),
            port,
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if crate::http::blocking_get_status(port, "/-/ready") == Some(200) {
                break;
            }
            if let Some(Ok(Some(status))) = am.child.as_mut().map(Child::try_wait) {
                panic!("alertmanager exited with {status}:\n{}", am.log_tail(30));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "alertmanager not ready after 30s:\n{}",
                am.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    /// Its base URL, e.g. `http://127.0.0.1:9093`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The tail of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("alertmanager.log"), lines)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- alertmanager log (tail) ---\n{}", self.log_tail(20));
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}
