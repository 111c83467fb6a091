use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::nats::terminate;
use crate::{find_program, free_port, tail};

/// Debian's `unbound` serving a static local zone on 127.0.0.1: a DNS
/// server that regionguard did not write. Killed on drop.
pub struct Unbound {
    child: Option<Child>,
    addr: SocketAddr,
    dir: TempDir,
}

impl Unbound {
    /// Serves `records` (name, IPv4 address) as A records in a static
    /// `amazonaws.com.` zone: names not listed get NXDOMAIN. `empty` names
    /// exist (NOERROR) with no A record: the October 2025 failure mode.
    pub fn start(records: &[(&str, &str)], empty: &[&str]) -> Self {
        let bin = find_program("unbound").expect("unbound not found: run scripts/install-deps.sh");
        let dir = tempfile::Builder::new()
            .prefix("rg-unbound-")
            .tempdir()
            .expect("tempdir for unbound");
        let port = free_port();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  \
             directory: {dir:?}\n  pidfile: {pid:?}\n  logfile: \"\"\n  use-syslog: no\n  verbosity: 1\n  \
             access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: yes\n  module-config: \"iterator\"\n  \
             do-ip6: no\n  num-threads: 1\n  so-reuseport: no\n  \
             local-zone: \"amazonaws.com.\" static\n",
            dir = dir.path().display().to_string(),
            pid = dir.path().join("unbound.pid").display().to_string(),
        );
        for (name, ip) in records {
            conf.push_str(&format!("  local-data: \"{name}. 0 IN A {ip}\"\n"));
        }
        for name in empty {
            // A TXT record makes the name exist, so an A query gets NOERROR
            // with an empty answer.
            conf.push_str(&format!(
                "  local-data: '{name}. 0 IN TXT \"no address\"'\n"
            ));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        let conf_path = dir.path().join("unbound.conf");
        std::fs::write(&conf_path, conf).expect("write unbound.conf");
        let log = dir.path().join("unbound.log");
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::create(&log)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .stderr(
                std::fs::File::create(dir.path().join("unbound.err"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("spawn unbound");
        let mut server = Self {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("unbound exited with {status}:\n{}", self.log_tail(30));
            }
            if std::time::Instant::now() > deadline {
                panic!("unbound not ready after 15s:\n{}", self.log_tail(30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Address it listens on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn log_paths(&self) -> [PathBuf; 2] {
        [
            self.dir.path().join("unbound.log"),
            self.dir.path().join("unbound.err"),
        ]
    }

    /// The tail of unbound's output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log_paths()
            .iter()
            .map(|p| tail(p, lines))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- unbound log (tail) ---\n{}", self.log_tail(20));
        }
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}
