//! The whole configuration file: one section per service plus `[nats]`.
//! See `deploy/config/regionguard.toml` for a documented example.

use rg_bus::{NatsConfig, Problems, Validate};
use serde::Deserialize;

/// The regionguard configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Config {
    /// `[nats]`: the bus.
    pub(crate) nats: NatsConfig,
    /// `[prober]`.
    pub(crate) prober: rg_prober::Config,
    /// `[simulator]`.
    pub(crate) simulator: rg_simulator::Config,
    /// `[detector]`.
    pub(crate) detector: rg_detector::Config,
    /// `[cascade]`.
    pub(crate) cascade: rg_cascade::Config,
    /// `[gateway]`.
    pub(crate) gateway: rg_gateway::Config,
    /// `[failover]`.
    pub(crate) failover: rg_failover::Config,
    /// `[notifier]`.
    pub(crate) notifier: rg_notifier::Config,
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        p.section("nats", &self.nats);
        p.section("prober", &self.prober);
        p.section("simulator", &self.simulator);
        p.section("detector", &self.detector);
        p.section("cascade", &self.cascade);
        p.section("gateway", &self.gateway);
        p.section("failover", &self.failover);
        p.section("notifier", &self.notifier);
    }
}
