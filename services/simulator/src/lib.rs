//! The DNS simulator: a DNS server (hickory-server, UDP and TCP) answering
//! AWS-style names `<service>.<region>.<domain>` for simulated regions and
//! services, with faults an operator injects at run time.
//!
//! - Consumes: fault requests on `<p>.sim.faults` (core NATS
//!   request/reply, `FaultRequest` → `FaultReply`), and an optional
//!   scenario file that schedules faults.
//! - Publishes: nothing on the bus; it answers DNS.
//! - Faults: added latency (fixed + jitter), NXDOMAIN, SERVFAIL, REFUSED,
//!   empty answer (NOERROR without records, the October 2025 DynamoDB
//!   failure) and no answer at all, per region, per service, both, or per
//!   exact name, optionally for a limited time and a share of queries.
//! - Guarantees: the DNS side never depends on NATS (it answers while NATS
//!   is away); a bad fault request gets a reply saying why, never a crash.
//!   On shutdown it stops accepting queries; in-flight delayed answers are
//!   abandoned (the clients time out, as they would with a real outage).
//!
//! # Layout
//! - [`config`] — the `[simulator]` section.
//! - [`zone`] — which names exist and their addresses.
//! - [`faults`] — fault matching and the fault table.
//! - [`noise`] — background noise for soak tests (heavy-tailed delay, lost
//!   answers, SERVFAIL).
//! - [`scenario`] — scenario files.
//! - [`dns`] — the request handler.
//! - [`telemetry`] — metrics.
//! - `state`, `control` (private) — shared state; NATS requests, scenario playback, expiry.
#![warn(missing_docs)]

pub mod config;
mod control;
pub mod dns;
pub mod faults;
pub mod noise;
pub mod scenario;
mod state;
pub mod telemetry;
pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rg_bus::NatsConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use noise::NoiseConfig;
pub use telemetry::{FAULTS_ACTIVE, FAULT_CHANGES, QUERIES};

/// Idle TCP connections are closed after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// A simulator with its sockets bound, ready to [`Simulator::run`].
pub struct Simulator {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    state: Arc<state::State>,
    scenario: Option<(scenario::Scenario, String)>,
    control: bool,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .field("control", &self.control)
            .finish()
    }
}

impl Simulator {
    /// Binds UDP and TCP on `config.listen` (port 0: a free port, the same
    /// for both) and loads the scenario.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let (udp, tcp) = bind_pair(config.listen).await?;
        let addr = udp.local_addr()?;
        let scenario = match &config.scenario {
            Some(path) => Some((scenario::Scenario::load(path)?, path.display().to_string())),
            None => None,
        };
        let zone = zone::Zone::new(&config.regions, &config.services, &config.domain);
        let domain = config.domain.trim_end_matches('.').to_lowercase();
        Ok(Self {
            udp,
            tcp,
            addr,
            state: Arc::new(state::State::new(
                zone,
                domain,
                config.ttl,
                config.noise.clone(),
            )),
            scenario,
            control: config.control,
        })
    }

    /// The address it answers DNS on (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves DNS (and fault requests when `control` is on) until
    /// `shutdown`.
    pub async fn run(self, nats: NatsConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
        telemetry::describe();
        let started = tokio::time::Instant::now();
        let mut server = hickory_server::Server::new(dns::Handler {
            state: self.state.clone(),
        });
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_TIMEOUT, 1024);
        tracing::info!(dns = %self.addr, "answering DNS on udp://{0} and tcp://{0}", self.addr);

        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(control::expire(self.state.clone(), shutdown.clone()));
        if let Some((scenario, origin)) = self.scenario {
            tasks.spawn(control::play(
                self.state.clone(),
                scenario,
                origin,
                started,
                shutdown.clone(),
            ));
        }
        let control = self.control.then(|| {
            tokio::spawn(control::serve_requests(
                self.state.clone(),
                nats,
                shutdown.clone(),
            ))
        });
        tasks.close();

        let stop = server.shutdown_token().clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            stop.cancel();
        });
        let served = server.block_until_done().await;
        // The DNS side ended: by shutdown, or because a socket failed.
        shutdown.cancel();
        tasks.wait().await;
        if let Some(control) = control {
            match control.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = format!("{e:#}"), "fault control stopped"),
                Err(e) => tracing::error!(error = %e, "fault control task failed"),
            }
        }
        served.context("serving DNS")?;
        Ok(())
    }
}

/// Binds UDP, then TCP on the same port. With port 0, retries when the
/// port the kernel gave UDP is taken for TCP.
/// Receive buffer asked for on the DNS UDP socket, bytes.
const UDP_RECV_BUFFER: usize = 4 << 20;

async fn bind_pair(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding DNS (UDP) on {listen}"))?;
        // Probers of every region start their rounds on the same wall-clock
        // boundary: a burst of thousands of queries at once. The default
        // receive buffer (~200 KiB, a few hundred datagrams) would drop
        // most of it; ask for 4 MiB (the kernel caps it at rmem_max).
        if let Err(e) = socket2::SockRef::from(&udp).set_recv_buffer_size(UDP_RECV_BUFFER) {
            tracing::warn!(error = %e, "could not enlarge the DNS receive buffer; bursts may be dropped");
        }
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 => last_error = Some(e),
            Err(e) => return Err(e).with_context(|| format!("binding DNS (TCP) on {addr}")),
        }
    }
    Err(last_error.map_or_else(
        || anyhow::anyhow!("no port free for UDP and TCP"),
        anyhow::Error::from,
    ))
    .context("binding DNS on a free port")
}

/// Binds and runs a simulator until `shutdown`.
pub async fn run(
    config: Config,
    nats: NatsConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let simulator = Simulator::bind(&config).await?;
    simulator.run(nats, shutdown).await
}
