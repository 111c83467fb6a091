use std::process::Command;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::{find_program, free_port};

/// moto's server (`pip install 'moto[server]'`): the AWS API on loopback,
/// for Route 53, CloudFront, Auto Scaling and ECS. Killed on drop.
pub struct Moto {
    daemon: Daemon,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free port; ready when it answers HTTP.
    pub fn start() -> Self {
        let bin = find_program("moto_server").expect(
            "moto_server not found: run scripts/install-deps.sh (pip install 'moto[server]')",
        );
        let port = free_port();
        let mut command = Command::new(bin);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut daemon = Daemon::spawn("moto", command, Daemon::dir("moto"));
        daemon.wait_ready(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { daemon, port }
    }

    /// Its URL, e.g. `http://127.0.0.1:5123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL): an AWS endpoint that stops answering.
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// The tail of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}
