//! `regionguard check-config`: validate and summarize, bind nothing.

use std::process::ExitCode;

use super::Globals;

pub(crate) fn run(globals: Globals) -> ExitCode {
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
        "  failover:  {} mode, regions with resources {:?}",
        format!("{:?}", f.mode).to_lowercase(),
        f.declared_regions()
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
    ExitCode::SUCCESS
}
