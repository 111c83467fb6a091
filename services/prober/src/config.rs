//! The `[prober]` section, and the typed plan a prober instance runs from.
//!
//! [`Config`] is what the file says (strings, durations, defaults);
//! [`Config::plan`] turns it into a [`Plan`] for one instance: its region,
//! vantage id, endpoint list, resolvers and thresholds, every value already
//! parsed, so nothing downstream re-checks a string.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rg_bus::{Problems, Validate};
use rg_proto::domain::{Priority, Region, ServiceName};
use serde::Deserialize;

pub use crate::adaptive::AdaptiveConfig;
use crate::classify::{Thresholds, ThresholdsByPriority};
use crate::endpoints::{self, Endpoint};
use crate::lookup::QueryKind;

pub use rg_proto::domain::{DEFAULT_REGIONS, DEFAULT_SERVICES};

/// The `[prober]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Every region the system watches (`regionguard up` starts a prober for
    /// each). Default `["us-east-1", "us-west-2", "eu-west-1"]`.
    pub regions: Vec<String>,
    /// The region this instance probes (`--region`). Default: the only entry
    /// of `regions`, when there is exactly one.
    pub region: Option<String>,
    /// This instance's vantage id (`--vantage`). Default
    /// `<region>-<hostname>-<pid>`.
    pub vantage: Option<String>,
    /// Services whose regional endpoint `<service>.<region>.<domain>` is
    /// probed. Default: dynamodb, ec2, rds, elasticloadbalancing, lambda, s3,
    /// sqs.
    pub services: Vec<String>,
    /// Domain of the generated endpoint names. Default `amazonaws.com`.
    pub domain: String,
    /// Extra generated names per service, `e<i>.<service>.<region>.<domain>`
    /// (for load tests with many endpoints). Default `0`.
    pub extra_endpoints_per_service: u32,
    /// Explicit endpoints, probed in addition to the generated ones.
    pub endpoints: Vec<EndpointConfig>,
    /// Resolvers to ask: `"system"` (the nameservers of /etc/resolv.conf) or
    /// `ip[:port]`. Each is probed separately. Default `["system"]`.
    pub resolvers: Vec<String>,
    /// Record type to query: `a`, `aaaa` or `cname`. Default `a`.
    pub query_type: String,
    /// Time between the starts of two rounds. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one lookup may take before it counts as a timeout; must be
    /// shorter than `interval`. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Lookups in flight at once. Default `256`.
    pub concurrency: usize,
    /// UDP sockets per resolver (each its own source port). Default `4`.
    pub sockets_per_resolver: usize,
    /// Events kept while NATS is unreachable; beyond it the oldest are
    /// dropped and counted. Default `100000`.
    pub buffer_capacity: usize,
    /// Service name to priority (`default` or `critical`); services not
    /// listed are `default`. Default `{ dynamodb = "critical" }`.
    pub priorities: BTreeMap<String, Priority>,
    /// Latency thresholds per priority.
    pub thresholds: ThresholdsConfig,
    /// `[prober.confirm]`: re-probing at once what looks wrong.
    pub confirm: ConfirmConfig,
    /// `[prober.adaptive]`: warnings from each endpoint's own recent
    /// latency (off by default).
    pub adaptive: AdaptiveConfig,
    /// Address of `/metrics` and `/healthz`. Port 0 picks a free port (the
    /// bound address is logged). Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
}

/// `[prober.confirm]`: when a lookup fails or crosses a threshold, the
/// prober looks the endpoint up again `count` times, `spacing` apart, and
/// (with `ask_peers`) asks the region's other vantage points to do the
/// same, instead of waiting for the next round. Those events are marked
/// `confirmation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmConfig {
    /// Re-probes per burst; 0 turns confirmation off. Default `3`.
    pub count: u32,
    /// Time between re-probes. Default `200ms`.
    #[serde(with = "humantime_serde")]
    pub spacing: Duration,
    /// Ask the other vantage points of the region
    /// (`<p>.confirm.<region>`). Default `true`.
    pub ask_peers: bool,
}

impl Default for ConfirmConfig {
    fn default() -> Self {
        Self {
            count: 3,
            spacing: Duration::from_millis(200),
            ask_peers: true,
        }
    }
}

