//! NATS connection: the `[nats]` config section and [`connect`].
//!
//! [`connect`] waits (with backoff, logging) while no server answers, so a
//! service whose NATS is not up yet starts anyway and connects once the
//! server appears; refused credentials stop it at once with a clear error.
//! Reconnects after a loss are automatic and unlimited; each one is logged
//! and counted.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Problems, Validate};
use crate::metrics as m;
use crate::subjects::Subjects;

/// The `[nats]` section: where the bus is and how to authenticate.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NatsConfig {
    /// Server URLs; several for a cluster. A single string may list several
    /// separated by commas. Default `["nats://127.0.0.1:4222"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub servers: Vec<String>,
    /// Subject prefix of every subject and stream name. Default `rg`.
    pub prefix: String,
    /// User name for user/password auth. Default none.
    pub user: Option<String>,
    /// Password for user/password auth. Default none. Never logged.
    pub password: Option<String>,
    /// Token auth. Default none. Never logged.
    pub token: Option<String>,
    /// A `.creds` file (JWT + nkey seed). Default none.
    pub credentials_file: Option<PathBuf>,
    /// TLS options.
    pub tls: TlsConfig,
    /// Timeout of one connection attempt. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of a request (and of waiting for a JetStream PubAck).
    /// Default `5s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a service may be without NATS before its `/healthz`
    /// fails (503, saying since when): container health checks and load
    /// balancers then see it. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub unhealthy_after: Duration,
    /// Stream settings.
    pub streams: StreamsConfig,
}

/// TLS options of the `[nats.tls]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Refuse to connect without TLS. Default `false` (TLS is still used when
    /// the server offers it or the URL is `tls://`).
    pub required: bool,
    /// PEM file of CA certificates to trust. Default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS. Default none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default none.
    pub key_file: Option<PathBuf>,
}

/// The `[nats.streams]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StreamsConfig {
    /// Replicas of each stream (1 on a single server, 3 on a 3-node cluster).
    /// Default `1`.
    pub replicas: usize,
    /// Store streams on disk (`file`) or in memory (`memory`). Default `file`.
    pub storage: StorageKind,
    /// Max age of health events. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub health_max_age: Duration,
    /// Max age of alerts. Default `30d`.
    #[serde(with = "humantime_serde")]
    pub alerts_max_age: Duration,
    /// Max age of failover decisions (the audit trail). Default `90d`.
    #[serde(with = "humantime_serde")]
    pub decisions_max_age: Duration,
    /// Max age of dead letters. Default `30d`.
    #[serde(with = "humantime_serde")]
    pub deadletter_max_age: Duration,
    /// JetStream duplicate window: a message id seen within it is dropped
    /// by the server. Default `2m`.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// On disk: survives a server restart.
    File,
    /// In memory: lost on restart.
    Memory,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".into()],
            prefix: "rg".into(),
            user: None,
            password: None,
            token: None,
            credentials_file: None,
            tls: TlsConfig::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            unhealthy_after: Duration::from_secs(30),
            streams: StreamsConfig::default(),
        }
    }
}

