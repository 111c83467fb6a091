use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::{find_program, free_port};

/// Debian's `dnsdist` (PowerDNS's DNS load balancer) in front of another
/// DNS server (an [`crate::Unbound`]), for faults regionguard did not
/// write: per name, no answer at all, an rcode, or a delay; and a delay of
/// every answer (a busy host or a congested link). Changed at run time
/// through dnsdist's own console; killed on drop.
pub struct Dnsdist {
    daemon: Daemon,
    addr: SocketAddr,
    conf: PathBuf,
    rules: Mutex<Rules>,
}

/// What the server does now, besides forwarding.
#[derive(Default)]
struct Rules {
    /// Name (with the final dot) to the Lua action for it.
    names: BTreeMap<String, String>,
    /// Milliseconds added to every answer (UDP).
    all_delay_ms: u32,
}

impl Dnsdist {
    /// Forwards to `backend` on a free port of 127.0.0.1 (UDP and TCP).
    pub fn start(backend: SocketAddr) -> Self {
        let bin = find_program("dnsdist").expect("dnsdist not found: run scripts/install-deps.sh");
        let dir = Daemon::dir("dnsdist");
        let port = free_port();
        let console = free_port();
        // The console's key: 32 random bytes, base64, new for every server.
        let key = base64(&random_bytes(32));
        let conf = dir.path().join("dnsdist.conf");
        std::fs::write(
            &conf,
            format!(
                "-- No security polling: a test never reaches a public address.\n\
                 setSecurityPollSuffix('')\n\
                 setLocal('127.0.0.1:{port}')\n\
                 newServer({{address='{backend}', name='backend'}})\n\
                 -- The backend is up by definition: no health-check queries.\n\
                 getServer(0):setUp()\n\
                 controlSocket('127.0.0.1:{console}')\n\
                 setKey('{key}')\n\
                 setConsoleACL('127.0.0.1/32')\n"
            ),
        )
        .expect("write dnsdist.conf");
        let mut command = Command::new(bin);
        command
            .args(["--supervised", "--disable-syslog", "-C"])
            .arg(&conf);
        let mut server = Self {
            daemon: Daemon::spawn("dnsdist", command, dir),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conf,
            rules: Mutex::new(Rules::default()),
        };
        let (addr, probe) = (server.addr, server.console_probe());
        server.daemon.wait_ready(Duration::from_secs(15), || {
            std::net::TcpStream::connect(addr).is_ok() && probe()
        });
        server
    }

    /// A check that the console answers (for the readiness wait).
    fn console_probe(&self) -> impl Fn() -> bool {
        let conf = self.conf.clone();
        move || try_console(&conf, "showVersion()").is_ok()
    }

    /// Address it answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `lua` in the running server (its console) and returns what it
    /// printed; panics when the console refuses it.
    pub fn console(&self, lua: &str) -> String {
        try_console(&self.conf, lua)
            .unwrap_or_else(|e| panic!("dnsdist console refused {lua:?}: {e}"))
    }

    /// Queries for `name` get no answer (the client times out).
    pub fn drop_queries(&self, name: &str) {
        self.set(name, "DropAction()");
    }

    /// Queries for `name` are answered with `rcode` (`SERVFAIL`, `REFUSED`,
    /// `NXDOMAIN`, ...) without asking the backend.
    pub fn answer_rcode(&self, name: &str, rcode: &str) {
        self.set(name, &format!("RCodeAction(DNSRCode.{rcode})"));
    }

    /// Answers for `name` wait `ms` milliseconds (UDP).
    pub fn delay(&self, name: &str, ms: u32) {
        self.set(name, &format!("DelayAction({ms})"));
    }

    /// Every answer waits `ms` more milliseconds (UDP); 0 ends it.
    pub fn delay_all(&self, ms: u32) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.all_delay_ms = ms;
        self.apply(&rules);
    }

    /// Forwards everything again, untouched.
    pub fn clear(&self) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        *rules = Rules::default();
        self.apply(&rules);
    }

    fn set(&self, name: &str, action: &str) {
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("{}.", name.trim_end_matches('.'));
        rules.names.insert(name, action.to_owned());
        self.apply(&rules);
    }

    /// Replaces the server's rules at once (`setRules`), so no query sees
    /// a half-changed set.
    fn apply(&self, rules: &Rules) {
        let mut list: Vec<String> = Vec::new();
        if rules.all_delay_ms > 0 {
            // Not terminal: the per-name rules still apply after it.
            list.push(format!(
                "newRuleAction(AllRule(), DelayAction({}))",
                rules.all_delay_ms
            ));
        }
        for (name, action) in &rules.names {
            list.push(format!("newRuleAction(QNameRule('{name}'), {action})"));
        }
        self.console(&format!("setRules({{{}}})", list.join(", ")));
    }

    /// The tail of dnsdist's output.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }
}

/// Runs `lua` through the console of the dnsdist whose config is `conf`.
fn try_console(conf: &Path, lua: &str) -> Result<String, String> {
    let bin = find_program("dnsdist").ok_or("dnsdist not found")?;
    let out = Command::new(bin)
        .arg("-C")
        .arg(conf)
        .args(["-c", "-e", lua])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.contains("Error") && !text.contains("Connection refused") {
        Ok(text)
    } else {
        Err(text)
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open(Path::new("/dev/urandom"))
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
    }
}
