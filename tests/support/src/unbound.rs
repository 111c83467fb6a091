use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::{find_program, free_port};

/// Debian's `unbound` serving a static local zone on 127.0.0.1: a DNS
/// server that regionguard did not write. Killed on drop.
pub struct Unbound {
    daemon: Daemon,
    addr: SocketAddr,
}

impl Unbound {
    /// Serves `records` (name, IPv4 address) as A records in a static
    /// `amazonaws.com.` zone: names not listed get NXDOMAIN. `empty` names
    /// exist (NOERROR) with no A record: the October 2025 failure mode.
    pub fn start(records: &[(&str, &str)], empty: &[&str]) -> Self {
        let bin = find_program("unbound").expect("unbound not found: run scripts/install-deps.sh");
        let dir = Daemon::dir("unbound");
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
        let mut command = Command::new(bin);
        command.arg("-d").arg("-c").arg(&conf_path);
        let mut daemon = Daemon::spawn("unbound", command, dir);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        daemon.wait_ready(Duration::from_secs(15), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        Self { daemon, addr }
    }

    /// Address it listens on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tail of unbound's output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}
