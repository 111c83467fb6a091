//! The service subcommands: flags become config overrides, then the
//! shared harness (`rg_bus::service::main`) runs the service.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::Globals;

/// `regionguard prober`.
#[derive(Debug, Args)]
pub(crate) struct ProberArgs {
    /// Region to probe (overrides `prober.region`); needed when several
    /// regions are configured.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// This instance's vantage id (default `<region>-<hostname>-<pid>`).
    #[arg(long, env = "RG_VANTAGE", value_name = "ID")]
    vantage: Option<String>,
    /// Resolver to probe through, `ip:port` or `system`; repeat for
    /// several (overrides `prober.resolvers`).
    #[arg(long = "resolver", value_name = "ADDR")]
    resolvers: Vec<String>,
    /// Time between rounds, e.g. 10s (overrides `prober.interval`).
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
}

/// `regionguard simulator`.
#[derive(Debug, Args)]
pub(crate) struct SimulatorArgs {
    /// DNS address (UDP and TCP), e.g. 127.0.0.1:8053 (overrides
    /// `simulator.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Scenario file scheduling faults (overrides `simulator.scenario`).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

pub(crate) async fn prober(globals: Globals, args: ProberArgs) -> ExitCode {
    let mut overrides = Vec::new();
    if let Some(r) = args.region {
        overrides.push(("RG_PROBER__REGION".into(), quoted(&r)));
    }
    if let Some(v) = args.vantage {
        overrides.push(("RG_PROBER__VANTAGE".into(), quoted(&v)));
    }
    if !args.resolvers.is_empty() {
        let list = args
            .resolvers
            .iter()
            .map(|r| quoted(r))
            .collect::<Vec<_>>()
            .join(", ");
        overrides.push(("RG_PROBER__RESOLVERS".into(), format!("[{list}]")));
    }
    if let Some(i) = args.interval {
        overrides.push(("RG_PROBER__INTERVAL".into(), quoted(&i)));
    }
    rg_bus::service::main(
        "prober",
        || globals.load(overrides),
        |c| c.prober.metrics_listen,
        |c, shutdown| rg_prober::run(c.prober, c.nats, shutdown),
    )
    .await
}

pub(crate) async fn simulator(globals: Globals, args: SimulatorArgs) -> ExitCode {
    let mut overrides = Vec::new();
    if let Some(l) = args.listen {
        overrides.push(("RG_SIMULATOR__LISTEN".into(), quoted(&l)));
    }
    if let Some(s) = args.scenario {
        overrides.push((
            "RG_SIMULATOR__SCENARIO".into(),
            quoted(&s.display().to_string()),
        ));
    }
    rg_bus::service::main(
        "simulator",
        || globals.load(overrides),
        |c| c.simulator.metrics_listen,
        |c, shutdown| rg_simulator::run(c.simulator, c.nats, shutdown),
    )
    .await
}

/// `regionguard detector`.
#[derive(Debug, Args)]
pub(crate) struct DetectorArgs {
    /// Regions to handle, repeatable (overrides `detector.regions`; default
    /// all), so several detectors can split the regions.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Anomaly mode: baseline or batch (overrides `detector.anomaly.mode`).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
}

pub(crate) async fn detector(globals: Globals, args: DetectorArgs) -> ExitCode {
    let mut overrides = Vec::new();
    if !args.regions.is_empty() {
        let list = args
            .regions
            .iter()
            .map(|r| quoted(r))
            .collect::<Vec<_>>()
            .join(", ");
        overrides.push(("RG_DETECTOR__REGIONS".into(), format!("[{list}]")));
    }
    if let Some(m) = args.mode {
        overrides.push(("RG_DETECTOR__ANOMALY__MODE".into(), quoted(&m)));
    }
    rg_bus::service::main(
        "detector",
        || globals.load(overrides),
        |c| c.detector.metrics_listen,
        |c, shutdown| {
            // Threshold alerts predict impact from the cascade's map.
            let detector = rg_detector::Config {
                dependencies: c.cascade.services.clone(),
                rounds: c.rounds.clone(),
                probe_interval: c.prober.interval,
                ..c.detector
            };
            rg_detector::run(detector, c.nats, shutdown)
        },
    )
    .await
}

/// `regionguard cascade`.
#[derive(Debug, Args)]
pub(crate) struct CascadeArgs {}

pub(crate) async fn cascade(globals: Globals, _args: CascadeArgs) -> ExitCode {
    rg_bus::service::main(
        "cascade",
        || globals.load(Vec::new()),
        |c| c.cascade.metrics_listen,
        |c, shutdown| {
            let cascade = rg_cascade::Config {
                rounds: c.rounds.clone(),
                ..c.cascade
            };
            rg_cascade::run(cascade, c.nats, shutdown)
        },
    )
    .await
}

/// `regionguard notifier`.
#[derive(Debug, Args)]
pub(crate) struct NotifierArgs {}

pub(crate) async fn notifier(globals: Globals, _args: NotifierArgs) -> ExitCode {
    rg_bus::service::main(
        "notifier",
        || globals.load(Vec::new()),
        |c| c.notifier.metrics_listen,
        |c, shutdown| rg_notifier::run(c.notifier, c.nats, shutdown),
    )
    .await
}

/// `regionguard gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// HTTP address of the dashboard, REST and WebSocket, e.g.
    /// 127.0.0.1:8080 (overrides `gateway.listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// gRPC address (overrides `gateway.grpc_listen`).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
    /// Time between snapshots, e.g. 10s (overrides `gateway.interval`).
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Directory of the built dashboard (overrides `gateway.dashboard_dir`).
    #[arg(long, value_name = "DIR")]
    dashboard_dir: Option<PathBuf>,
}

