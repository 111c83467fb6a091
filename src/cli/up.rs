//! `regionguard up`: the whole system on this machine, in one command.
//!
//! 1. NATS: the configured server if it answers, else a `nats-server -js`
//!    started here with its state in `<state-dir>/nats`.
//! 2. The DNS simulator, then one prober per configured region, then the
//!    detector, the cascade service, the gateway, the failover manager and,
//!    when `[[notifier.sinks]]` are configured, the notifier, each a child
//!    process of this one (`regionguard simulator`, `regionguard prober
//!    --region R`, `regionguard detector`, `regionguard cascade`,
//!    `regionguard gateway`, `regionguard failover`, `regionguard
//!    notifier`), their log lines prefixed with their name.
//! 3. Waits for each to be ready (the simulator answers DNS; each prober's
//!    first health event arrives; the gateway serves its first snapshot),
//!    printing progress and, at the end, the dashboard's URL.
//! 4. Ctrl-C (or SIGTERM) stops every child with SIGTERM, waits for them,
//!    and kills what is left after a grace period: no process is left behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Config, Globals};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Where a NATS server started here keeps its data.
    #[arg(long, default_value = ".rg-state", value_name = "DIR")]
    state_dir: PathBuf,
    /// Probe the resolvers of `prober.resolvers` instead of the simulator.
    #[arg(long)]
    real_dns: bool,
    /// An AWS emulator for the failover manager, e.g. a moto server
    /// (http://127.0.0.1:5000), to watch whole failovers locally (dummy
    /// credentials are used with it).
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<String>,
    /// How long to wait for each component to become ready.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    ready_timeout: Duration,
}

/// A child process with its name.
struct Component {
    name: String,
    child: Child,
    /// The child's stdin: dropped (closed) when `up` exits however it
    /// exits, which stops the child (`RG_STOP_WITH_PARENT`, `supervise`).
    _lifeline: Option<tokio::process::ChildStdin>,
}

