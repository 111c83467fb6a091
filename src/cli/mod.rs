//! Command-line interface: one subcommand per service plus operator tools.

mod approve;
mod bench;
mod bench_gateway;
mod bench_pipeline;
mod check_config;
mod config;
mod fault;
mod http;
mod provision;
mod replay;
mod services;
mod status;
mod supervise;
mod tail;
mod tail_human;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rg_bus::telemetry::{self, LogFormat};

pub(crate) use config::Config;

/// regionguard watches the DNS of AWS services in every region, sees an
/// outage coming and moves traffic to a healthy region.
///
/// Every service runs as `regionguard <service>`; they talk only through
/// NATS JetStream. Configuration: built-in defaults, then the TOML file
/// given with --config (or RG_CONFIG), then RG_<SECTION>__<KEY> environment
/// variables (e.g. RG_PROBER__INTERVAL=5s), then command-line flags.
/// An invalid configuration exits with code 2 and names every bad key.
#[derive(Debug, Parser)]
#[command(
    name = "regionguard",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults are used.
    #[arg(long, short, global = true, env = "RG_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// NATS server URL(s), comma-separated; overrides `nats.servers`.
    #[arg(long, global = true, env = "RG_NATS_URL", value_name = "URL")]
    nats: Option<String>,

    /// Log format: human or json. Log level comes from RG_LOG (e.g.
    /// RG_LOG=debug or RG_LOG=rg_prober=debug,info).
    #[arg(
        long,
        global = true,
        env = "RG_LOG_FORMAT",
        default_value = "human",
        value_name = "FORMAT"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe the DNS of one region's AWS endpoints and publish HealthEvents.
    Prober(services::ProberArgs),
    /// Serve AWS-style DNS names for simulated regions, with fault injection.
    Simulator(services::SimulatorArgs),
    /// Raise threshold alerts (agreed across vantage points) and anomaly
    /// alerts from the health events.
    Detector(services::DetectorArgs),
    /// Score the risk that a region's failures cascade through the
    /// dependency map; raise outage alerts and ask for failovers.
    Cascade(services::CascadeArgs),
    /// Serve the web dashboard, its WebSocket and REST API, and the gRPC
    /// control API; publish a dashboard snapshot every interval.
    Gateway(services::GatewayArgs),
    /// Move traffic away from a failing region: plan, and in approve or
    /// auto mode execute, verify and roll back (`failover approve ID`
    /// approves a planned failover).
    Failover(services::FailoverArgs),
    /// Send alerts and failover phases to Alertmanager, webhooks, Slack
    /// and PagerDuty (`[[notifier.sinks]]`), with retries; nothing twice.
    Notifier(services::NotifierArgs),
    /// Score recorded health checks (CSV) with the detector's anomaly model.
    Replay(replay::ReplayArgs),
    /// Print messages from the bus as JSON lines (default subject `rg.>`).
    Tail(tail::TailArgs),
    /// Inject, clear or list faults in a running simulator.
    #[command(subcommand)]
    Fault(fault::FaultCommand),
    /// Run the whole system locally: NATS (the configured server, or one
    /// started here), the DNS simulator, a prober per region, the detector,
    /// the cascade service, the gateway (dashboard on
    /// http://127.0.0.1:8080 by default), the failover manager and, when
    /// sinks are configured, the notifier.
    Up(up::UpArgs),
    /// Benchmarks: the prober against a DNS server (scripts/bench.sh), the
    /// Isolation Forest, the gateway's snapshots and WebSocket fan-out.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Load and validate the configuration, print a summary, and exit
    /// (0 when valid, 2 when not); `--aws` also checks the failover's
    /// resources against the AWS account (read only; 1 when a failover
    /// would fail on one).
    CheckConfig(check_config::CheckArgs),
    /// Create (or bring in line with the configuration) every stream and
    /// key-value bucket the services use, then exit. Needed once, as an
    /// administrator, when the services' NATS users may not create streams
    /// (deploy/nats/auth.conf).
    Provision,
    /// Report each component's health from NATS and the gateway within
    /// about 2 s, also on a degraded cluster (exit 1 when one is down, 3
    /// when something cannot be told: no quorum, an election under way);
    /// `--healthz ADDR` checks one service's endpoint.
    Status(status::StatusArgs),
    /// Run a program so that it stops with its parent (used by `up` for
    /// nats-server).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

/// Global options every command receives.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) config: Option<PathBuf>,
    pub(crate) nats: Option<String>,
}

impl Globals {
    /// Loads the configuration with `overrides` (from flags) applied last.
    pub(crate) fn load(
        &self,
        overrides: Vec<(String, String)>,
    ) -> Result<Config, rg_bus::ConfigError> {
        let mut env: Vec<(String, String)> = std::env::vars().collect();
        if let Some(url) = &self.nats {
            env.push(("RG_NATS__SERVERS".into(), url.clone()));
        }
        // Flags win over the environment: drop any environment value for a
        // key a flag sets.
        env.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        env.extend(overrides);
        rg_bus::config::load_file(self.config.as_deref(), env)
    }
}

/// Runs the command and returns the process exit code.
pub(crate) async fn run(cli: Cli) -> ExitCode {
    // Services log their work at info; tools print their results and log
    // only what went wrong.
    let service = matches!(
        cli.command,
        Command::Prober(_)
            | Command::Simulator(_)
            | Command::Detector(_)
            | Command::Cascade(_)
            | Command::Gateway(_)
            | Command::Notifier(_)
    ) || matches!(&cli.command, Command::Failover(f) if f.runs_service());
    if service {
        telemetry::init(cli.log_format);
    } else {
        telemetry::init_with_default(cli.log_format, "warn");
    }
    let globals = Globals {
        config: cli.config,
        nats: cli.nats,
    };
    match cli.command {
        Command::Prober(args) => services::prober(globals, args).await,
        Command::Simulator(args) => services::simulator(globals, args).await,
        Command::Detector(args) => services::detector(globals, args).await,
        Command::Cascade(args) => services::cascade(globals, args).await,
        Command::Gateway(args) => services::gateway(globals, args).await,
        Command::Failover(args) => services::failover(globals, args).await,
        Command::Notifier(args) => services::notifier(globals, args).await,
        Command::Replay(args) => replay::run(globals, args),
        Command::Tail(args) => tail::run(globals, args).await,
        Command::Fault(cmd) => fault::run(globals, cmd).await,
        Command::Up(args) => up::run(globals, args).await,
        Command::Bench(cmd) => bench::run(globals, cmd).await,
        Command::CheckConfig(args) => check_config::run(globals, args).await,
        Command::Provision => provision::run(globals).await,
        Command::Status(args) => status::run(globals, args).await,
        Command::Supervise(args) => supervise::run(args).await,
    }
}

/// Prints a config error and returns exit code 2.
pub(crate) fn config_error(e: &rg_bus::ConfigError) -> ExitCode {
    eprintln!("Error: invalid configuration: {e}");
    ExitCode::from(rg_bus::service::EXIT_CONFIG)
}
