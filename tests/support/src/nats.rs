use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{find_program, tail};

/// A `nats-server -js` of the test's own: loopback only, random port, its
/// own store directory. Killed and cleaned up on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    /// The HTTP monitoring port (`/connz`, `/varz`), chosen at first start.
    monitor_port: u16,
    dir: TempDir,
    extra_config: Option<String>,
}

impl NatsServer {
    /// Starts a server with JetStream and a file store; returns when it
    /// accepts connections.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a server with extra configuration (e.g. an `authorization` or
    /// `accounts` block) appended to the generated config file.
    pub fn start_with_config(extra: &str) -> Self {
        Self::start_inner(Some(extra.to_owned()))
    }

    fn start_inner(extra_config: Option<String>) -> Self {
        let mut server = Self::unstarted(0, extra_config);
        server.spawn();
        server
    }

    fn unstarted(port: u16, extra_config: Option<String>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rg-nats-")
            .tempdir()
            .expect("tempdir for nats-server");
        Self {
            child: None,
            port,
            monitor_port: crate::free_port(),
            dir,
            extra_config,
        }
    }

    /// A server that is not running yet, on a port chosen now: its URL can
    /// be given to services before it exists; [`NatsServer::start_again`]
    /// starts it.
    pub fn not_started() -> Self {
        Self::unstarted(crate::free_port(), None)
    }

    /// As [`NatsServer::not_started`], with extra configuration.
    pub fn not_started_with_config(extra: &str) -> Self {
        Self::unstarted(crate::free_port(), Some(extra.to_owned()))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn spawn(&mut self) {
        let bin = find_program("nats-server")
            .expect("nats-server not found: run scripts/install-deps.sh");
        let store = self.dir.path().join("store");
        // Port -1 makes the server pick a free port (no race with other
        // tests); we read it back from the log. A restart reuses it.
        let port = if self.port == 0 {
            "-1".to_owned()
        } else {
            self.port.to_string()
        };
        let conf = self.dir.path().join("nats.conf");
        let body = format!(
            "jetstream {{ store_dir: {:?} }}\nhttp: \"127.0.0.1:{}\"\n{}\n",
            store.display().to_string(),
            self.monitor_port,
            self.extra_config.clone().unwrap_or_default()
        );
        std::fs::write(&conf, body).expect("write nats.conf");
        // Truncate the log so readiness is read from this run only.
        let _ignored = std::fs::remove_file(self.log_path());
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port, "-c"])
            .arg(&conf)
            .arg("-l")
            .arg(self.log_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        self.port = self.wait_ready();
    }

    fn wait_ready(&mut self) -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.contains("Server is ready") {
                let port = log
                    .lines()
                    .find_map(|l| l.split("Listening for client connections on ").nth(1))
                    .and_then(|a| a.trim().rsplit(':').next())
                    .and_then(|p| p.parse().ok())
                    .expect("client port in nats-server log");
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return port;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nats-server exited with {status}:\n{}",
                    tail(&self.log_path(), 30)
                );
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "nats-server not ready after 15s:\n{}",
                    tail(&self.log_path(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring address (`/connz` lists the connections by
    /// name, `/varz` the server's counters).
    pub fn monitor_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }

    /// True while the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's configuration file (written at each start).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    /// The store directory (survives `stop`/`start`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s). The store stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server is running");
        self.spawn();
    }

    /// Kills the server with SIGKILL (no shutdown of any kind, as a machine
    /// that dies). The store stays.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ignored = child.kill();
            let _ignored = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: its connections stay open but it
    /// answers nothing, to clients or to its cluster (a hung machine, or
    /// one cut off from everyone). [`Self::resume`] thaws it.
    pub fn hang(&mut self) {
        self.signal("-STOP");
    }

    /// Thaws a server frozen by [`Self::hang`].
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops and starts again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The tail of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }
}

pub(crate) fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    let _ignored = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ignored = child.kill();
    let _ignored = child.wait();
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- nats-server log (tail) ---\n{}", self.log_tail(20));
        }
        if let Some(mut child) = self.child.take() {
            let _ignored = child.kill();
            let _ignored = child.wait();
        }
    }
}

/// A JetStream cluster of `nats-server` processes on loopback, each with its
/// own client, route and monitoring port and store, routes to every other
/// node (as `deploy/nats/cluster.conf`). Nodes are named `n1`, `n2`, ...
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and returns once each accepts connections and
    /// the cluster has a JetStream meta leader. A node that cannot start
    /// (a free port taken by another test in the meantime) starts the
    /// whole cluster again on other ports, up to three times.
    pub fn start(size: usize) -> Self {
        for attempt in 1..=3 {
            if let Some(cluster) = Self::try_start(size) {
                return cluster;
            }
            eprintln!("a NATS cluster node did not start (attempt {attempt}); starting the cluster again on other ports");
        }
        panic!("a three-node NATS cluster did not start in three attempts (see the nats-server logs above)");
    }

    fn try_start(size: usize) -> Option<Self> {
        let routes: Vec<u16> = (0..size).map(|_| crate::free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes: Vec<NatsServer> = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                NatsServer::not_started_with_config(&format!(
                    "server_name: n{}\ncluster {{\n  name: rgtest\n  listen: \"127.0.0.1:{port}\"\n  routes: [{route_list}]\n}}\n",
                    i + 1
                ))
            })
            .collect();
        // Start them together: a node waits for its peers to elect.
        let handles: Vec<_> = nodes
            .drain(..)
            .map(|mut n| {
                std::thread::spawn(move || {
                    n.start_again();
                    n
                })
            })
            .collect();
        // A node that failed dropped (and stopped) with its thread; the
        // others stop when dropped here.
        let nodes = handles
            .into_iter()
            .map(|h| h.join().ok())
            .collect::<Option<Vec<_>>>()?;
        let cluster = Self { nodes };
        cluster.wait_meta_leader(Duration::from_secs(30));
        Some(cluster)
    }

    /// Every node's client URL, comma-separated (as `--nats` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes, in order (`n1` first).
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// One node.
    pub fn node(&mut self, index: usize) -> &mut NatsServer {
        &mut self.nodes[index]
    }

    /// The index of the node named `name` (`n2` → 1).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix('n')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < self.nodes.len())
    }

    /// `/jsz` of the first running node, as JSON.
    pub fn jsz(&self, query: &str) -> Option<serde_json::Value> {
        self.nodes.iter().filter(|n| n.is_running()).find_map(|n| {
            let body = crate::http::blocking_get(n.monitor_addr(), &format!("/jsz{query}"))?;
            serde_json::from_str(&body).ok()
        })
    }

    /// The name of the JetStream meta leader, as a running node sees it.
    pub fn meta_leader(&self) -> Option<String> {
        self.jsz("")
            .and_then(|v| v["meta_cluster"]["leader"].as_str().map(str::to_owned))
            .filter(|l| !l.is_empty())
    }

    /// Waits until the cluster has a meta leader.
    pub fn wait_meta_leader(&self, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(l) = self.meta_leader() {
                return l;
            }
            if std::time::Instant::now() > deadline {
                let logs: Vec<String> = self.nodes.iter().map(|n| n.log_tail(15)).collect();
                panic!(
                    "no JetStream meta leader after {within:?}:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
