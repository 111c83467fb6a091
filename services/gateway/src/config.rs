//! The `[gateway]` section.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rg_bus::{Problems, Validate};
use serde::Deserialize;

/// The `[gateway]` section.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Vantages that must agree on an endpoint's status: not a key of
    /// this section; the binary sets it from `[rounds] quorum`, the rule
    /// the detector alerts by.
    #[serde(skip)]
    pub quorum: rg_rounds::Quorum,
    /// HTTP address: the dashboard, `/ws`, `/api/*`, `/healthz`,
    /// `/metrics`. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// gRPC address of the `ControlService`. Default `127.0.0.1:8081`.
    pub grpc_listen: SocketAddr,
    /// Address of the harness's own `/metrics` and `/healthz` listener.
    /// Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
    /// Time between snapshots; snapshots fall on multiples of it (wall
    /// clock). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A vantage point's last observation of an endpoint counts this long;
    /// an endpoint no vantage has seen for longer is left out of the
    /// figures and counted as stale. Default `35s`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Points of the health trend. Default `20`.
    pub trend_points: usize,
    /// Alerts kept for the feed (newest first). Default `50`.
    pub recent_alerts: usize,
    /// Failover phases kept for the timeline (newest first). Default `50`.
    pub timeline: usize,
    /// Bearer token required by state-changing calls (approve a failover,
    /// inject a fault), over HTTP and gRPC. Without one, those calls are
    /// open on a loopback address and the gateway refuses to start on any
    /// other. Also from `RG_GATEWAY__TOKEN`. Default: none.
    pub token: Option<String>,
    /// Turn the state-changing calls off entirely. Default `false`.
    pub read_only: bool,
    /// Directory of the built dashboard (`npm run build` in `dashboard/`).
    /// Default `dashboard/dist`.
    pub dashboard_dir: PathBuf,
    /// A WebSocket client that cannot take a snapshot within this long is
    /// disconnected. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub ws_send_timeout: Duration,
    /// Snapshots queued for the WebSocket and gRPC watchers (shared, not
    /// per watcher); a watcher further behind skips the oldest (counted).
    /// Default `16`.
    pub watch_queue: usize,
    /// Kernel send buffer of each WebSocket connection, bytes (0 = the
    /// system's default): bounds memory per slow client. Default `262144`.
    pub ws_send_buffer: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("grpc_listen", &self.grpc_listen)
            .field("interval", &self.interval)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.read_only)
            .field("dashboard_dir", &self.dashboard_dir)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            quorum: rg_rounds::Quorum::Majority,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            interval: Duration::from_secs(10),
            stale_after: Duration::from_secs(35),
            trend_points: 20,
            recent_alerts: 50,
            timeline: 50,
            token: None,
            read_only: false,
            dashboard_dir: PathBuf::from("dashboard/dist"),
            ws_send_timeout: Duration::from_secs(5),
            watch_queue: 16,
            ws_send_buffer: 256 * 1024,
        }
    }
}

/// Who may make state-changing calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nobody (`read_only`).
    Off,
    /// Anyone who can reach the loopback address (no token configured).
    OpenOnLoopback,
    /// Callers presenting this bearer token.
    Token(String),
}

impl Config {
    /// The access rule for state-changing calls.
    pub fn access(&self) -> Access {
        match (&self.token, self.read_only) {
            (_, true) => Access::Off,
            (Some(t), false) => Access::Token(t.clone()),
            (None, false) => Access::OpenOnLoopback,
        }
    }
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        if self.interval < Duration::from_millis(100) {
            p.push("interval", "must be at least 100ms");
        }
        if self.stale_after.is_zero() {
            p.push("stale_after", "must be greater than zero");
        }
        if !(1..=1000).contains(&self.trend_points) {
            p.push("trend_points", "must be within 1..=1000");
        }
        if self.watch_queue == 0 {
            p.push("watch_queue", "must be at least 1");
        }
        if self.ws_send_timeout.is_zero() {
            p.push("ws_send_timeout", "must be greater than zero");
        }
        if self.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            p.push(
                "token",
                "must be at least 16 characters (it guards failover approval)",
            );
        }
        if self.access() == Access::OpenOnLoopback {
            for (key, addr) in [("listen", self.listen), ("grpc_listen", self.grpc_listen)] {
                if !addr.ip().is_loopback() {
                    p.push(
                        key,
                        format!("{addr} is not a loopback address: set gateway.token (or RG_GATEWAY__TOKEN) so that approving failovers and injecting faults need it, or set gateway.read_only = true"),
                    );
                }
            }
        }
        if self.listen == self.grpc_listen && self.listen.port() != 0 {
            p.push("grpc_listen", "must differ from listen");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &Config) -> Vec<String> {
        let mut p = Problems::default();
        c.validate(&mut p);
        p.list().iter().map(|x| x.key.clone()).collect()
    }

    #[test]
    fn defaults_are_valid_and_open_only_on_loopback() {
        let c = Config::default();
        assert!(problems(&c).is_empty());
        assert_eq!(c.access(), Access::OpenOnLoopback);
    }

    #[test]
    fn a_public_address_without_token_is_refused_for_both_listeners() {
        let c = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            grpc_listen: "0.0.0.0:8081".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(problems(&c), vec!["listen", "grpc_listen"]);
        let with_token = Config {
            token: Some("0123456789abcdef".into()),
            ..c.clone()
        };
        assert!(problems(&with_token).is_empty());
        let read_only = Config {
            read_only: true,
            ..c
        };
        assert!(problems(&read_only).is_empty());
        assert_eq!(read_only.access(), Access::Off);
    }

    #[test]
    fn a_short_token_is_refused_and_never_printed() {
        let c = Config {
            token: Some("secret".into()),
            ..Config::default()
        };
        assert_eq!(problems(&c), vec!["token"]);
        assert!(!format!("{c:?}").contains("secret"));
    }
}
