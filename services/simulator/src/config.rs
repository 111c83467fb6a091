//! The `[simulator]` section.

use std::net::SocketAddr;
use std::path::PathBuf;

use rg_bus::{Problems, Validate};
use rg_proto::domain::{Region, ServiceName, DEFAULT_REGIONS, DEFAULT_SERVICES};
use serde::Deserialize;

pub use crate::noise::NoiseConfig;

/// The `[simulator]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// DNS address, UDP and TCP. Port 0 picks a free port (the bound address
    /// is logged). Default `127.0.0.1:8053`.
    pub listen: SocketAddr,
    /// Simulated regions. Default `["us-east-1", "us-west-2", "eu-west-1"]`.
    pub regions: Vec<String>,
    /// Simulated services. Default: dynamodb, ec2, rds, elasticloadbalancing,
    /// lambda, s3, sqs.
    pub services: Vec<String>,
    /// The domain names end in. Default `amazonaws.com`.
    pub domain: String,
    /// TTL of the records served, seconds. Default `60`.
    pub ttl: u32,
    /// A scenario file scheduling faults over time. Default none.
    pub scenario: Option<PathBuf>,
    /// Accept fault requests on `<prefix>.sim.faults` (`regionguard
    /// fault`). Default `true`.
    pub control: bool,
    /// `[simulator.noise]`: heavy-tailed delay, lost answers and SERVFAIL
    /// on every answer no fault affects (soak tests). Default: none.
    pub noise: NoiseConfig,
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            regions: DEFAULT_REGIONS.map(String::from).to_vec(),
            services: DEFAULT_SERVICES.map(String::from).to_vec(),
            domain: "amazonaws.com".into(),
            ttl: 60,
            scenario: None,
            control: true,
            noise: NoiseConfig::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        if self.regions.is_empty() {
            p.push("regions", "at least one region is needed");
        }
        for (i, r) in self.regions.iter().enumerate() {
            if let Err(e) = Region::parse(r) {
                p.push(format!("regions[{i}]"), e.to_string());
            }
        }
        if self.services.is_empty() {
            p.push("services", "at least one service is needed");
        }
        for (i, s) in self.services.iter().enumerate() {
            if let Err(e) = ServiceName::parse(s) {
                p.push(format!("services[{i}]"), e.to_string());
            }
        }
        let domain = self.domain.trim_end_matches('.');
        if domain.is_empty()
            || domain
                .split('.')
                .any(|l| l.is_empty() || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            p.push("domain", format!("{:?} is not a DNS name", self.domain));
        }
        for (key, message) in self.noise.problems() {
            p.push(key, message);
        }
        if let Some(path) = &self.scenario {
            if let Err(e) = crate::scenario::Scenario::load(path) {
                p.push("scenario", e.to_string());
            }
        }
    }
}
