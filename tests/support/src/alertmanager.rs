use std::process::Command;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::{find_program, free_port};

/// Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a free
/// loopback port, alone (no cluster), with its own storage directory and a
/// config that routes everything to a receiver that sends nothing. Killed
/// on drop.
pub struct Alertmanager {
    daemon: Daemon,
    port: u16,
}

impl Alertmanager {
    /// Starts it; ready when `/-/ready` answers.
    pub fn start() -> Self {
        let bin = find_program("prometheus-alertmanager")
            .or_else(|| find_program("alertmanager"))
            .expect("prometheus-alertmanager not found: run scripts/install-deps.sh");
        let dir = Daemon::dir("alertmanager");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: quiet\n  group_wait: 1s\nreceivers:\n  - name: quiet\n",
        )
        .expect("alertmanager config");
        let port = free_port();
        let mut command = Command::new(bin);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let mut daemon = Daemon::spawn("alertmanager", command, dir);
        daemon.wait_ready(Duration::from_secs(30), || {
            crate::http::blocking_get_status(port, "/-/ready") == Some(200)
        });
        Self { daemon, port }
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
        self.daemon.log_tail(lines)
    }
}