const DAY: u64 = 24 * 3600;

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            storage: StorageKind::File,
            health_max_age: Duration::from_secs(DAY),
            alerts_max_age: Duration::from_secs(30 * DAY),
            decisions_max_age: Duration::from_secs(90 * DAY),
            deadletter_max_age: Duration::from_secs(30 * DAY),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl NatsConfig {
    /// The subject names under this config's prefix.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.prefix)
    }

    /// The configured server addresses, parsed.
    pub fn server_addrs(&self) -> Result<Vec<ServerAddr>, String> {
        self.servers
            .iter()
            .map(|s| s.parse::<ServerAddr>().map_err(|e| format!("{s:?}: {e}")))
            .collect()
    }

    /// A copy pointing at other servers (tests, `regionguard up`).
    pub fn with_servers(mut self, servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// The servers as a comma-separated list, for logs. Credentials in URLs
    /// are masked.
    pub fn servers_for_log(&self) -> String {
        self.servers
            .iter()
            .map(|s| match (s.find("://"), s.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}***{}", &s[..scheme + 3], &s[at..])
                }
                _ => s.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Validate for NatsConfig {
    fn validate(&self, p: &mut Problems) {
        if self.servers.is_empty() {
            p.push("servers", "at least one server URL is needed");
        }
        for (i, s) in self.servers.iter().enumerate() {
            if let Err(e) = s.parse::<ServerAddr>() {
                p.push(
                    format!("servers[{i}]"),
                    format!("{s:?} is not a NATS URL: {e}"),
                );
            }
        }
        if !is_subject_token(&self.prefix) {
            p.push(
                "prefix",
                format!(
                    "{:?} must be one subject token (letters, digits, '-', '_')",
                    self.prefix
                ),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            p.push("password", "user and password go together");
        }
        let methods = [
            self.user.is_some(),
            self.token.is_some(),
            self.credentials_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            p.push(
                "token",
                "choose one of user/password, token or credentials_file",
            );
        }
        if let Some(path) = &self.credentials_file {
            if !path.is_file() {
                p.push(
                    "credentials_file",
                    format!("{} does not exist", path.display()),
                );
            }
        }
        for (key, file) in [
            ("tls.ca_file", &self.tls.ca_file),
            ("tls.cert_file", &self.tls.cert_file),
            ("tls.key_file", &self.tls.key_file),
        ] {
            if let Some(path) = file {
                if !path.is_file() {
                    p.push(key, format!("{} does not exist", path.display()));
                }
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            p.push("tls.key_file", "cert_file and key_file go together");
        }
        if self.connect_timeout.is_zero() {
            p.push("connect_timeout", "must be greater than zero");
        }
        if self.request_timeout.is_zero() {
            p.push("request_timeout", "must be greater than zero");
        }
        let s = &self.streams;
        if !(1..=5).contains(&s.replicas) {
            p.push(
                "streams.replicas",
                format!("{} is outside 1..=5", s.replicas),
            );
        }
        for (key, age) in [
            ("streams.health_max_age", s.health_max_age),
            ("streams.alerts_max_age", s.alerts_max_age),
            ("streams.decisions_max_age", s.decisions_max_age),
            ("streams.deadletter_max_age", s.deadletter_max_age),
            ("streams.duplicate_window", s.duplicate_window),
        ] {
            if age.is_zero() {
                p.push(key, "must be greater than zero");
            }
        }
    }
}

fn is_subject_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

/// Connecting failed before any attempt could be made (bad options or
/// unreadable credentials). A server that is down is *not* an error: the
/// client keeps trying in the background.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server list does not parse.
    #[error("bad NATS server address {0}")]
    BadAddress(String),
    /// The credentials file cannot be read.
    #[error("reading NATS credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server refused us (credentials, TLS): retrying will not help.
    #[error("NATS at {servers} refused the connection: {source} (check nats.user/password, token, credentials_file and tls)")]
    Refused {
        /// The servers, credentials masked.
        servers: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
    /// No server answered (one attempt).
    #[error("cannot reach NATS at {servers}: {source}")]
    Unreachable {
        /// The servers, credentials masked.
        servers: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
}

/// Connects to NATS as `name` (shown in the server's connection list),
/// waiting while no server answers: attempts are retried with backoff (up
/// to 5 s apart) and logged. Refused credentials or a broken TLS setup end
/// the wait at once with [`ConnectError::Refused`]: retrying cannot help.
/// Once connected, reconnects are automatic and unlimited; every connect,
/// disconnect and reconnect is logged and counted in
/// `regionguard_nats_events_total{event}`. Wrap the call in a `select!` with
/// a shutdown signal to stop waiting.
pub async fn connect(config: &NatsConfig, name: &str) -> Result<Client, ConnectError> {
    m::nats_health_watch(config.unhealthy_after);
    let servers = config.servers_for_log();
    tracing::info!(servers = %servers, name, "connecting to NATS (waits and retries while no server answers)");
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut attempts = 0u32;
    loop {
        match connect_once(config, name).await {
            Ok(client) => return Ok(client),
            Err(ConnectError::Unreachable { servers, source }) => {
                attempts += 1;
                // Log the first failure and then every tenth, not each one.
                if attempts == 1 || attempts % 10 == 0 {
                    tracing::warn!(servers = %servers, error = %source, attempts, retry_in = ?backoff.delay(), "NATS is not reachable yet; retrying");
                }
                backoff.sleep().await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`connect`] for a long-lived service connection: also logs the server
/// it is on and each change of it ([`watch_server`]), and leaves a server
/// cut off from its cluster ([`crate::cutoff::watch`]), until `shutdown`.
/// Every service connection goes through here, core NATS only or not: a
/// connection left on a cut-off server loses everyone on the other side.
pub async fn connect_watched(
    config: &NatsConfig,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Client, ConnectError> {
    let client = connect(config, name).await?;
    tokio::spawn(watch_server(
        client.clone(),
        name.to_owned(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::cutoff::watch(
        client.clone(),
        config.clone(),
        name.to_owned(),
        shutdown.clone(),
    ));
    Ok(client)
}

/// One connection attempt: [`ConnectError::Unreachable`] when no server
/// answers (for command-line tools that should not wait).
pub async fn connect_once(config: &NatsConfig, name: &str) -> Result<Client, ConnectError> {
    let addrs = config.server_addrs().map_err(ConnectError::BadAddress)?;
    let servers = config.servers_for_log();
    let options = options(config, name).await?;
    options
        .connect(addrs)
        .await
        .map_err(|source| match source.kind() {
            ConnectErrorKind::AuthorizationViolation
            | ConnectErrorKind::Authentication
            | ConnectErrorKind::Tls
            | ConnectErrorKind::ServerParse => ConnectError::Refused { servers, source },
            _ => ConnectError::Unreachable { servers, source },
        })
}

/// One connection attempt to every configured server at once, keeping the
/// first that completes: a hung server (one that accepts TCP and never
/// says hello) costs nothing, where [`connect_once`] would wait out its
/// connect timeout before trying the next. For short-lived tools such as
/// `status`; the client reconnects only to that server and the ones it
/// gossips. When none connects, a refusal is reported before an
/// unreachable server (it is the one the user can fix).
pub async fn connect_first(config: &NatsConfig, name: &str) -> Result<Client, ConnectError> {
    use futures::StreamExt;
    if config.servers.len() < 2 {
        return connect_once(config, name).await;
    }
    let mut attempts: futures::stream::FuturesUnordered<_> = config
        .servers
        .iter()
        .map(|server| {
            let one = config.clone().with_servers([server.clone()]);
            async move { connect_once(&one, name).await }
        })
        .collect();
    let mut failed: Option<ConnectError> = None;
    while let Some(attempt) = attempts.next().await {
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) => {
                let keep = matches!(
                    (&failed, &e),
                    (None, _)
                        | (
                            Some(ConnectError::Unreachable { .. }),
                            ConnectError::Refused { .. }
                        )
                );
                if keep {
                    failed = Some(e);
                }
            }
        }
    }
    Err(match failed {
        Some(ConnectError::Unreachable { source, .. }) => ConnectError::Unreachable {
            servers: config.servers_for_log(),
            source,
        },
        Some(ConnectError::Refused { source, .. }) => ConnectError::Refused {
            servers: config.servers_for_log(),
            source,
        },
        Some(other) => other,
        None => ConnectError::BadAddress("no server configured".into()),
    })
}

async fn options(config: &NatsConfig, name: &str) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::Credentials {
                    path: path.clone(),
                    source,
                })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let log_servers = config.servers_for_log();
    let service = name.to_owned();
    Ok(options
        .name(name)
        .require_tls(config.tls.required)
        .connection_timeout(config.connect_timeout)
        .request_timeout(Some(config.request_timeout))
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let servers = log_servers.clone();
            let service = service.clone();
            async move {
                m::NatsEvent {
                    service: &service,
                    servers: &servers,
                    event: &event,
                }
                .emit()
            }
        }))
}

/// Logs the server `client` is connected to, and each change of it (a
/// cluster node died, the client moved to another), until `shutdown`.
pub async fn watch_server(client: Client, service: String, shutdown: CancellationToken) {
    let mut current = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !is_connected(&client) {
            continue;
        }
        let info = client.server_info();
        if info.server_id.is_empty() {
            continue;
        }
        // A server without a configured name is named by its id, which a
        // restart changes: it is then known by its address.
        let named = !info.server_name.is_empty() && info.server_name != info.server_id;
        let at = format!("{}:{}", info.host, info.port);
        let identity = if named {
            format!("{} ({at})", info.server_name)
        } else {
            at.clone()
        };
        if identity == current {
            continue;
        }
        if current.is_empty() {
            tracing::info!(service, server = %identity, version = %info.version, "connected to NATS server");
        } else {
            crate::metrics::server_changed(&service);
            tracing::warn!(service, server = %identity, before = %current, "now connected to another NATS server");
        }
        current = identity;
    }
}

/// Backoff between reconnect attempts: 0 for the first, then doubling from
/// 100 ms up to 2 s, so a restarted server is found again within about 2 s.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = attempts.saturating_sub(2).min(5) as u32;
    Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
}

/// Whether the server at `url` accepts a TCP connection within 500 ms
/// (no NATS handshake): for tools deciding which servers are up.
pub async fn answers(url: &str) -> bool {
    let Ok(addr) = url.parse::<ServerAddr>() else {
        return false;
    };
    let target = format!("{}:{}", addr.host(), addr.port());
    matches!(
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(target)
        )
        .await,
        Ok(Ok(_))
    )
}

/// What the server refused this process (its "Permissions Violation for
/// Publish to X" errors, each once, at most 32): a tool whose request
/// timed out or whose read found nothing can say that the user may not,
/// instead of blaming a service that is not running.
static PERMISSION_VIOLATIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn note_server_error(text: &str) {
    let Some(at) = text.find("Permissions Violation") else {
        return;
    };
    let what = text[at..].trim().to_owned();
    let mut seen = PERMISSION_VIOLATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen.len() < 32 && !seen.contains(&what) {
        seen.push(what);
    }
}

/// The permission violations the server reported to this process so far,
/// e.g. `Permissions Violation for Publish to "rg.sim.faults"`.
pub fn permission_violations() -> Vec<String> {
    PERMISSION_VIOLATIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Whether a client is connected now.
pub fn is_connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_is_bounded() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(100));
        assert_eq!(reconnect_delay(3), Duration::from_millis(200));
        assert_eq!(reconnect_delay(50), Duration::from_secs(2));
    }

    #[test]
    fn credentials_in_urls_are_masked() {
        let c = NatsConfig::default().with_servers(["nats://u:secret@h:4222", "nats://h2:4222"]);
        assert_eq!(c.servers_for_log(), "nats://***@h:4222,nats://h2:4222");
    }
}