pub(crate) async fn run(globals: Globals, args: UpArgs) -> ExitCode {
    // `--aws-endpoint` is part of the configuration `up` checks, as it is
    // of the failover manager it starts.
    let overrides = args
        .aws_endpoint
        .iter()
        .flat_map(|url| {
            [
                (
                    "RG_FAILOVER__AWS__ENDPOINT_URL".to_owned(),
                    format!("{url:?}"),
                ),
                (
                    "RG_FAILOVER__AWS__EMULATOR_CREDENTIALS".to_owned(),
                    "true".to_owned(),
                ),
            ]
        })
        .collect::<Vec<_>>();
    // Set once: `up` runs once per process.
    if CHILD_ENV.set(overrides.clone()).is_err() {
        tracing::debug!("child environment already set");
    }
    let config = match globals.load(overrides) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let mut components = Vec::new();
    let result = start_all(&globals, &config, &args, &mut components).await;
    let code = match result {
        Ok(()) => {
            println!("regionguard is up. Ctrl-C stops everything.");
            wait_for_stop(&mut components).await
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    };
    stop_all(&mut components).await;
    code
}

async fn start_all(
    globals: &Globals,
    config: &Config,
    args: &UpArgs,
    components: &mut Vec<Component>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the regionguard binary")?;

    // 1. NATS.
    // Every configured server goes to the services (they move between the
    // nodes of a cluster by themselves), not only the one that answered.
    let nats_url = match reachable_server(config).await {
        Some(url) => {
            let all = config.nats.servers.join(",");
            if config.nats.servers.len() > 1 {
                println!(
                    "[1/8] NATS: using the servers at {} ({} answers)",
                    config.nats.servers_for_log(),
                    masked(&url)
                );
            } else {
                println!("[1/8] NATS: using the server at {}", masked(&url));
            }
            all
        }
        None => {
            let url = start_nats(config, &args.state_dir, components).await?;
            println!(
                "[1/8] NATS: started nats-server -js at {url} (state in {})",
                args.state_dir.join("nats").display()
            );
            url
        }
    };

    // 2. The simulator.
    let dns = config.simulator.listen;
    let mut common: Vec<String> = vec!["--nats".into(), nats_url.clone()];
    if let Some(path) = &globals.config {
        common.push("--config".into());
        common.push(path.display().to_string());
    }
    let mut sim = Command::new(&exe);
    sim.arg("simulator").args(&common);
    components.push(spawn("simulator", sim)?);
    wait_dns_ready(dns, args.ready_timeout, components).await?;
    println!(
        "[2/8] simulator: answering DNS on {dns} for {} regions x {} services",
        config.simulator.regions.len(),
        config.simulator.services.len()
    );

    // 3. One prober per region.
    let client = rg_bus::connect::connect_once(
        &config.nats.clone().with_servers(nats_url.split(',')),
        "regionguard-up",
    )
    .await
    .context("connecting to NATS to watch for health events")?;
    let subjects = config.nats.subjects();
    for region in &config.prober.regions {
        let mut sub = client.subscribe(subjects.health_region(region)).await?;
        let mut prober = Command::new(&exe);
        prober.arg("prober").args(&common).args([
            "--region",
            region,
            "--vantage",
            &format!("{region}-local"),
        ]);
        if !args.real_dns {
            prober.args(["--resolver", &dns.to_string()]);
        }
        components.push(spawn(&format!("prober-{region}"), prober)?);
        match tokio::time::timeout(args.ready_timeout, sub.next()).await {
            Ok(Some(_)) => println!(
                "[3/8] prober {region}: publishing health events on {}",
                subjects.health_region(region)
            ),
            _ => bail!(
                "prober for {region} published no health event within {:?}",
                args.ready_timeout
            ),
        }
        check_alive(components)?;
    }

    // 4. The detector: ready once its durable consumer exists.
    let mut detector = Command::new(&exe);
    detector.arg("detector").args(&common);
    components.push(spawn("detector", detector)?);
    let js = async_nats::jetstream::new(client.clone());
    let health = subjects.stream(rg_bus::Stream::Health);
    let durable = match config.detector.regions.first() {
        Some(region) => format!("{}-{region}", config.detector.durable),
        None => config.detector.durable.clone(),
    };
    wait_for_consumer(&js, &health, &durable, args.ready_timeout, components).await?;
    println!("[4/8] detector: alerts on {}", subjects.alerts_all());

    // 5. The cascade service: ready once its consumer exists.
    let mut cascade = Command::new(&exe);
    cascade.arg("cascade").args(&common);
    components.push(spawn("cascade", cascade)?);
    wait_for_consumer(
        &js,
        &health,
        &config.cascade.durable,
        args.ready_timeout,
        components,
    )
    .await?;
    println!(
        "[5/8] cascade: outage alerts on {}, failover requests on {}",
        subjects.alert("cascade", "*"),
        subjects.failover("requested")
    );

    // 6. The gateway: ready once it has built its first snapshot.
    let dashboard_dir = super::services::locate_dashboard(
        &config.gateway.dashboard_dir,
        globals.config.as_deref(),
        &exe,
    );
    let mut gateway = Command::new(&exe);
    gateway
        .arg("gateway")
        .args(&common)
        .arg("--dashboard-dir")
        .arg(&dashboard_dir);
    components.push(spawn("gateway", gateway)?);
    let http = config.gateway.listen;
    wait_for_snapshot(http, args.ready_timeout, components).await?;
    let url = format!("http://{http}/");
    println!(
        "[6/8] gateway: dashboard on {url}, gRPC on {}",
        config.gateway.grpc_listen
    );
    if !dashboard_dir.join("index.html").is_file() {
        println!(
            "      (the dashboard is not built: run scripts/install-deps.sh; the REST API works)"
        );
    }

    // 7. The failover manager, in its configured mode (plan by default):
    //    ready once its consumer exists.
    let mut failover = Command::new(&exe);
    failover.arg("failover").args(&common);
    if let Some(url) = &args.aws_endpoint {
        // An emulator: it takes any credentials, and the machine may have
        // none.
        failover
            .args(["--aws-endpoint", url])
            .env("RG_FAILOVER__AWS__EMULATOR_CREDENTIALS", "true");
    }
    components.push(spawn("failover", failover)?);
    let decisions = subjects.stream(rg_bus::Stream::Decisions);
    wait_for_consumer(
        &js,
        &decisions,
        &config.failover.durable,
        args.ready_timeout,
        components,
    )
    .await?;
    println!(
        "[7/8] failover: {} mode, plans on {}{}",
        format!("{:?}", config.failover.mode).to_lowercase(),
        subjects.failover("planned"),
        args.aws_endpoint
            .as_ref()
            .map(|u| format!(", AWS at {u}"))
            .unwrap_or_default()
    );
    // 8. The notifier, when sinks are configured: ready once its consumer
    //    exists.
    if config.notifier.sinks.is_empty() {
        println!("[8/8] notifier: not started (no [[notifier.sinks]] in the config)");
    } else {
        let mut notifier = Command::new(&exe);
        notifier.arg("notifier").args(&common);
        components.push(spawn("notifier", notifier)?);
        wait_for_consumer(
            &js,
            &subjects.stream(rg_bus::Stream::Alerts),
            &config.notifier.durable,
            args.ready_timeout,
            components,
        )
        .await?;
        let sinks: Vec<String> = config
            .notifier
            .sinks
            .iter()
            .map(|s| format!("{} ({})", s.name, s.kind.as_str()))
            .collect();
        println!("[8/8] notifier: sending to {}", sinks.join(", "));
    }
    println!();
    println!("  dashboard:      {url}");
    println!(
        "  watch alerts:   regionguard tail --nats {nats_url} '{}'",
        subjects.alerts_all()
    );
    println!(
        "  watch events:   regionguard tail --nats {nats_url} '{}'",
        subjects.health_all()
    );
    println!("  inject a fault: regionguard fault inject --nats {nats_url} --region us-east-1 --service dynamodb --kind empty-answer --for 120s");
    println!(
        "  failovers:      regionguard tail --nats {nats_url} '{}'   (approve: regionguard failover approve --nats {nats_url} <id>)",
        subjects.failover("*")
    );
    Ok(())
}

/// A server URL for the terminal: credentials masked.
fn masked(url: &str) -> String {
    rg_bus::NatsConfig::default()
        .with_servers([url])
        .servers_for_log()
}

/// The first configured server that accepts a TCP connection.
async fn reachable_server(config: &Config) -> Option<String> {
    for url in &config.nats.servers {
        if rg_bus::connect::answers(url).await {
            return Some(url.clone());
        }
    }
    None
}

async fn start_nats(
    config: &Config,
    state_dir: &std::path::Path,
    components: &mut Vec<Component>,
) -> anyhow::Result<String> {
    // Start one only where the configuration expects a local server; a
    // remote one that is down is the operator's to fix.
    let first = config
        .nats
        .servers
        .first()
        .context("nats.servers is empty")?;
    let addr = first
        .parse::<async_nats::ServerAddr>()
        .map_err(|e| anyhow::anyhow!("{first}: {e}"))?;
    if !matches!(addr.host(), "127.0.0.1" | "localhost" | "::1" | "[::1]") {
        bail!(
            "no NATS server answers at {} and it is not on this machine: start it, or point nats.servers (or --nats) elsewhere",
            config.nats.servers_for_log()
        );
    }
    let port = addr.port();
    let bin = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    })
    .context(
        "no NATS server answers and nats-server is not installed: run scripts/install-deps.sh",
    )?;
    let store = state_dir.join("nats");
    std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
    // Through `supervise`, so that nats-server stops with `up` even when
    // `up` is killed outright.
    let exe = std::env::current_exe().context("locating the regionguard binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["supervise", "--signal", "INT", "--", bin])
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store);
    components.push(spawn("nats", cmd)?);
    let url = format!("nats://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(url);
        }
        check_alive(components)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nats-server did not accept connections on {url} within 10s")
}