/// An explicit endpoint of `[[prober.endpoints]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The DNS name to look up.
    pub name: String,
    /// The service it belongs to (a subject token, e.g. `dynamodb`).
    pub service: String,
    /// The region it belongs to. Default: every prober probes it as its own
    /// region's view of the name.
    pub region: Option<String>,
    /// Its priority. Default: the service's priority.
    pub priority: Option<Priority>,
}

/// `[prober.thresholds]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ThresholdsConfig {
    /// For `default` priority. Default healthy <= 100 ms, warning <= 200 ms.
    pub default: ThresholdConfig,
    /// For `critical` priority. Default healthy <= 50 ms, warning <= 100 ms.
    pub critical: ThresholdConfig,
}

/// One priority's thresholds. A value exactly on a threshold belongs to the
/// better class.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Lookup time up to which an endpoint is healthy.
    #[serde(with = "humantime_serde")]
    pub healthy_max: Duration,
    /// Lookup time up to which it is a warning; above it, critical.
    #[serde(with = "humantime_serde")]
    pub warning_max: Duration,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            default: ThresholdConfig {
                healthy_max: Duration::from_millis(100),
                warning_max: Duration::from_millis(200),
            },
            critical: ThresholdConfig {
                healthy_max: Duration::from_millis(50),
                warning_max: Duration::from_millis(100),
            },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            regions: DEFAULT_REGIONS.map(String::from).to_vec(),
            region: None,
            vantage: None,
            services: DEFAULT_SERVICES.map(String::from).to_vec(),
            domain: "amazonaws.com".into(),
            extra_endpoints_per_service: 0,
            endpoints: Vec::new(),
            resolvers: vec!["system".into()],
            query_type: "a".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            concurrency: 256,
            sockets_per_resolver: 4,
            buffer_capacity: 100_000,
            priorities: BTreeMap::from([("dynamodb".to_owned(), Priority::Critical)]),
            thresholds: ThresholdsConfig::default(),
            confirm: ConfirmConfig::default(),
            adaptive: AdaptiveConfig::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// Where a resolver comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolver {
    /// The address asked.
    pub addr: SocketAddr,
    /// True when taken from /etc/resolv.conf (`"system"`).
    pub system: bool,
}

impl Resolver {
    /// The label carried in events: `ip:port`, or `system:ip:port`.
    pub fn label(&self) -> String {
        if self.system {
            format!("system:{}", self.addr)
        } else {
            self.addr.to_string()
        }
    }
}

/// Parses `ip:port` or a bare `ip` (port 53).
pub fn parse_resolver_addr(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// What one prober instance runs: every value parsed and checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Region probed.
    pub region: Region,
    /// This instance's vantage id.
    pub vantage: String,
    /// Endpoints, in probing order.
    pub endpoints: Vec<Endpoint>,
    /// Resolvers; every endpoint is probed through each.
    pub resolvers: Vec<Resolver>,
    /// Record type queried.
    pub query: QueryKind,
    /// Round interval.
    pub interval: Duration,
    /// Lookup timeout.
    pub timeout: Duration,
    /// Lookups in flight at once.
    pub concurrency: usize,
    /// Sockets per resolver.
    pub sockets_per_resolver: usize,
    /// Event buffer capacity.
    pub buffer_capacity: usize,
    /// Thresholds per priority.
    pub thresholds: ThresholdsByPriority,
    /// Confirmation bursts.
    pub confirm: ConfirmConfig,
    /// Adaptive warnings.
    pub adaptive: AdaptiveConfig,
}

