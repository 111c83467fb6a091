//! The services in-process (each with its own shutdown token) and their
//! test configs: simulator, probers, detector, cascade, gateway.

use super::*;

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

/// Waits until the gateway at `http` counts `endpoints` endpoints on its
/// dashboard.
pub(crate) async fn wait_dashboard_endpoints(
    http: SocketAddr,
    endpoints: f64,
    deadline: std::time::Duration,
) {
    rg_testkit::wait_until(
        &format!("{endpoints} endpoints on the dashboard"),
        deadline,
        || async move {
            match snapshot(http).await {
                Some(s) if num(&s["summary"]["total_endpoints"]) == endpoints => {
                    rg_testkit::Waited::Done(())
                }
                other => {
                    rg_testkit::Waited::NotYet(format!("{:?}", other.map(|s| s["summary"].clone())))
                }
            }
        },
    )
    .await;
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