/// Settings every child gets as environment variables (`--aws-endpoint`:
/// each service validates the whole file, the failover section included).
static CHILD_ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn spawn(name: &str, mut cmd: Command) -> anyhow::Result<Component> {
    for (key, value) in CHILD_ENV.get().into_iter().flatten() {
        cmd.env(key, value);
    }
    // Each child gets its own process group: a Ctrl-C in the terminal
    // reaches only `up`, which then stops the services before NATS.
    cmd.stdin(Stdio::piped())
        .env(rg_bus::service::STOP_WITH_PARENT, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let prefix = format!("{name:>18} | ");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{prefix}{line}");
            }
        });
    }
    let lifeline = child.stdin.take();
    Ok(Component {
        name: name.to_owned(),
        child,
        _lifeline: lifeline,
    })
}

fn check_alive(components: &mut [Component]) -> anyhow::Result<()> {
    for c in components.iter_mut() {
        if let Ok(Some(status)) = c.child.try_wait() {
            bail!(
                "{} exited during start-up ({status}); see its log lines above",
                c.name
            );
        }
    }
    Ok(())
}

async fn wait_dns_ready(
    dns: SocketAddr,
    timeout: Duration,
    components: &mut [Component],
) -> anyhow::Result<()> {
    let engine = rg_prober::lookup::LookupEngine::new(dns, 1)
        .await
        .context("opening a DNS socket")?;
    let query = rg_prober::lookup::PreparedQuery::new(
        "dynamodb.us-east-1.amazonaws.com",
        rg_prober::lookup::QueryKind::A,
    )?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let outcome = engine.lookup(&query, Duration::from_millis(300)).await;
        // Any answer (even NXDOMAIN for a region it does not simulate)
        // means the server is up; only silence or a socket error does not.
        use rg_proto::domain::LookupError;
        if !matches!(outcome.error, Some(LookupError::Timeout | LookupError::Io)) {
            return Ok(());
        }
        check_alive(components)?;
        if tokio::time::Instant::now() > deadline {
            bail!("the simulator did not answer DNS on {dns} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for Ctrl-C/SIGTERM, or for a component to exit on its own.
async fn wait_for_stop(components: &mut [Component]) -> ExitCode {
    let signal = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                return;
            }
        }
        let _ignored = tokio::signal::ctrl_c().await;
    };
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut signal => {
                println!("stopping regionguard...");
                return ExitCode::SUCCESS;
            }
            _ = tick.tick() => {
                for c in components.iter_mut() {
                    if let Ok(Some(status)) = c.child.try_wait() {
                        eprintln!("Error: {} exited unexpectedly ({status}); stopping everything", c.name);
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
}

/// Stops the services (SIGTERM, so they drain: probers publish what they
/// hold), then NATS last; SIGKILL for anything still running after a grace
/// period.
async fn stop_all(components: &mut Vec<Component>) {
    let (nats, services): (Vec<Component>, Vec<Component>) =
        components.drain(..).partition(|c| c.name == "nats");
    for group in [services, nats] {
        for c in &group {
            if let Some(pid) = c.child.id() {
                // nats-server exits 1 on SIGTERM but 0 on SIGINT, after the
                // same clean shutdown; our services treat both alike.
                let signal = if c.name == "nats" { "-INT" } else { "-TERM" };
                let _ignored = std::process::Command::new("kill")
                    .args([signal, &pid.to_string()])
                    .status();
            }
        }
        for mut c in group {
            match tokio::time::timeout(Duration::from_secs(12), c.child.wait()).await {
                Ok(Ok(status)) => println!("  stopped {} ({status})", c.name),
                _ => {
                    let _ignored = c.child.kill().await;
                    println!("  killed {} (it did not stop within 12s)", c.name);
                }
            }
        }
    }
}

/// Waits until a durable consumer exists on `stream` (a service opened it).
async fn wait_for_consumer(
    js: &async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
    timeout: Duration,
    components: &mut [Component],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = match js.get_stream(stream).await {
            Ok(s) => s.consumer_info(durable).await.is_ok(),
            Err(_) => false,
        };
        if found {
            return Ok(());
        }
        check_alive(components)?;
        if tokio::time::Instant::now() > deadline {
            bail!(
                "no consumer {durable} on {stream} within {timeout:?}: the service did not start"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway at `addr` reports its first snapshot.
async fn wait_for_snapshot(
    addr: SocketAddr,
    timeout: Duration,
    components: &mut [Component],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some((200, body)) = super::http::get(addr, "/api/snapshot").await {
            if body.contains("\"summary\"") {
                return Ok(());
            }
        }
        check_alive(components)?;
        if tokio::time::Instant::now() > deadline {
            bail!("the gateway on {addr} served no snapshot within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