pub(crate) async fn gateway(globals: Globals, args: GatewayArgs) -> ExitCode {
    let mut overrides = Vec::new();
    if let Some(l) = args.listen {
        overrides.push(("RG_GATEWAY__LISTEN".into(), quoted(&l)));
    }
    if let Some(l) = args.grpc_listen {
        overrides.push(("RG_GATEWAY__GRPC_LISTEN".into(), quoted(&l)));
    }
    if let Some(i) = args.interval {
        overrides.push(("RG_GATEWAY__INTERVAL".into(), quoted(&i)));
    }
    if let Some(d) = args.dashboard_dir {
        overrides.push((
            "RG_GATEWAY__DASHBOARD_DIR".into(),
            quoted(&d.display().to_string()),
        ));
    }
    let config_file = globals.config.clone();
    rg_bus::service::main(
        "gateway",
        || globals.load(overrides),
        |c| c.gateway.metrics_listen,
        |c, shutdown| async move {
            let dashboard_dir = match std::env::current_exe() {
                Ok(exe) => locate_dashboard(&c.gateway.dashboard_dir, config_file.as_deref(), &exe),
                Err(_) => c.gateway.dashboard_dir.clone(),
            };
            tracing::info!(dir = %dashboard_dir.display(), "serving the dashboard from {}", dashboard_dir.display());
            let gateway = rg_gateway::Gateway::bind(rg_gateway::Config {
                quorum: c.rounds.quorum,
                dashboard_dir,
                ..c.gateway
            })
            .await?;
            gateway.run(c.nats, shutdown).await
        },
    )
    .await
}

/// The dashboard directory `gateway.dashboard_dir` names. An absolute path
/// is taken as it is. A relative one is looked for, in this order, under
/// the working directory, the configuration file's directory, and each
/// directory above the binary (`target/release/regionguard` finds
/// `./dashboard/dist` of the tree it was built in; `/app/regionguard`
/// finds `/app/dashboard/dist`): the first that holds an `index.html`.
/// Found nowhere: as given (the gateway then says the dashboard is not
/// built, and where it looked).
pub(crate) fn locate_dashboard(
    configured: &std::path::Path,
    config_file: Option<&std::path::Path>,
    exe: &std::path::Path,
) -> PathBuf {
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    let config_dir = config_file.and_then(std::path::Path::parent);
    std::iter::once(configured.to_path_buf())
        .chain(config_dir.map(|d| d.join(configured)))
        .chain(exe.ancestors().skip(1).map(|dir| dir.join(configured)))
        .find(|candidate| candidate.join("index.html").is_file())
        .unwrap_or_else(|| configured.to_path_buf())
}

/// `regionguard failover`.
#[derive(Debug, Args)]
pub(crate) struct FailoverArgs {
    /// observe, plan, approve or auto (overrides `failover.mode`).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// AWS endpoint override, e.g. a moto server http://127.0.0.1:5000
    /// (overrides `failover.aws.endpoint_url`).
    #[arg(long, value_name = "URL")]
    aws_endpoint: Option<String>,
    #[command(subcommand)]
    action: Option<FailoverAction>,
}

