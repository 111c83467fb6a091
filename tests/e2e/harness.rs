//! Shared setup for the e2e tests: a running simulator, probers, a decoding
//! consumer of the health stream, and fault requests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use rg_bus::NatsConfig;
use rg_proto::v1::{
    fault_request::Action, FaultKind, FaultReply, FaultRequest, FaultSpec, HealthEvent,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// NATS config pointing at a test server.
pub(crate) fn nats_config(url: &str) -> NatsConfig {
    let mut c = NatsConfig::default().with_servers([url]);
    c.request_timeout = Duration::from_secs(2);
    c.connect_timeout = Duration::from_secs(1);
    c
}

/// A service task with its own shutdown token.
pub(crate) struct Running {
    pub(crate) token: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub(crate) fn new(token: CancellationToken, task: JoinHandle<anyhow::Result<()>>) -> Self {
        Self {
            token,
            task: Some(task),
        }
    }

    /// Cancels and waits (bounded) for a clean return.
    pub(crate) async fn stop(mut self) {
        self.token.cancel();
        let Some(task) = self.task.take() else { return };
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("service returned an error on shutdown: {e:#}"),
            Ok(Err(e)) => panic!("service task panicked: {e}"),
            Err(_) => panic!("service did not stop within 15s of shutdown"),
        }
    }
}

