//! Fixtures for regionguard's tests: real servers, each started on a free
//! port with its own state directory, and stopped (even when a test panics)
//! on `Drop`. On a panic, the tail of each server's log is printed.
//!
//! - [`NatsServer`]: `nats-server -js` with a file store, `stop`/`start` for
//!   resilience tests.
//! - [`Unbound`]: Debian's unbound serving a small local zone: a DNS server
//!   regionguard did not write.
//! - [`Dnsdist`]: Debian's dnsdist in front of it, for per-name faults
//!   (no answer, an rcode, a delay) and a delay of every answer, changed at
//!   run time.
//! - [`Moto`]: moto's server, the AWS API on loopback.
//! - [`Alertmanager`]: Prometheus Alertmanager (Debian's package), alone.
//! - [`Receiver`]: an HTTP endpoint recording what is posted to it.
//! - [`ServiceProcess`]: a `regionguard` service as a process of its own,
//!   for `kill -9` and restarts.
//! - [`wait_until`]: poll a condition with a deadline; panics with the last
//!   observed state.
//! - [`init_logging`]: test logs on demand (`TEST_LOG=1`).
//! - [`fuzz`]: case counts and per-case deadlines for proptest fuzzing.

// The fixtures wait on real processes from synchronous code, where tokio's
// paused clock does not apply: std's Instant is the right clock here.
#![allow(clippy::disallowed_types)]

mod alertmanager;
mod daemon;
mod dnsdist;
mod moto;
mod nats;
mod process;
mod receiver;
mod unbound;
mod wait;

pub mod fuzz;
pub mod http;
pub use alertmanager::Alertmanager;
pub use dnsdist::Dnsdist;
pub use moto::Moto;
pub use nats::{NatsCluster, NatsServer};
pub use process::ServiceProcess;
pub use receiver::{Received, Receiver};
pub use unbound::Unbound;
pub use wait::{init_logging, wait_until, Waited};

use std::net::{TcpListener, UdpSocket};
use std::path::Path;

/// A port free for both UDP and TCP on 127.0.0.1 right now (bound, then
/// released). Prefer servers that take port 0 and report their port; use
/// this only for servers that cannot.
///
/// The port is taken below the kernel's ephemeral range (where port 0 and
/// every outgoing connection get theirs), and never handed out twice in one
/// test process: a port handed out but not yet bound by its server cannot
/// be given to another server or taken by a connection meanwhile. (Ports
/// from port 0 collided so once: the gateway's gRPC port became a prober's
/// metrics port before the gateway bound it.)
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = below_ephemeral();
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..2000 {
        let mut h = random.build_hasher();
        h.write_u32(attempt);
        h.write_u32(std::process::id());
        let port = low + (h.finish() % u64::from(high - low)) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let Ok(addr) = tcp.local_addr() else { continue };
        if UdpSocket::bind(addr).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {high}")
}

/// The ports tests hand out: from 20000 (or lower when the ephemeral range
/// starts lower) up to the start of the kernel's ephemeral range.
fn below_ephemeral() -> (u16, u16) {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if start > 12000 {
        (start.saturating_sub(12768).max(10000), start)
    } else {
        // An unusual range: anywhere above the well-known ports.
        (1024, 65535)
    }
}

/// The last `lines` lines of a log file ("" when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds a program on PATH or in the usual sbin directories (Debian puts
/// `nats-server` and `unbound` in /usr/sbin, which is not on every PATH).
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(Into::into))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