/// The configuration cannot produce a plan for this instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InstanceError {
    /// The key at fault, e.g. `prober.region`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// The region this instance probes, or why there is none.
    pub fn region_to_probe(&self) -> Result<Region, InstanceError> {
        let name = match (&self.region, self.regions.as_slice()) {
            (Some(r), _) => r.clone(),
            (None, [only]) => only.clone(),
            (None, many) => {
                return Err(InstanceError {
                    key: "prober.region",
                    message: format!(
                        "which region should this prober probe? give --region (one of {})",
                        many.join(", ")
                    ),
                })
            }
        };
        Region::parse(&name).map_err(|e| InstanceError {
            key: "prober.region",
            message: e.to_string(),
        })
    }

    /// Builds the plan of one instance. `system_resolvers` are the
    /// nameservers of /etc/resolv.conf (asked for only when `"system"` is
    /// configured).
    pub fn plan(
        &self,
        system_resolvers: impl FnOnce() -> Vec<SocketAddr>,
    ) -> Result<Plan, InstanceError> {
        let region = self.region_to_probe()?;
        let vantage = self
            .vantage
            .clone()
            .unwrap_or_else(|| default_vantage(&region));
        let mut resolvers = Vec::new();
        let mut system = Some(system_resolvers);
        for r in &self.resolvers {
            if r == "system" {
                let found = system.take().map(|f| f()).unwrap_or_default();
                if found.is_empty() {
                    return Err(InstanceError {
                        key: "prober.resolvers",
                        message:
                            "\"system\" is configured but /etc/resolv.conf lists no nameserver"
                                .into(),
                    });
                }
                resolvers.extend(
                    found
                        .into_iter()
                        .map(|addr| Resolver { addr, system: true }),
                );
            } else if let Some(addr) = parse_resolver_addr(r) {
                resolvers.push(Resolver {
                    addr,
                    system: false,
                });
            }
        }
        resolvers.dedup();
        let endpoints = endpoints::build(self, &region).map_err(|message| InstanceError {
            key: "prober.endpoints",
            message,
        })?;
        Ok(Plan {
            region,
            vantage,
            endpoints,
            resolvers,
            query: QueryKind::parse(&self.query_type).unwrap_or(QueryKind::A),
            interval: self.interval,
            timeout: self.timeout,
            concurrency: self.concurrency,
            sockets_per_resolver: self.sockets_per_resolver,
            buffer_capacity: self.buffer_capacity,
            thresholds: ThresholdsByPriority {
                default: Thresholds::new(
                    self.thresholds.default.healthy_max,
                    self.thresholds.default.warning_max,
                ),
                critical: Thresholds::new(
                    self.thresholds.critical.healthy_max,
                    self.thresholds.critical.warning_max,
                ),
            },
            confirm: self.confirm.clone(),
            adaptive: self.adaptive.clone(),
        })
    }

    /// The priority of a service.
    pub fn priority_of(&self, service: &str) -> Priority {
        self.priorities
            .get(service)
            .copied()
            .unwrap_or(Priority::Default)
    }
}

fn default_vantage(region: &Region) -> String {
    rg_bus::instance_id(region.as_str())
}

/// The nameservers of `/etc/resolv.conf`, port 53.
pub fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|text| parse_resolv_conf(&text))
        .unwrap_or_default()
}