#[derive(Debug, clap::Subcommand)]
enum FailoverAction {
    /// Ask for a failover away from a region now (as the cascade service
    /// does): the failover service plans it, and executes it in auto mode
    /// or once approved.
    Request {
        /// The region to move traffic away from.
        #[arg(long = "from", value_name = "REGION")]
        from: String,
        /// Why, for the audit trail.
        #[arg(long, default_value = "requested by an operator")]
        reason: String,
        /// Who asks (default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        requester: Option<String>,
        /// How long to wait for the failover service's answer (planned,
        /// completed, refused); 0 only queues the request (NATS is then
        /// given 30 s to confirm it). Exit status: 0 planned or completed,
        /// 1 cannot connect or publish, 3 refused or failed, 4 rolled back,
        /// 5 no answer in time, 6 NATS did not confirm the request stored
        /// in time (it is retried with one message id, so it may still be
        /// stored, never twice).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Ask for the failback of a completed failover now (the service also
    /// proposes it by itself once the region has been well for
    /// `failback_after`): traffic steps undone exactly, capacity left.
    /// Waits and exits like `request`.
    Failback {
        /// The completed failover's id.
        id: String,
        /// Who asks (default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        requester: Option<String>,
        /// How long to wait for the failover service's answer; 0 only
        /// queues the request.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Check now whether a failover away from each declared region would
    /// work: the running failover service builds the plan each would run
    /// against the live state (nothing is executed) and names every
    /// problem (a missing record, a behaviour pointing nowhere, no healthy
    /// targets behind a standby's load balancer, an Auto Scaling maximum
    /// below what the region runs, a replica that cannot be promoted). It
    /// does so by itself every `failover.readiness_interval`. Exit status:
    /// 0 every region ready, 2 ready but a standby drifted, 3 a failover
    /// would fail, 5 no answer in time.
    Readiness {
        /// How long to wait for the failover service's answer.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        /// Print the answer as JSON (one object per region).
        #[arg(long)]
        json: bool,
    },
    /// Approve a planned failover: publishes its APPROVED phase, which a
    /// failover service in approve mode executes. Exit status: 0 stored,
    /// 1 not approvable or cannot connect, 6 NATS did not confirm it
    /// stored within 30 s (it may still be, once).
    Approve {
        /// The failover's id (see `regionguard tail 'rg.decisions.failover.planned'`).
        id: String,
        /// Who approves, for the audit trail (default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        approver: Option<String>,
    },
    /// Reject a planned failover: publishes its REJECTED phase with who
    /// and why; nothing is executed and a later approval is ignored. Exit
    /// status as for `approve`.
    Reject {
        /// The failover's id.
        id: String,
        /// Why, for the audit trail and the dashboard.
        #[arg(long, default_value = "")]
        reason: String,
        /// Who rejects, for the audit trail (default: $USER).
        #[arg(long, env = "USER", value_name = "NAME")]
        approver: Option<String>,
    },
}

impl FailoverArgs {
    /// True when it runs the service (not `failover request` or `approve`,
    /// which are tools: they print results and log only what went wrong).
    pub(crate) fn runs_service(&self) -> bool {
        self.action.is_none()
    }
}

pub(crate) async fn failover(globals: Globals, args: FailoverArgs) -> ExitCode {
    match args.action {
        Some(FailoverAction::Failback {
            id,
            requester,
            wait,
        }) => {
            return super::approve::failback(
                globals,
                &id,
                requester.as_deref().unwrap_or("cli"),
                wait,
            )
            .await;
        }
        Some(FailoverAction::Readiness { wait, json }) => {
            return super::approve::readiness(globals, wait, json).await;
        }
        Some(FailoverAction::Approve { id, approver }) => {
            let approver = approver.as_deref().unwrap_or("cli");
            return super::approve::run(globals, &id, approver, None).await;
        }
        Some(FailoverAction::Reject {
            id,
            reason,
            approver,
        }) => {
            let approver = approver.as_deref().unwrap_or("cli");
            return super::approve::run(globals, &id, approver, Some(&reason)).await;
        }
        Some(FailoverAction::Request {
            from,
            reason,
            requester,
            wait,
        }) => {
            return super::approve::request(
                globals,
                &from,
                &reason,
                requester.as_deref().unwrap_or("cli"),
                wait,
            )
            .await;
        }
        None => {}
    }
    let mut overrides = Vec::new();
    if let Some(m) = args.mode {
        overrides.push(("RG_FAILOVER__MODE".into(), quoted(&m)));
    }
    if let Some(u) = args.aws_endpoint {
        overrides.push(("RG_FAILOVER__AWS__ENDPOINT_URL".into(), quoted(&u)));
    }
    rg_bus::service::main(
        "failover",
        || globals.load(overrides),
        |c| c.failover.metrics_listen,
        |c, shutdown| rg_failover::run(c.failover, c.nats, shutdown),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::locate_dashboard;

    /// A name no working directory holds.
    const RELATIVE: &str = "rg-locate-test/dist";

    /// A tree with `rg-locate-test/dist/index.html` under `root`.
    fn dashboard_in(root: &std::path::Path) -> std::path::PathBuf {
        let dir = root.join(RELATIVE);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        dir
    }

    #[test]
    fn a_relative_dashboard_dir_is_found_next_to_the_config_or_above_the_binary() {
        let relative = std::path::Path::new(RELATIVE);
        let nowhere = tempfile::tempdir().unwrap();
        let exe_elsewhere = nowhere.path().join("bin/regionguard");

        let beside_config = tempfile::tempdir().unwrap();
        let expected = dashboard_in(beside_config.path());
        let config = beside_config.path().join("regionguard.toml");
        assert_eq!(
            locate_dashboard(relative, Some(&config), &exe_elsewhere),
            expected
        );

        let install = tempfile::tempdir().unwrap();
        let expected = dashboard_in(install.path());
        let exe = install.path().join("target/release/regionguard");
        assert_eq!(locate_dashboard(relative, None, &exe), expected);

        // Found nowhere, or absolute: as given.
        assert_eq!(locate_dashboard(relative, None, &exe_elsewhere), relative);
        let absolute = nowhere.path().join("dist");
        assert_eq!(locate_dashboard(&absolute, Some(&config), &exe), absolute);
    }
}
