use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::nats::terminate;
use crate::{find_program, free_port, tail};

/// moto's server (`pip install 'moto[server]'`): the AWS API on loopback,
/// for Route 53, CloudFront, Auto Scaling and ECS. Killed on drop.
pub struct Moto {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port; ready when it answers HTTP.
    pub fn start() -> Self {
        let bin = find_program("moto_server").expect(
            "moto_server not found: run scripts/install-deps.sh (pip install 'moto[server]')",
        );
        let dir = tempfile::Builder::new()
            .prefix("rg-moto-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = dir.path().join("moto.log");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("moto log")))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("moto.err")).expect("moto log"),
            ))
            .spawn()
            .expect("spawn moto_server");
        let mut moto = Self {
            child: Some(child),
            port,
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = moto.child.as_mut().map(Child::try_wait) {
                panic!("moto_server exited with {status}:\n{}", moto.log_tail(30));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server not ready after 30s:\n{}",
                moto.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Its URL, e.g. `http://127.0.0.1:5123`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL): an AWS endpoint that stops answering.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    /// The tail of its output.
    pub fn log_tail(&self, lines: usize) -> String {
        [
            tail(&self.dir.path().join("moto.log"), lines),
            tail(&self.dir.path().join("moto.err"), lines),
        ]
        .join("\n")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- moto log (tail) ---\n{}", self.log_tail(20));
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}
