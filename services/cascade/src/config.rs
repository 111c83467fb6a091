//! The `[cascade]` section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rg_bus::{Problems, Validate};
use rg_rounds::RoundSettings;
use serde::Deserialize;

use crate::dependency_map::{default_map, DependencyMap, ServiceSpec};

/// The `[cascade]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Durable consumer name. Default `cascade`.
    pub durable: String,
    /// Key-value bucket of the regions' state. Default `RG_CASCADE`.
    pub state_bucket: String,
    /// Rounds a failing service takes to count fully (its weight grows by
    /// 1/confirm_rounds per round). Default `3`.
    pub confirm_rounds: u32,
    /// Services whose DNS failure (empty answer, NXDOMAIN, SERVFAIL,
    /// timeout) at a quorum counts at once: a critical alert and a failover
    /// request in the first round. Default `["dynamodb"]`.
    pub immediate: Vec<String>,
    /// Risk score at which each severity begins.
    pub severity: SeverityThresholds,
    /// When to ask for a failover.
    pub failover: FailoverPolicy,
    /// The dependency map: `[cascade.services.<name>]` with `criticality`
    /// and `depends_on = { <service> = <weight> }`. Default: the shipped
    /// map (see `dependency_map.rs`). A section here replaces it whole.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
    /// How rounds are judged: not keys of this section; the binary sets
    /// them from `[rounds]`, which every judge of rounds shares.
    #[serde(skip)]
    pub rounds: RoundSettings,
}

/// `[cascade.severity]`: the risk score where each severity begins.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SeverityThresholds {
    /// Default `0.02`.
    pub low: f64,
    /// Default `0.10`.
    pub medium: f64,
    /// Default `0.25`.
    pub high: f64,
    /// Default `0.40`.
    pub critical: f64,
}

impl Default for SeverityThresholds {
    fn default() -> Self {
        Self {
            low: 0.02,
            medium: 0.10,
            high: 0.25,
            critical: 0.40,
        }
    }
}

/// `[cascade.failover]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverPolicy {
    /// Ask for failovers at all. Default `true`.
    pub enabled: bool,
    /// Consecutive critical rounds before asking (1 for an immediate
    /// service's DNS failure). Default `2`.
    pub hysteresis_rounds: u32,
    /// No new request for a region this long after the last. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A region can take traffic when its risk is at most this. Default `0.1`.
    pub healthy_max_risk: f64,
    /// ... and its last decided round is this recent. Default `2m`.
    #[serde(with = "humantime_serde")]
    pub fresh_within: Duration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            hysteresis_rounds: 2,
            cooldown: Duration::from_secs(600),
            healthy_max_risk: 0.10,
            fresh_within: Duration::from_secs(120),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rounds: RoundSettings::default(),
            durable: "cascade".into(),
            state_bucket: "RG_CASCADE".into(),
            confirm_rounds: 3,
            immediate: vec!["dynamodb".into()],
            severity: SeverityThresholds::default(),
            failover: FailoverPolicy::default(),
            services: default_map(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        if !is_name(&self.durable) {
            p.push(
                "durable",
                format!("{:?} must be letters, digits, '-' or '_'", self.durable),
            );
        }
        if !is_name(&self.state_bucket) {
            p.push(
                "state_bucket",
                format!(
                    "{:?} must be letters, digits, '-' or '_'",
                    self.state_bucket
                ),
            );
        }
        if self.confirm_rounds == 0 {
            p.push("confirm_rounds", "must be at least 1");
        }
        let s = self.severity;
        let ordered = 0.0 <= s.low
            && s.low <= s.medium
            && s.medium <= s.high
            && s.high <= s.critical
            && s.critical <= 1.0;
        if !ordered {
            p.push(
                "severity",
                "thresholds must rise: 0 <= low <= medium <= high <= critical <= 1",
            );
        }
        if self.failover.hysteresis_rounds == 0 {
            p.push("failover.hysteresis_rounds", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.failover.healthy_max_risk) {
            p.push("failover.healthy_max_risk", "must be within 0..=1");
        }
        match DependencyMap::build(&self.services) {
            Ok(_) => {
                for (i, name) in self.immediate.iter().enumerate() {
                    if !self.services.contains_key(name) {
                        p.push(
                            format!("immediate[{i}]"),
                            format!("{name:?} is not in the dependency map"),
                        );
                    }
                }
            }
            Err(e) => p.push(
                format!("services.{}", e.key()).trim_end_matches('.'),
                e.to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        struct Root {
            cascade: Config,
        }
        impl Validate for Root {
            fn validate(&self, p: &mut Problems) {
                p.section("cascade", &self.cascade);
            }
        }
        match rg_bus::config::load_str::<Root>(text, "t.toml", []) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect(),
        }
    }

    #[test]
    fn the_default_config_is_valid() {
        assert!(problems("").is_empty());
    }

    #[test]
    fn the_documented_example_shows_the_shipped_map() {
        #[derive(Deserialize)]
        struct File {
            cascade: Config,
        }
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/config/regionguard.toml"
        ))
        .unwrap();
        let table: toml::Table = text.parse().unwrap();
        let cascade = toml::Table::from_iter([("cascade".to_owned(), table["cascade"].clone())]);
        let file: File = toml::Value::Table(cascade).try_into().unwrap();
        assert_eq!(file.cascade.services, default_map());
    }

    #[test]
    fn a_map_with_a_cycle_or_an_unknown_service_is_refused_with_its_names() {
        let p = problems(
            "[cascade.services.ec2]\ncriticality = 1\ndepends_on = { elb = 1 }\n[cascade.services.elb]\ncriticality = 1\ndepends_on = { ec2 = 1 }\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("cascade.services.ec2: dependency cycle: ec2 -> elb -> ec2"),
            "{p:?}"
        );
        let p =
            problems("[cascade.services.lambda]\ncriticality = 1\ndepends_on = { dynamo = 1 }\n");
        assert!(p[0].contains("lambda depends on \"dynamo\""), "{p:?}");
        let p = problems("[cascade.services.s3]\ncriticality = 1\n");
        assert!(
            p.iter().any(|x| x.starts_with("cascade.immediate[0]")),
            "dynamodb is gone from the map: {p:?}"
        );
    }
}