/// The `nameserver` lines of a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scoped IPv6 address (fe80::1%eth0) is not a socket address here.
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        for (i, r) in self.regions.iter().enumerate() {
            if let Err(e) = Region::parse(r) {
                p.push(format!("regions[{i}]"), e.to_string());
            }
        }
        if let Some(r) = &self.region {
            if let Err(e) = Region::parse(r) {
                p.push("region", e.to_string());
            }
        }
        if let Some(v) = &self.vantage {
            if v.is_empty() || v.len() > 128 || v.contains(char::is_whitespace) {
                p.push(
                    "vantage",
                    format!("{v:?} must be 1 to 128 characters without white space"),
                );
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            if let Err(e) = ServiceName::parse(s) {
                p.push(format!("services[{i}]"), e.to_string());
            }
        }
        if endpoints::check_name(&self.domain).is_err() {
            p.push("domain", format!("{:?} is not a DNS name", self.domain));
        }
        if self.extra_endpoints_per_service > 100_000 {
            p.push("extra_endpoints_per_service", "at most 100000");
        } else if endpoints::check_name(&self.domain).is_ok() {
            // The longest generated name must still be a DNS name: a long
            // domain would otherwise make every lookup fail at run time.
            let prefix = match self.extra_endpoints_per_service {
                0 => String::new(),
                n => format!("e{n}."),
            };
            let regions = self.regions.iter().chain(self.region.as_ref());
            let longest = regions
                .flat_map(|r| self.services.iter().map(move |s| (s, r)))
                .map(|(s, r)| format!("{prefix}{s}.{r}.{}", self.domain.trim_end_matches('.')))
                .max_by_key(String::len);
            if let Some(name) = longest.filter(|n| n.len() > 253) {
                p.push(
                    "domain",
                    format!(
                        "too long for the generated names: {name:?} has {} characters, DNS allows 253",
                        name.len()
                    ),
                );
            }
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if let Err(message) = endpoints::check_name(&e.name) {
                p.push(format!("endpoints[{i}].name"), message);
            }
            if let Err(err) = ServiceName::parse(&e.service) {
                p.push(format!("endpoints[{i}].service"), err.to_string());
            }
            if let Some(r) = &e.region {
                if let Err(err) = Region::parse(r) {
                    p.push(format!("endpoints[{i}].region"), err.to_string());
                }
            }
        }
        if self.services.is_empty() && self.endpoints.is_empty() {
            p.push("services", "nothing to probe: list services or endpoints");
        }
        if self.resolvers.is_empty() {
            p.push(
                "resolvers",
                "at least one resolver is needed (\"system\" or ip:port)",
            );
        }
        for (i, r) in self.resolvers.iter().enumerate() {
            if r != "system" && parse_resolver_addr(r).is_none() {
                p.push(
                    format!("resolvers[{i}]"),
                    format!("{r:?} is not \"system\" or an ip:port address (e.g. 127.0.0.1:53)"),
                );
            }
        }
        if QueryKind::parse(&self.query_type).is_none() {
            p.push(
                "query_type",
                format!("{:?} is not one of a, aaaa, cname", self.query_type),
            );
        }
        if self.interval.is_zero() {
            p.push("interval", "must be greater than zero");
        }
        if self.timeout.is_zero() {
            p.push("timeout", "must be greater than zero");
        } else if !self.interval.is_zero() && self.timeout >= self.interval {
            p.push(
                "timeout",
                format!(
                    "{:?} must be shorter than interval ({:?}) so rounds keep their schedule",
                    self.timeout, self.interval
                ),
            );
        }
        if self.concurrency == 0 || self.concurrency > 65_536 {
            p.push(
                "concurrency",
                format!("{} is outside 1..=65536", self.concurrency),
            );
        }
        if self.sockets_per_resolver == 0 || self.sockets_per_resolver > 64 {
            p.push(
                "sockets_per_resolver",
                format!("{} is outside 1..=64", self.sockets_per_resolver),
            );
        }
        if self.buffer_capacity == 0 {
            p.push("buffer_capacity", "must be at least 1");
        }
        for service in self.priorities.keys() {
            if let Err(e) = ServiceName::parse(service) {
                p.push(format!("priorities.{service}"), e.to_string());
            }
        }
        for (key, t) in [
            ("thresholds.default", &self.thresholds.default),
            ("thresholds.critical", &self.thresholds.critical),
        ] {
            if t.healthy_max.is_zero() {
                p.push(format!("{key}.healthy_max"), "must be greater than zero");
            }
            if t.warning_max < t.healthy_max {
                p.push(
                    format!("{key}.warning_max"),
                    format!(
                        "{:?} is below healthy_max ({:?})",
                        t.warning_max, t.healthy_max
                    ),
                );
            }
        }
        if self.confirm.count > 0 && self.confirm.spacing.is_zero() {
            p.push("confirm.spacing", "must be greater than zero");
        }
        if self.confirm.count > 20 {
            p.push("confirm.count", "at most 20 re-probes per burst");
        }
        for (key, message) in self.adaptive.problems(self.interval) {
            p.push(key, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file holding only `[prober]` (also for the fuzz tests).
    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub(super) struct Root {
        pub(super) prober: Config,
    }

    impl Validate for Root {
        fn validate(&self, p: &mut Problems) {
            p.section("prober", &self.prober);
        }
    }

    fn load(text: &str) -> Result<Config, rg_bus::ConfigError> {
        rg_bus::config::load_str::<Root>(text, "t.toml", []).map(|r| r.prober)
    }

    fn keys(e: &rg_bus::ConfigError) -> Vec<String> {
        e.problems().iter().map(|p| p.key.clone()).collect()
    }

    #[test]
    fn defaults_are_valid_and_probe_seven_services() {
        let c = load("").unwrap();
        assert_eq!(c.services.len(), 7);
        assert_eq!(c.priority_of("dynamodb"), Priority::Critical);
        assert_eq!(c.priority_of("ec2"), Priority::Default);
    }

    #[test]
    fn bad_values_are_each_named() {
        let e = load(
            "[prober]\ninterval = \"1s\"\ntimeout = \"1s\"\nresolvers = [\"300.1.1.1:53\", \"system\", \"127.0.0.1\"]\n\
             query_type = \"mx\"\nservices = [\"Dynamo DB\"]\nconcurrency = 0\n\
             [prober.thresholds.critical]\nhealthy_max = \"80ms\"\nwarning_max = \"60ms\"\n",
        )
        .unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "prober.services[0]",
                "prober.resolvers[0]",
                "prober.query_type",
                "prober.timeout",
                "prober.concurrency",
                "prober.thresholds.critical.warning_max"
            ],
            "{e}"
        );
    }

    #[test]
    fn a_prober_needs_a_region_when_several_are_watched() {
        let c = Config::default();
        let err = c.plan(Vec::new).unwrap_err();
        assert_eq!(err.key, "prober.region");
        assert!(
            err.message.contains("us-east-1, us-west-2, eu-west-1"),
            "{err}"
        );
        let one = Config {
            regions: vec!["eu-west-1".into()],
            resolvers: vec!["127.0.0.1:53".into()],
            ..Default::default()
        };
        assert_eq!(one.plan(Vec::new).unwrap().region.as_str(), "eu-west-1");
    }

    #[test]
    fn system_resolvers_come_from_resolv_conf() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\n";
        assert_eq!(
            parse_resolv_conf(text),
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let c = Config {
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let plan = c.plan(|| vec!["10.0.0.2:53".parse().unwrap()]).unwrap();
        assert_eq!(plan.resolvers[0].label(), "system:10.0.0.2:53");
        let err = c.plan(Vec::new).unwrap_err();
        assert_eq!(err.key, "prober.resolvers");
    }

    #[test]
    fn a_domain_too_long_for_the_generated_names_is_named() {
        let domain =
            |labels: usize| format!("{}example", format!("{}.", "a".repeat(55)).repeat(labels));
        // 231 characters: a DNS name, but not with
        // "elasticloadbalancing.us-east-1." in front of it.
        let e = load(&format!("[prober]\ndomain = \"{}\"\n", domain(4))).unwrap_err();
        assert_eq!(keys(&e), ["prober.domain"], "{e}");
        assert!(e.to_string().contains("too long"), "{e}");
        assert!(load(&format!("[prober]\ndomain = \"{}\"\n", domain(3))).is_ok());
    }

    #[test]
    fn bare_resolver_ips_use_port_53() {
        assert_eq!(
            parse_resolver_addr("127.0.0.2"),
            Some("127.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            parse_resolver_addr("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_resolver_addr("localhost:53"), None);
    }
}

/// Bad-input fuzzing of the `[prober]` section (proptest): arbitrary text,
/// documents of the real keys with wrong, extreme and odd values, and
/// `RG_PROBER__*` overrides. Whatever the input, loading gives a config that
/// validates and plans, or errors that name their keys: never a panic, never
/// a hang (each case runs under a deadline on its own thread). For a longer
/// run than CI's: `PROPTEST_CASES=100000 cargo test -p rg-prober fuzz`.
#[cfg(test)]
mod fuzz_tests {

    use proptest::prelude::*;
    use rg_testkit::fuzz::{config as fuzz_config, within};

    use super::*;

    /// How long one case may take on a loaded CI machine in a debug build.
    /// Cases take about a millisecond: this only catches hangs.
    const CASE_LIMIT: Duration = Duration::from_secs(1);

    /// Runs `f` on a thread of its own and fails when it takes longer than
    /// [`CASE_LIMIT`]; a panic in `f` is passed on as it is.
    fn within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        within(CASE_LIMIT, f)
    }

    use super::tests::Root;

    /// Loads, and checks the outcome: a config that validates again and
    /// plans (or names the key it cannot plan from), or errors that each
    /// name a key.
    fn load_and_check(text: String, env: Vec<(String, String)>) {
        within_limit(move || check_outcome(&text, env));
    }

    fn check_outcome(text: &str, env: Vec<(String, String)>) {
        match rg_bus::config::load_str::<Root>(text, "t.toml", env) {
            Ok(root) => {
                let c = &root.prober;
                let mut again = Problems::default();
                root.validate(&mut again);
                assert!(again.is_empty(), "a loaded config is valid: {again:?}");
                for s in &c.services {
                    c.priority_of(s);
                }
                // Planning builds every generated name: keep it small.
                let generated = c.services.len() as u64 * u64::from(c.extra_endpoints_per_service);
                if generated <= 10_000 {
                    check_plan(c);
                    // As `--region` would.
                    check_plan(&Config {
                        region: Some("us-east-1".into()),
                        ..c.clone()
                    });
                }
            }
            Err(e) => {
                let text = e.to_string();
                assert!(text.starts_with("t.toml"), "{text}");
                for p in e.problems() {
                    assert!(!p.key.is_empty(), "a problem without a key: {text}");
                    assert!(!p.message.is_empty(), "a problem without a message: {text}");
                }
            }
        }
    }

    /// A plan, or the key it cannot be made from.
    fn check_plan(c: &Config) {
        match c.plan(|| vec![SocketAddr::from(([127, 0, 0, 53], 53))]) {
            Ok(plan) => {
                assert!(!plan.endpoints.is_empty());
                assert!(!plan.resolvers.is_empty());
                assert!(plan.timeout < plan.interval);
                assert!(!plan.vantage.is_empty());
            }
            Err(e) => {
                assert!(e.key.starts_with("prober."), "{e}");
                assert!(!e.message.is_empty(), "{e}");
            }
        }
    }

    const SECTIONS: &[&str] = &[
        "[prober]",
        "[prober.thresholds.default]",
        "[prober.thresholds.critical]",
        "[prober.confirm]",
        "[prober.adaptive]",
        "[prober.priorities]",
        "[[prober.endpoints]]",
        "[prober.bogus]",
        "[[prober]]",
        "[prober.thresholds]",
        "[nats]",
    ];

    const KEYS: &[&str] = &[
        "regions",
        "region",
        "vantage",
        "services",
        "domain",
        "extra_endpoints_per_service",
        "resolvers",
        "query_type",
        "interval",
        "timeout",
        "concurrency",
        "sockets_per_resolver",
        "buffer_capacity",
        "metrics_listen",
        "priorities",
        "thresholds",
        "confirm",
        "adaptive",
        "endpoints",
        "healthy_max",
        "warning_max",
        "count",
        "spacing",
        "ask_peers",
        "enabled",
        "window",
        "quantile",
        "factor",
        "margin",
        "min_samples",
        "name",
        "service",
        "priority",
        "dynamodb",
        "thresholds.default.healthy_max",
        "confirm.count",
        "adaptive.enabled",
        "priorities.ec2",
        "bogus",
    ];

    /// TOML values that fit `key`, right and wrong (so that some documents
    /// load and plan).
    fn plausible(key: &'static str) -> Vec<String> {
        let last = key.rsplit('.').next().unwrap_or(key);
        let values: &[&str] = match last {
            "regions" => &[
                r#"["us-east-1"]"#,
                r#"["us-east-1", "eu-west-1"]"#,
                "[]",
                r#"["US"]"#,
            ],
            "region" => &[r#""us-east-1""#, r#""eu-west-1""#, r#""bad.region""#],
            "vantage" => &[r#""v-1""#, r#""""#, r#""a b""#],
            "services" => &[r#"["dynamodb", "ec2"]"#, "[]", r#"["Dynamo DB"]"#],
            "domain" => &[
                r#""amazonaws.com""#,
                r#""example.""#,
                r#""a..b""#,
                r#""_x-y.z""#,
                // Valid by itself; too long once service and region are added.
                concat!(
                    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                ),
            ],
            "extra_endpoints_per_service" => &["0", "2", "100000", "100001"],
            "resolvers" => &[
                r#"["system"]"#,
                r#"["127.0.0.1:53", "::1"]"#,
                r#"["localhost:53"]"#,
                "[]",
            ],
            "query_type" => &[r#""a""#, r#""AAAA""#, r#""cname""#, r#""mx""#],
            "concurrency" | "sockets_per_resolver" | "buffer_capacity" => {
                &["0", "1", "64", "65536", "65537"]
            }
            "metrics_listen" => &[r#""127.0.0.1:0""#, r#""[::1]:9000""#, r#""nope""#],
            "priorities" => &[
                r#"{ dynamodb = "critical" }"#,
                r#"{ ec2 = "default", "Bad Name" = "critical" }"#,
            ],
            "dynamodb" | "ec2" | "priority" => &[r#""critical""#, r#""default""#, r#""urgent""#],
            "count" | "min_samples" => &["0", "3", "20", "21", "4294967295"],
            "ask_peers" | "enabled" => &["true", "false"],
            "quantile" => &["0.99", "0.5", "0.0", "1.0", "nan"],
            "factor" => &["2.0", "1.0", "0.5", "inf", "1e300"],
            "name" => &[
                r#""dynamodb.us-east-1.amazonaws.com""#,
                r#""bad name""#,
                r#""""#,
            ],
            "service" => &[r#""dynamodb""#, r#""s3""#, r#""S3""#],
            "endpoints" => &[
                r#"[{ name = "x.example", service = "s3" }]"#,
                r#"[{ name = "x.example" }]"#,
            ],
            _ => &[
                r#""10s""#,
                r#""2s""#,
                r#""200ms""#,
                r#""1h""#,
                r#""0s""#,
                r#""6ms""#,
            ],
        };
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// Any TOML value: every type, extreme numbers, durations right and wrong.
    fn toml_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| toml::Value::Float(v).to_string()),
            any::<bool>().prop_map(|v| v.to_string()),
            prop::sample::select(vec![
                "\"-1s\"",
                "\"584942417355y\"",
                "\"18446744073709551615s\"",
                "\"1 day\"",
                "\"\"",
                "18446744073709551616",
                "1979-05-27T07:32:00Z",
            ])
            .prop_map(str::to_owned),
            any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    format!("{{ {} }}", body.join(", "))
                }),
            ]
        })
    }

    fn key_value() -> impl Strategy<Value = (&'static str, String)> {
        prop::sample::select(KEYS).prop_flat_map(|key| {
            (
                Just(key),
                prop_oneof![2 => prop::sample::select(plausible(key)), 1 => toml_value()],
            )
        })
    }

    /// Sections with distinct keys (TOML that parses, so that typed
    /// parsing, validation and planning are reached), or free lines.
    fn document() -> impl Strategy<Value = String> {
        let header = prop_oneof![
            4 => prop::sample::select(&SECTIONS[..7]),
            1 => prop::sample::select(SECTIONS),
        ];
        let section =
            (header, prop::collection::vec(key_value(), 0..8)).prop_map(|(header, kvs)| {
                let kvs: BTreeMap<_, _> = kvs.into_iter().collect();
                let mut text = format!("{header}\n");
                for (k, v) in kvs {
                    text.push_str(&format!("{k} = {v}\n"));
                }
                text
            });
        let line = prop_oneof![
            2 => prop::sample::select(SECTIONS).prop_map(str::to_owned),
            6 => key_value().prop_map(|(k, v)| format!("{k} = {v}")),
            1 => "[ -~]{0,20}",
        ];
        prop_oneof![
            3 => prop::collection::vec(section, 0..4).prop_map(|mut sections| {
                // A table defined twice is a syntax error: keep the first.
                let mut seen = std::collections::BTreeSet::new();
                sections.retain(|s| {
                    !s.starts_with("[prober") || s.starts_with("[[")
                        || seen.insert(s.lines().next().map(str::to_owned))
                });
                sections.concat()
            }),
            1 => prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n")),
        ]
    }

    /// `RG_PROBER__*` overrides of real keys, with values right and wrong.
    fn env_pair() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            3 => key_value().prop_map(|(k, v)| (
                format!("RG_PROBER__{}", k.replace('.', "__").to_uppercase()),
                v.trim_matches('"').to_owned(),
            )),
            1 => (
                prop::sample::select(vec![
                    "RG_PROBER__THRESHOLDS__DEFAULT__HEALTHY_MAX",
                    "RG_PROBER__ADAPTIVE__FACTOR",
                    "RG_PROBER__CONFIRM__COUNT__X",
                    "RG_PROBER",
                    "RG_PROBER__",
                    "RG_PROBER__REGIONS__0",
                ]),
                any::<String>(),
            )
                .prop_map(|(k, v)| (k.to_owned(), v)),
        ]
    }

    proptest! {
        #![proptest_config(fuzz_config(384))]

        /// Text that is mostly not TOML at all.
        #[test]
        fn arbitrary_text_loads_or_names_the_problem(text in any::<String>()) {
            load_and_check(text, Vec::new());
        }

        /// Documents of real and bogus keys: a config that validates and
        /// plans, or an error naming every bad key.
        #[test]
        fn prober_documents_load_and_plan_or_name_every_bad_key(
            text in document(),
            env in prop::collection::vec(env_pair(), 0..4),
        ) {
            load_and_check(text, env);
        }
    }
}