impl Running {
    /// Aborts the task at its next await, like `kill -9` of a process: no
    /// drain, nothing cleaned up.
    pub(crate) async fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _aborted = task.await;
        }
    }

    /// True when the service has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the service to end by itself (without cancelling it) and
    /// returns its result; panics if it is still running after `deadline`.
    pub(crate) async fn finished_within(mut self, deadline: Duration) -> anyhow::Result<()> {
        let task = self.task.take().expect("task");
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!("service task panicked: {e}"),
            Err(_) => panic!("service still running after {deadline:?}"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Starts the simulator in-process on a free port; returns its DNS address.
pub(crate) async fn start_simulator(nats: &NatsConfig) -> (SocketAddr, Running) {
    start_simulator_with(nats, rg_simulator::Config::default()).await
}

/// Starts a simulator with `config` (its listen address replaced by a free
/// port); returns its DNS address.
pub(crate) async fn start_simulator_with(
    nats: &NatsConfig,
    config: rg_simulator::Config,
) -> (SocketAddr, Running) {
    let config = rg_simulator::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let sim = rg_simulator::Simulator::bind(&config)
        .await
        .expect("bind simulator");
    let addr = sim.dns_addr();
    let token = CancellationToken::new();
    let task = tokio::spawn(sim.run(nats.clone(), token.clone()));
    if config.control {
        simulator_ready(nats).await;
    }
    (addr, Running::new(token, task))
}

/// Waits (20 s at most) until a simulator answers fault requests on the
/// NATS server of `nats` (as its user): it subscribes only once connected.
pub(crate) async fn simulator_ready(nats: &NatsConfig) {
    let options = match (&nats.user, &nats.password) {
        (Some(user), Some(password)) => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    let client = options
        .connect(nats.servers[0].as_str())
        .await
        .expect("connect to NATS");
    rg_testkit::wait_until(
        "the simulator answers fault requests",
        Duration::from_secs(20),
        || async {
            let list = rg_proto::v1::FaultRequest {
                action: Some(rg_proto::v1::fault_request::Action::List(true)),
            };
            match client
                .request("rg.sim.faults", prost::Message::encode_to_vec(&list).into())
                .await
            {
                Ok(_) => rg_testkit::Waited::Done(()),
                Err(e) => rg_testkit::Waited::NotYet(e.to_string()),
            }
        },
    )
    .await;
}

/// A prober config for `region` probing through `resolver` every `interval`.
pub(crate) fn prober_config(
    region: &str,
    resolver: SocketAddr,
    interval: Duration,
) -> rg_prober::Config {
    rg_prober::Config {
        region: Some(region.into()),
        vantage: Some(format!("{region}-test")),
        resolvers: vec![resolver.to_string()],
        interval,
        timeout: interval.mul_f32(0.4),
        ..Default::default()
    }
}

/// Starts a prober in-process.
pub(crate) fn start_prober(config: rg_prober::Config, nats: &NatsConfig) -> Running {
    let token = CancellationToken::new();
    let task = tokio::spawn(rg_prober::run(config, nats.clone(), token.clone()));
    Running::new(token, task)
}

/// The simulator and a prober for each default region (us-east-1,
/// us-west-2, eu-west-1), probing every `interval`.
pub(crate) async fn start_regions(
    nats: &NatsConfig,
    interval: Duration,
) -> (Running, Vec<Running>) {
    let (dns, simulator) = start_simulator(nats).await;
    let probers = rg_proto::domain::DEFAULT_REGIONS
        .map(|region| start_prober(prober_config(region, dns, interval), nats))
        .into_iter()
        .collect();
    (simulator, probers)
}

/// Health events as decoded by a durable JetStream consumer of the
/// health stream (so what arrives here was stored in RG_HEALTH).
pub(crate) struct HealthFeed {
    rx: mpsc::UnboundedReceiver<HealthEvent>,
    _task: JoinHandle<()>,
}

impl HealthFeed {
    /// Opens a durable consumer on `<p>.health.>` (waits for the streams).
    pub(crate) async fn open(nats: &NatsConfig, durable: &str) -> Self {
        let token = CancellationToken::new();
        let bus = rg_bus::Bus::connect(nats, "e2e-feed", &token)
            .await
            .expect("bus");
        let spec = rg_bus::consume::ConsumerSpec::new(
            bus.subjects.stream(rg_bus::Stream::Health),
            durable,
            bus.subjects.health_all(),
        );
        let consumer = rg_bus::consume::durable(&bus.js, &spec)
            .await
            .expect("durable consumer");
        let (tx, rx) = mpsc::unbounded_channel();
        let dead = bus.dead_letter(durable);
        let task = tokio::spawn(async move {
            let _ignored =
                rg_bus::consume::run::<HealthEvent, _, _>(consumer, dead, token, |event, _| {
                    let _ignored = tx.send(event);
                    std::future::ready(rg_bus::consume::Outcome::Handled)
                })
                .await;
        });
        Self { rx, _task: task }
    }

    /// Waits for the first event matching `pred`; panics after `deadline`
    /// with the last event seen.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&HealthEvent) -> bool,
    ) -> HealthEvent {
        let mut last: Option<HealthEvent> = None;
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let next = tokio::time::timeout_at(end, self.rx.recv()).await;
            match next {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(e)) => last = Some(e),
                Ok(None) => panic!("health feed closed while waiting for {what}"),
                Err(_) => {
                    panic!("no event for {what} within {deadline:?}; last event seen: {last:?}")
                }
            }
        }
    }

    /// The next event, or `None` when none arrives within `quiet`.
    pub(crate) async fn next_within(&mut self, quiet: Duration) -> Option<HealthEvent> {
        tokio::time::timeout(quiet, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Sends a fault request to the simulator over NATS.
pub(crate) async fn fault_request(client: &async_nats::Client, action: Action) -> FaultReply {
    let reply = client
        .request(
            "rg.sim.faults",
            FaultRequest {
                action: Some(action),
            }
            .encode_to_vec()
            .into(),
        )
        .await
        .expect("fault request answered");
    FaultReply::decode(reply.payload.as_ref()).expect("fault reply decodes")
}

/// Injects a fault on one service of one region.
pub(crate) async fn inject(
    client: &async_nats::Client,
    region: &str,
    service: &str,
    kind: FaultKind,
    latency_ms: u32,
) -> FaultReply {
    let reply = fault_request(
        client,
        Action::Inject(FaultSpec {
            region: region.into(),
            service: service.into(),
            kind: kind as i32,
            latency_ms,
            ..Default::default()
        }),
    )
    .await;
    assert!(reply.error.is_empty(), "inject refused: {}", reply.error);
    reply
}

/// Clears every fault.
pub(crate) async fn clear_all(client: &async_nats::Client) {
    let reply = fault_request(client, Action::Clear(FaultSpec::default())).await;
    assert!(reply.error.is_empty(), "clear refused: {}", reply.error);
    assert!(
        reply.active.is_empty(),
        "faults left after clear: {:?}",
        reply.active
    );
}

/// Wall clock in unix ms.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Round settings for tests: rounds decided quickly.
pub(crate) fn quick_rounds() -> rg_rounds::RoundSettings {
    rg_rounds::RoundSettings {
        settle: Duration::from_millis(150),
        round_timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

/// A detector config for tests: rounds decided quickly, a short warm-up.
pub(crate) fn detector_config() -> rg_detector::Config {
    let mut c = rg_detector::Config {
        rounds: quick_rounds(),
        renotify: Duration::ZERO,
        ..Default::default()
    };
    c.anomaly.min_history_rows = 35;
    c.anomaly.resolve_after = 2;
    c
}

/// Starts a detector in-process.
pub(crate) fn start_detector(config: rg_detector::Config, nats: &NatsConfig) -> Running {
    let token = CancellationToken::new();
    let task = tokio::spawn(rg_detector::run(config, nats.clone(), token.clone()));
    Running::new(token, task)
}

/// Messages as published on a subject (a core subscription), decoded, each
/// with the subject it came on.
pub(crate) struct Feed<M> {
    sub: async_nats::Subscriber,
    pub(crate) seen: Vec<(String, M)>,
}

/// Alerts, from `rg.alerts.>`.
pub(crate) type AlertFeed = Feed<rg_proto::v1::Alert>;

impl AlertFeed {
    /// Subscribes to `rg.alerts.>` (before the alerts are expected).
    pub(crate) async fn open(url: &str) -> Self {
        Self::subscribe(url, "rg.alerts.>").await
    }

    /// As [`AlertFeed::open`], as a NATS user.
    pub(crate) async fn open_as(url: &str, user: &str, password: &str) -> Self {
        Self::subscribe_as(url, "rg.alerts.>", user, password).await
    }
}

impl<M: Message + Default + Clone + std::fmt::Debug> Feed<M> {
    /// Subscribes to `subject`.
    pub(crate) async fn subscribe(url: &str, subject: &str) -> Self {
        let client = async_nats::connect(url).await.expect("connect");
        Self::on(client, subject).await
    }

    /// Subscribes to `subject` as a NATS user.
    pub(crate) async fn subscribe_as(url: &str, subject: &str, user: &str, password: &str) -> Self {
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .connect(url)
                .await
                .expect("connect");
        Self::on(client, subject).await
    }

    async fn on(client: async_nats::Client, subject: &str) -> Self {
        let sub = client
            .subscribe(subject.to_owned())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        Self {
            sub,
            seen: Vec::new(),
        }
    }

    /// Waits for the first message matching `pred` (keeping every message
    /// seen).
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&str, &M) -> bool,
    ) -> (String, M) {
        if let Some(hit) = self.seen.iter().find(|(s, m)| pred(s, m)) {
            return hit.clone();
        }
        let end = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(end, futures::StreamExt::next(&mut self.sub)).await {
                Ok(Some(m)) => {
                    let message = M::decode(m.payload.as_ref()).expect("message decodes");
                    let subject = m.subject.to_string();
                    self.seen.push((subject.clone(), message.clone()));
                    if pred(&subject, &message) {
                        return (subject, message);
                    }
                }
                Ok(None) => panic!("subscription closed while waiting for {what}"),
                Err(_) => panic!(
                    "nothing for {what} within {deadline:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Collects whatever arrives within `quiet`.
    pub(crate) async fn drain_for(&mut self, quiet: Duration) {
        let end = tokio::time::Instant::now() + quiet;
        while let Ok(Some(m)) =
            tokio::time::timeout_at(end, futures::StreamExt::next(&mut self.sub)).await
        {
            if let Ok(message) = M::decode(m.payload.as_ref()) {
                self.seen.push((m.subject.to_string(), message));
            }
        }
    }
}

/// A cascade config for tests: rounds decided quickly.
pub(crate) fn cascade_config() -> rg_cascade::Config {
    rg_cascade::Config {
        rounds: quick_rounds(),
        ..Default::default()
    }
}

/// Starts a cascade service in-process.
pub(crate) fn start_cascade(config: rg_cascade::Config, nats: &NatsConfig) -> Running {
    let token = CancellationToken::new();
    let task = tokio::spawn(rg_cascade::run(config, nats.clone(), token.clone()));
    Running::new(token, task)
}

/// A gateway config for tests: free ports, snapshots every `interval`, the
/// repository's dashboard.
pub(crate) fn gateway_config(interval: Duration) -> rg_gateway::Config {
    rg_gateway::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        interval,
        stale_after: interval * 3,
        dashboard_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/dist"),
        ..Default::default()
    }
}

/// A gateway running in-process, with its addresses.
pub(crate) struct GatewayProcess {
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    pub(crate) running: Running,
}

/// Binds and starts a gateway in-process.
pub(crate) async fn start_gateway(config: rg_gateway::Config, nats: &NatsConfig) -> GatewayProcess {
    let gateway = rg_gateway::Gateway::bind(config)
        .await
        .expect("bind gateway");
    let (http, grpc) = (gateway.http_addr(), gateway.grpc_addr());
    let token = CancellationToken::new();
    let task = tokio::spawn(gateway.run(nats.clone(), token.clone()));
    GatewayProcess {
        http,
        grpc,
        running: Running::new(token, task),
    }
}

/// The gateway's `/api/snapshot` as JSON, once it has one.
pub(crate) async fn snapshot(http: SocketAddr) -> Option<serde_json::Value> {
    let r = rg_testkit::http::get(http, "/api/snapshot").await?;
    if r.status != 200 {
        return None;
    }
    serde_json::from_str(&r.body).ok()
}

/// A JSON number that pbjson may write as a string (64-bit integers).
pub(crate) fn num(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
        serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        // proto3 JSON leaves zero values out.
        serde_json::Value::Null => 0.0,
        other => panic!("not a number: {other}"),
    }
}

/// `regionguard up` as a user runs it, in a directory of its own.
pub(crate) struct Up {
    pub(crate) child: tokio::process::Child,
    pub(crate) stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// What it printed until it said it is up.
    pub(crate) printed: String,
    pub(crate) config: std::path::PathBuf,
    /// Holds the config and state until the test ends.
    pub(crate) _dir: tempfile::TempDir,
}

/// Ports and a config for a local `up`: its own NATS (started by `up`),
/// simulator and gateway ports, a 1 s probe interval; `extra` is appended.
pub(crate) struct UpPorts {
    pub(crate) nats: u16,
    pub(crate) dns: u16,
    pub(crate) http: u16,
}

impl Up {
    /// Writes the config, starts `up` with `args`, and waits (90 s at most)
    /// until it says it is up.
    pub(crate) async fn start(regions: &[&str], extra: &str, args: &[&str]) -> (Self, UpPorts) {
        use tokio::io::AsyncBufReadExt;
        let ports = UpPorts {
            nats: rg_testkit::free_port(),
            dns: rg_testkit::free_port(),
            http: rg_testkit::free_port(),
        };
        let grpc = rg_testkit::free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("regionguard.toml");
        let regions = regions
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "[nats]\nservers = [\"nats://127.0.0.1:{}\"]\n\
                 [prober]\nregions = [{regions}]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
                 [simulator]\nlisten = \"127.0.0.1:{}\"\n\
                 [gateway]\nlisten = \"127.0.0.1:{}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\ninterval = \"1s\"\n{extra}",
                ports.nats, ports.dns, ports.http
            ),
        )
        .unwrap();
        let log = dir.path().join("up.log");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .arg("up")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(args)
            .env_remove("RG_CONFIG")
            .env_remove("RG_NATS_URL")
            .env("RG_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Vec::new();
        let ready = tokio::time::timeout(Duration::from_secs(90), async {
            while let Ok(Some(line)) = stdout.next_line().await {
                let done = line.contains("regionguard is up");
                printed.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "up did not come up:\n{}\n--- stderr ---\n{}",
            printed.join("\n"),
            rg_testkit::tail(&log, 40)
        );
        let up = Self {
            child,
            stdout,
            printed: printed.join("\n"),
            config,
            _dir: dir,
        };
        (up, ports)
    }

    /// Runs `regionguard <args> --config <its config>`; its stdout.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_regionguard"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RG_CONFIG")
            .env("USER", "tester")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "regionguard {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM; waits (40 s at most) and returns the exit status and what
    /// it printed while stopping.
    pub(crate) async fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("up stops within 40s")
            .unwrap();
        let mut rest = Vec::new();
        while let Ok(Some(line)) = self.stdout.next_line().await {
            rest.push(line);
        }
        (status, rest.join("\n"))
    }
}

/// The system as processes of the real binary (each with its own log and
/// metrics port), for tests that `kill -9` a service, restart NATS under
/// it, or start it before NATS: the simulator, a prober per default region,
/// the detector, the cascade service, the failover manager (plan mode) and
/// the gateway; and the notifier when the config gives it sinks.
pub(crate) struct Processes {
    nats_url: String,
    /// The NATS user the test's checks connect as, when the server has users.
    observer: Option<(String, String)>,
    pub(crate) config: std::path::PathBuf,
    pub(crate) http: SocketAddr,
    metrics: std::collections::BTreeMap<String, SocketAddr>,
    procs: std::collections::BTreeMap<String, rg_testkit::ServiceProcess>,
    /// Extra environment of each service, by name.
    env_for: Box<EnvFor>,
    pub(crate) dir: tempfile::TempDir,
}

/// Extra environment variables of a service, given its name.
type EnvFor = dyn Fn(&str) -> Vec<(String, String)>;

/// Service names of [`Processes`] and the config section of each.
pub(crate) const SERVICES: [(&str, &str); 8] = [
    ("simulator", "SIMULATOR"),
    ("prober-us-east-1", "PROBER"),
    ("prober-us-west-2", "PROBER"),
    ("prober-eu-west-1", "PROBER"),
    ("detector", "DETECTOR"),
    ("cascade", "CASCADE"),
    ("failover", "FAILOVER"),
    ("gateway", "GATEWAY"),
];

impl Processes {
    /// Writes the config (NATS at `nats_url`, 1 s rounds, quick round
    /// decisions, then `extra` TOML) and starts every service of
    /// [`SERVICES`] plus those of `more` (e.g. `("notifier", "NOTIFIER")`).
    /// Returns at once: NATS may not be there yet.
    pub(crate) fn start(nats_url: &str, extra: &str, more: &[(&str, &str)]) -> Self {
        Self::start_with(nats_url, extra, more, |_| Vec::new())
    }

    /// As [`Processes::start`], with `env_for(name)` added to each
    /// service's environment (e.g. its own NATS user).
    pub(crate) fn start_with(
        nats_url: &str,
        extra: &str,
        more: &[(&str, &str)],
        env_for: impl Fn(&str) -> Vec<(String, String)> + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dns = rg_testkit::free_port();
        let http = SocketAddr::from(([127, 0, 0, 1], rg_testkit::free_port()));
        let grpc = rg_testkit::free_port();
        let config = dir.path().join("regionguard.toml");
        std::fs::write(
            &config,
            format!(
                "[nats]\nservers = [\"{nats_url}\"]\nrequest_timeout = \"2s\"\nconnect_timeout = \"1s\"\n\
                 [simulator]\nlisten = \"127.0.0.1:{dns}\"\n\
                 [prober]\ninterval = \"1s\"\ntimeout = \"400ms\"\nresolvers = [\"127.0.0.1:{dns}\"]\n\
                 [rounds]\nsettle = \"150ms\"\nround_timeout = \"3s\"\n\
                 [gateway]\nlisten = \"{http}\"\ngrpc_listen = \"127.0.0.1:{grpc}\"\ninterval = \"1s\"\n\
                 [failover]\nmode = \"plan\"\n{extra}\n"
            ),
        )
        .unwrap();
        let mut me = Self {
            nats_url: nats_url.to_owned(),
            observer: None,
            config,
            http,
            metrics: Default::default(),
            procs: Default::default(),
            env_for: Box::new(env_for),
            dir,
        };
        for (name, section) in SERVICES.iter().chain(more) {
            me.spawn(name, section);
        }
        me
    }

    fn spawn(&mut self, name: &str, section: &str) {
        let metrics = SocketAddr::from(([127, 0, 0, 1], rg_testkit::free_port()));
        let config = self.config.display().to_string();
        let mut args = vec![name.split('-').next().unwrap_or(name), "--config", &config];
        let vantage;
        if let Some(region) = name.strip_prefix("prober-") {
            vantage = format!("{region}-p");
            args.extend(["--region", region, "--vantage", &vantage]);
        }
        let mut env = vec![
            (format!("RG_{section}__METRICS_LISTEN"), metrics.to_string()),
            ("RG_LOG".to_owned(), "info".to_owned()),
        ];
        env.extend((self.env_for)(name));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let process = rg_testkit::ServiceProcess::start(
            name,
            std::path::Path::new(env!("CARGO_BIN_EXE_regionguard")),
            &args,
            &env,
            self.dir.path(),
        );
        self.metrics.insert(name.to_owned(), metrics);
        self.procs.insert(name.to_owned(), process);
    }

    /// The checks of [`Processes::wait_all_healthy`] connect as this user.
    pub(crate) fn observed_as(mut self, user: &str, password: &str) -> Self {
        self.observer = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// One of the services.
    pub(crate) fn get(&mut self, name: &str) -> &mut rg_testkit::ServiceProcess {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Every service, by name.
    pub(crate) fn all(
        &mut self,
    ) -> impl Iterator<Item = (&String, &mut rg_testkit::ServiceProcess)> {
        self.procs.iter_mut()
    }

    /// A service's `/metrics` text ("" when it does not answer).
    pub(crate) async fn metrics(&self, name: &str) -> String {
        let addr = self.metrics[name];
        rg_testkit::http::get(addr, "/metrics")
            .await
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// Waits (60 s at most) until the gateway shows every endpoint of the
    /// three regions healthy and every durable consumer of the services
    /// started exists (the failover manager's and the notifier's consume
    /// only what is published after they first start).
    pub(crate) async fn wait_all_healthy(&self) {
        let http = self.http;
        rg_testkit::wait_until(
            "every endpoint healthy",
            Duration::from_secs(60),
            || async move {
                let Some(s) = snapshot(http).await else {
                    return rg_testkit::Waited::NotYet("no snapshot".into());
                };
                let summary = &s["summary"];
                let (total, healthy) = (num(&summary["total_endpoints"]), num(&summary["healthy"]));
                if total == 21.0 && healthy == 21.0 {
                    rg_testkit::Waited::Done(())
                } else {
                    rg_testkit::Waited::NotYet(format!("{summary}"))
                }
            },
        )
        .await;
        let mut wanted = vec![
            ("RG_HEALTH", "detector"),
            ("RG_HEALTH", "cascade"),
            ("RG_DECISIONS", "failover"),
            ("RG_DECISIONS", "failover-approvals"),
        ];
        if self.procs.contains_key("notifier") {
            wanted.extend([
                ("RG_ALERTS", "notifier"),
                ("RG_DECISIONS", "notifier-decisions"),
            ]);
        }
        let (url, observer) = (&self.nats_url, &self.observer);
        let wanted = &wanted;
        rg_testkit::wait_until(
            "every durable consumer",
            Duration::from_secs(60),
            || async move {
                let options = match observer {
                    Some((user, password)) => async_nats::ConnectOptions::with_user_and_password(
                        user.clone(),
                        password.clone(),
                    ),
                    None => async_nats::ConnectOptions::new(),
                };
                let client = match options.connect(url.as_str()).await {
                    Ok(c) => c,
                    Err(e) => return rg_testkit::Waited::NotYet(format!("no NATS: {e}")),
                };
                let js = async_nats::jetstream::new(client);
                let mut missing = Vec::new();
                for (stream, durable) in wanted {
                    let found = match js.get_stream(*stream).await {
                        Ok(s) => s
                            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(durable)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    };
                    if !found {
                        missing.push(*durable);
                    }
                }
                if missing.is_empty() {
                    rg_testkit::Waited::Done(())
                } else {
                    rg_testkit::Waited::NotYet(format!("missing {missing:?}"))
                }
            },
        )
        .await;
    }
}

impl Processes {
    /// Stops every service still running with SIGTERM and checks that each
    /// exits with 0 within 15 s (a clean drain).
    pub(crate) fn stop_all(&mut self) {
        for (name, p) in self.all() {
            if p.is_running() {
                let status = p.terminate(Duration::from_secs(15));
                assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
            }
        }
    }
}

/// What a DynamoDB outage in us-east-1 raises: the threshold alert and the
/// cascade alert, both firing.
pub(crate) struct Outage {
    pub(crate) threshold: rg_proto::v1::Alert,
    pub(crate) cascade: rg_proto::v1::Alert,
}

/// Injects a DynamoDB empty answer in us-east-1 and waits (20 s each) for
/// the critical threshold alert and the critical cascade alert.
pub(crate) async fn dynamodb_outage(client: &async_nats::Client, alerts: &mut AlertFeed) -> Outage {
    use rg_proto::v1::AlertState;
    inject(client, "us-east-1", "dynamodb", FaultKind::EmptyAnswer, 0).await;
    let (_, threshold) = alerts
        .wait_for("the threshold alert", Duration::from_secs(20), |s, a| {
            s == "rg.alerts.threshold.critical" && a.state() == AlertState::Firing
        })
        .await;
    let (_, cascade) = alerts
        .wait_for("the cascade alert", Duration::from_secs(20), |s, a| {
            s == "rg.alerts.cascade.critical" && a.state() == AlertState::Firing
        })
        .await;
    Outage { threshold, cascade }
}

/// Waits (20 s) for the failover plan on `decisions`.
pub(crate) async fn wait_plan(
    decisions: &mut Feed<rg_proto::v1::FailoverDecision>,
) -> rg_proto::v1::FailoverDecision {
    decisions
        .wait_for("the plan", Duration::from_secs(20), |s, _| {
            s == "rg.decisions.failover.planned"
        })
        .await
        .1
}

/// Waits (20 s) until `receiver` took a notice mentioning `text`.
pub(crate) async fn wait_notice(receiver: &rg_testkit::Receiver, text: &str) {
    rg_testkit::wait_until(
        "a notice at the webhook",
        Duration::from_secs(20),
        || async move {
            let taken = receiver.taken();
            if taken.iter().any(|t| t.body.contains(text)) {
                rg_testkit::Waited::Done(())
            } else {
                rg_testkit::Waited::NotYet(format!("{} notices", taken.len()))
            }
        },
    )
    .await;
}

/// The sum of a counter's samples in Prometheus text, over the label sets
/// that contain every one of `labels` (e.g. `consumer="detector"`).
pub(crate) fn counter(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every message of `stream` (matching `filter`) stored since `since`,
/// decoded, with its subject, read with an ordered consumer.
pub(crate) async fn read_stream<M>(
    url: &str,
    stream: rg_bus::Stream,
    filter: &str,
    since: std::time::SystemTime,
) -> Vec<(String, M)>
where
    M: Message + Default + Send + 'static,
{
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let subjects = rg_bus::Subjects::new("rg");
    let stop = CancellationToken::new();
    let mut rx = rg_bus::tail::spawn::<M>(
        js,
        subjects.stream(stream),
        filter.to_owned(),
        rg_bus::tail::From::Time(since),
        "e2e",
        stop.clone(),
    );
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(rg_bus::tail::Event::Message(m))) if m.history => {
                out.push((m.subject, m.message))
            }
            Ok(Some(rg_bus::tail::Event::Message(_))) => {}
            Ok(Some(rg_bus::tail::Event::CaughtUp)) => break,
            Ok(None) => panic!("the tail of {filter} ended"),
            Err(_) => panic!("reading {filter} back took over 30 s"),
        }
    }
    stop.cancel();
    out
}

/// Rounds of a soak test: `SOAK_ROUNDS`, default 180 (1 s rounds: half an
/// hour at the default 10 s interval). Longer runs are in BENCHMARKS.md.
pub(crate) fn soak_rounds() -> u64 {
    std::env::var("SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

/// Waits until the durable consumer `consumer` of `stream` exists (its
/// service subscribed).
pub(crate) async fn wait_for_consumer(url: &str, stream: &str, consumer: &str) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    rg_testkit::wait_until(
        &format!("consumer {consumer} on {stream}"),
        Duration::from_secs(30),
        || async {
            match js.get_stream(stream).await {
                Ok(s) if s.consumer_info(consumer).await.is_ok() => rg_testkit::Waited::Done(()),
                _ => rg_testkit::Waited::NotYet("no consumer yet".into()),
            }
        },
    )
    .await;
}

/// Waits until `consumer` (a detector's or cascade service's durable
/// consumer of RG_HEALTH) has acknowledged every event of at least `n`
/// rounds of each region it reads: it acks a round's events when it has
/// decided the round, so `n` rounds are decided.
pub(crate) async fn wait_rounds_decided(url: &str, consumer: &str, n: usize) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = rg_bus::Subjects::new("rg").stream(rg_bus::Stream::Health);
    let seen = std::sync::Mutex::new((0u64, BTreeMap::<String, BTreeSet<u64>>::new()));
    rg_testkit::wait_until(
        &format!("{n} rounds decided by {consumer}"),
        Duration::from_secs(60),
        || async {
            let Ok(mut s) = js.get_stream(&stream).await else {
                return rg_testkit::Waited::NotYet("no health stream".into());
            };
            let Ok(info) = s.consumer_info(consumer).await else {
                return rg_testkit::Waited::NotYet(format!("no consumer {consumer}"));
            };
            let floor = info.ack_floor.stream_sequence;
            let first = s.info().await.map(|i| i.state.first_sequence).unwrap_or(1);
            let (read, mut rounds) = std::mem::take(&mut *seen.lock().unwrap());
            let mut read = read.max(first.saturating_sub(1));
            while read < floor {
                read += 1;
                if let Ok(m) = s.get_raw_message(read).await {
                    if let Ok(e) = HealthEvent::decode(m.payload.as_ref()) {
                        rounds.entry(e.region).or_default().insert(e.round_id);
                    }
                }
            }
            let fewest = rounds.values().map(BTreeSet::len).min().unwrap_or(0);
            let state = format!(
                "ack floor {floor}; rounds decided per region: {:?}",
                rounds
                    .iter()
                    .map(|(r, s)| (r.clone(), s.len()))
                    .collect::<Vec<_>>()
            );
            *seen.lock().unwrap() = (read, rounds);
            if fewest >= n {
                rg_testkit::Waited::Done(())
            } else {
                rg_testkit::Waited::NotYet(state)
            }
        },
    )
    .await;
}
