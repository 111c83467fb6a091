//! `regionguard check-config`: validate and summarize, bind nothing.

use std::process::ExitCode;

use super::Globals;

/// `check-config` options.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Also check every declared Route 53 record, CloudFront origin,
    /// behaviour and origin group, Auto Scaling group, ECS service, target
    /// group and database
    /// against the AWS account (read-only calls), and that a plan can be
    /// made from every declared region to every other.
    #[arg(long)]
    aws: bool,
    /// The AWS endpoint for `--aws`, e.g. a moto server (overrides
    /// `failover.aws.endpoint_url`; dummy credentials are used with it).
    #[arg(long, value_name = "URL", requires = "aws")]
    aws_endpoint: Option<String>,
}

pub(crate) async fn run(globals: Globals, args: CheckArgs) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let origin = globals
        .config
        .as_ref()
        .map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    println!("configuration OK ({origin})");
    println!(
        "  nats:      {} (prefix {:?})",
        config.nats.servers_for_log(),
        config.nats.prefix
    );
    let p = &config.prober;
    println!(
        "  prober:    regions {:?}, {} services, resolvers {:?}, interval {:?}, timeout {:?}",
        p.regions,
        p.services.len(),
        p.resolvers,
        p.interval,
        p.timeout
    );
    let s = &config.simulator;
    println!(
        "  simulator: dns {} ({} regions x {} services under {}){}",
        s.listen,
        s.regions.len(),
        s.services.len(),
        s.domain,
        s.scenario
            .as_ref()
            .map(|p| format!(", scenario {}", p.display()))
            .unwrap_or_default()
    );
    let g = &config.gateway;
    let access = match g.access() {
        rg_gateway::config::Access::Off => "state-changing calls off",
        rg_gateway::config::Access::OpenOnLoopback => {
            "state-changing calls open on loopback (no token)"
        }
        rg_gateway::config::Access::Token(_) => "state-changing calls need the token",
    };
    println!(
        "  gateway:   http {}, grpc {}, snapshot every {:?}, {access}",
        g.listen, g.grpc_listen, g.interval
    );
    let f = &config.failover;
    println!(
        "  failover:  {} mode, regions with resources: {}",
        f.mode.name(),
        f.declared_regions()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sinks: Vec<String> = config
        .notifier
        .sinks
        .iter()
        .map(|s| {
            format!(
                "{} ({}, {}+, {})",
                s.name,
                s.kind.as_str(),
                s.min_severity,
                s.sources.join("/")
            )
        })
        .collect();
    println!(
        "  notifier:  {}",
        if sinks.is_empty() {
            "no sinks (alerts are not sent anywhere)".to_owned()
        } else {
            sinks.join(", ")
        }
    );
    if !args.aws {
        return ExitCode::SUCCESS;
    }
    let mut failover = config.failover.clone();
    if let Some(url) = args.aws_endpoint {
        failover.aws.endpoint_url = Some(url);
        failover.aws.emulator_credentials = true;
    }
    println!(
        "checking the failover's resources against {} (read only)",
        failover.aws.endpoint_url.as_deref().unwrap_or("AWS")
    );
    let findings = rg_failover::account::check(&failover).await;
    for f in &findings {
        println!("  {} {}", if f.ok { "ok  " } else { "FAIL" }, f.message);
    }
    let failed = findings.iter().filter(|f| !f.ok).count();
    if failed == 0 {
        println!("every declared resource exists and covers the regions it claims");
        ExitCode::SUCCESS
    } else {
        println!("{failed} problem(s): a failover would fail on them");
        ExitCode::FAILURE
    }
}
