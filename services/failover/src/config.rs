//! The `[failover]` section: the mode, the safety limits, and the AWS
//! resources that move traffic, declared per region.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rg_bus::{Problems, Validate};
use serde::Deserialize;

/// What the failover service does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Log requests only.
    Observe,
    /// Compute and publish the plan; change nothing.
    #[default]
    Plan,
    /// Execute a plan once an operator approves it.
    Approve,
    /// Execute at once.
    Auto,
}

impl Mode {
    /// The mode's name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::Plan => "plan",
            Self::Approve => "approve",
            Self::Auto => "auto",
        }
    }

    /// The mode as the protobuf enum.
    pub fn as_proto(self) -> rg_proto::v1::FailoverMode {
        use rg_proto::v1::FailoverMode as M;
        match self {
            Self::Observe => M::Observe,
            Self::Plan => M::Plan,
            Self::Approve => M::Approve,
            Self::Auto => M::Auto,
        }
    }
}

/// The `[failover]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `observe`, `plan`, `approve` or `auto`. Default `plan`.
    pub mode: Mode,
    /// Durable consumer name. Default `failover`.
    pub durable: String,
    /// This replica's name in the audit trail. Default: the host name.
    pub replica: Option<String>,
    /// No new failover away from a region this long after its last one.
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Automated (not approved) failovers per hour at most. Default `2`.
    pub max_automated_per_hour: u32,
    /// How long verification may take before the failover rolls back.
    /// Default `5m`.
    #[serde(with = "humantime_serde")]
    pub verify_timeout: Duration,
    /// Time between verification checks. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub verify_interval: Duration,
    /// Health events older than this do not count for a region's score.
    /// Default `2m`.
    #[serde(with = "humantime_serde")]
    pub health_window: Duration,
    /// A region scoring below this cannot take traffic. Default `0.8`.
    pub min_target_score: f64,
    /// How much each service counts in a region's health score (0 to 1).
    /// Default: the criticalities of the shipped dependency map.
    pub criticality: BTreeMap<String, f64>,
    /// `[failover.aws]`.
    pub aws: AwsConfig,
    /// `[[failover.route53]]`: DNS records that send traffic to a region.
    pub route53: Vec<Route53Record>,
    /// `[failover.cloudfront]`: an origin that points at a region.
    pub cloudfront: Vec<CloudFrontOrigin>,
    /// `[[failover.cloudfront_origin_groups]]`: an origin group whose
    /// primary (first member) is the active region's origin.
    pub cloudfront_origin_groups: Vec<CloudFrontOriginGroup>,
    /// `[[failover.cloudfront_behaviors]]`: a cache behaviour (the default
    /// one or a path pattern) whose target origin moves to the target
    /// region's origin or origin group.
    pub cloudfront_behaviors: Vec<CloudFrontBehavior>,
    /// Regions to fail over to, in order of preference, e.g.
    /// `["us-west-2", "eu-west-1"]`. Among candidates whose health is
    /// within `score_margin` of the best, the first listed wins; unlisted
    /// regions come after listed ones. Default: none (health decides).
    pub standby_order: Vec<String>,
    /// How much lower a candidate's health may be than the best one's and
    /// still count as good as it (then the standby order, and a warm
    /// standby before a pilot light, decide). Default `0.1`.
    pub score_margin: f64,
    /// `[failover.regions.<region>]`: capacity to scale up in a target.
    pub regions: BTreeMap<String, RegionResources>,
    /// `[failover.verify]`: how to check that traffic moved.
    pub verify: Option<VerifyDns>,
    /// `[failover.switches]`: data-plane routing switches.
    pub switches: SwitchesConfig,
    /// Propose a failback once the failed region has been healthy this
    /// long (0 = never). Default `30m`.
    #[serde(with = "humantime_serde")]
    pub failback_after: Duration,
    /// Execute failbacks without approval (in auto mode). Default `false`:
    /// a failback always waits for an operator.
    pub failback_auto: bool,
    /// Check every declared region's readiness this often: the plan a
    /// failover away from it would run, built against the live state
    /// (nothing executed), and every way its standbys drifted; published
    /// on `rg.decisions.readiness.<region>`, with an alert
    /// `rg.alerts.readiness.<severity>` while a problem lasts. 0 = only on
    /// demand (`regionguard failover readiness`). Default `30m`.
    #[serde(with = "humantime_serde")]
    pub readiness_interval: Duration,
    /// In `auto` mode, execute a plan with an irreversible step (a
    /// database promotion) without approval. Default `false`: such a plan
    /// waits for an operator.
    pub allow_irreversible: bool,
    /// Key-value bucket of the lock and the journal. Default `RG_FAILOVER`.
    pub state_bucket: String,
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
}

/// `[failover.switches]`: per-region "routing switch" HTTP endpoints for
/// Route 53 health checks (200 = take traffic, 503 = drain). Failing over
/// flips them first: traffic then moves through Route 53's own health
/// checkers, a data plane, with no control-plane API call.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwitchesConfig {
    /// Serve and flip the switches. Default `false`.
    pub enabled: bool,
    /// Address of `GET /switch/<region>`. Default `127.0.0.1:8090`.
    pub listen: SocketAddr,
}

impl Default for SwitchesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
        }
    }
}

/// The APIs `aws.endpoints` may override.
pub const ENDPOINT_SERVICES: [&str; 7] = [
    "route53",
    "cloudfront",
    "autoscaling",
    "ecs",
    "elasticloadbalancing",
    "ec2",
    "rds",
];

/// `[failover.aws]`: how to reach AWS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Endpoint override for every AWS API, e.g. a moto server
    /// `http://127.0.0.1:5000`. Default: AWS itself. Also `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Per-service endpoint overrides (`route53`, `cloudfront`,
    /// `autoscaling`, `ecs`, `elasticloadbalancing`, `ec2`, `rds`), e.g. a proxy or a FIPS endpoint for one API;
    /// they win over `endpoint_url`. Default: none.
    pub endpoints: BTreeMap<String, String>,
    /// Region the SDK signs global APIs (Route 53, CloudFront) for.
    /// Default `us-east-1`.
    pub global_region: String,
    /// Attempts per API call (throttling and 5xx are retried with
    /// backoff). Default `5`.
    pub max_attempts: u32,
    /// Use fixed dummy credentials instead of the standard chain: for an
    /// emulator at `endpoint_url` only (refused without one). Default `false`.
    pub emulator_credentials: bool,
    /// Time for a Route 53 change to become INSYNC. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub insync_timeout: Duration,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            endpoints: BTreeMap::new(),
            global_region: "us-east-1".into(),
            max_attempts: 5,
            emulator_credentials: false,
            insync_timeout: Duration::from_secs(300),
        }
    }
}

/// How a Route 53 record routes, and what a failover changes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// One record; it takes the target region's answer (`values` or
    /// `aliases`).
    Simple,
    /// One record per region; the target's weight becomes `weight`, every
    /// other region's 0.
    Weighted,
    /// A PRIMARY and a SECONDARY record, one per region: the roles move,
    /// each record keeping its answer and its health check, so the target
    /// region's record becomes PRIMARY.
    Failover,
    /// One record per region (its Route 53 region): the failed region's
    /// record takes the target region's record's answer and health check.
    Latency,
}

impl RecordKind {
    /// The kind's name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Weighted => "weighted",
            Self::Failover => "failover",
            Self::Latency => "latency",
        }
    }
}

/// An alias target: a regional load balancer, a CloudFront distribution,
/// an API Gateway domain, another record of the zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// The target's hosted zone id (e.g. `Z35SXDOTRQ7X7K` for load
    /// balancers in us-east-1, `Z2FDTNDATAQYW2` for CloudFront).
    pub hosted_zone_id: String,
    /// The target's DNS name.
    pub dns_name: String,
    /// Route 53 answers this record only while the target is healthy.
    /// Default `false`.
    #[serde(default)]
    pub evaluate_target_health: bool,
}

/// `[[failover.route53]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Record {
    /// Hosted zone id, e.g. `Z0123456789ABC`.
    pub zone_id: String,
    /// Record name, e.g. `api.example.com.`.
    pub name: String,
    /// Record type. Default `A`.
    #[serde(default = "default_record_type", rename = "type")]
    pub record_type: String,
    /// `simple`, `weighted`, `failover` or `latency`.
    pub kind: RecordKind,
    /// TTL of the value records a failover writes. Default: each record's
    /// own (a simple record turned from an alias into values: 60).
    #[serde(default)]
    pub ttl: Option<i64>,
    /// For `weighted`: the target's weight. Default `100`.
    #[serde(default = "default_weight")]
    pub weight: i64,
    /// For `weighted`, `failover` and `latency`: each region's record, by
    /// set identifier, e.g. `{ "us-east-1" = "api-use1" }`. Default:
    /// discovered from the record sets (a latency record's region, a set
    /// identifier that names the region, `values` or `aliases` below, an
    /// alias target in the region).
    #[serde(default)]
    pub set_identifiers: BTreeMap<String, String>,
    /// For `simple`: the values that send traffic to each region, e.g.
    /// `{ "us-east-1" = ["192.0.2.10"] }`. For the others: how to tell
    /// each region's record.
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
    /// For `simple`: the alias target that sends traffic to each region.
    /// For the others: how to tell each region's record.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasConfig>,
}

fn default_record_type() -> String {
    "A".into()
}
const fn default_weight() -> i64 {
    100
}

/// `[[failover.cloudfront]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontOrigin {
    /// Distribution id, e.g. `E2ABCDEF`.
    pub distribution_id: String,
    /// The origin's id in the distribution.
    pub origin_id: String,
    /// The origin's domain name for each region.
    pub domains: BTreeMap<String, String>,
}

/// `[[failover.cloudfront_origin_groups]]`: CloudFront fails over between
/// a group's members by itself (on the status codes the group names); the
/// failover makes the target region's origin the group's primary, so
/// CloudFront stops trying the failed region first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontOriginGroup {
    /// Distribution id, e.g. `E2ABCDEF`.
    pub distribution_id: String,
    /// The origin group's id in the distribution.
    pub group_id: String,
    /// Each region's origin id among the group's members.
    pub members: BTreeMap<String, String>,
}

/// `[[failover.cloudfront_behaviors]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudFrontBehavior {
    /// Distribution id, e.g. `E2ABCDEF`.
    pub distribution_id: String,
    /// The behaviour's path pattern, e.g. `/api/*`. Absent (or `*`): the
    /// default behaviour.
    #[serde(default)]
    pub path_pattern: Option<String>,
    /// The origin (or origin group) id that serves each region, e.g.
    /// `{ "us-east-1" = "origin-us-east-1", "us-west-2" = "origin-us-west-2" }`.
    pub targets: BTreeMap<String, String>,
}

impl CloudFrontBehavior {
    /// The path pattern, `None` for the default behaviour.
    pub fn pattern(&self) -> Option<&str> {
        self.path_pattern.as_deref().filter(|p| *p != "*")
    }
}

/// `[failover.regions.<region>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionResources {
    /// Auto Scaling groups. In a target region, the i-th group is scaled to
    /// at least what the failed region's i-th group runs.
    pub autoscaling_groups: Vec<String>,
    /// ECS services, likewise paired by position.
    pub ecs_services: Vec<EcsService>,
    /// Elastic Load Balancing v2 target groups (names or ARNs) in front of
    /// this region's capacity: the state of their load balancers and the
    /// health of their targets count in the region's health score, and a
    /// region whose registered targets are all unhealthy is not chosen.
    pub target_groups: Vec<String>,
    /// RDS DB instances (identifiers) whose status counts in the region's
    /// health score.
    pub db_instances: Vec<String>,
    /// RDS DB clusters (Aurora or Multi-AZ; identifiers) whose status
    /// counts in the region's health score.
    pub db_clusters: Vec<String>,
    /// Cross-region RDS read replicas in this region (identifiers): a
    /// failover to this region promotes each to a standalone database,
    /// after capacity and before traffic. Irreversible: a rollback leaves
    /// a promoted database as it is, and `auto` mode executes such a plan
    /// only with `allow_irreversible = true`.
    pub promote_replicas: Vec<String>,
}

/// An ECS service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EcsService {
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
}

/// `[failover.verify]`: after the changes, this name must resolve, through
/// this resolver, to the target region's values of the first Route 53
/// record, before `verify_timeout`, or the failover rolls back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyDns {
    /// The application's name, e.g. `api.example.com`.
    pub name: String,
    /// Resolver to ask, `ip:port`.
    pub resolver: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Plan,
            durable: "failover".into(),
            replica: None,
            cooldown: Duration::from_secs(600),
            max_automated_per_hour: 2,
            verify_timeout: Duration::from_secs(300),
            verify_interval: Duration::from_secs(5),
            health_window: Duration::from_secs(120),
            min_target_score: 0.8,
            criticality: default_criticality(),
            aws: AwsConfig::default(),
            route53: Vec::new(),
            cloudfront: Vec::new(),
            cloudfront_origin_groups: Vec::new(),
            cloudfront_behaviors: Vec::new(),
            standby_order: Vec::new(),
            score_margin: 0.1,
            regions: BTreeMap::new(),
            verify: None,
            switches: SwitchesConfig::default(),
            failback_after: Duration::from_secs(1800),
            failback_auto: false,
            allow_irreversible: false,
            readiness_interval: Duration::from_secs(1800),
            state_bucket: "RG_FAILOVER".into(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// The criticalities of the shipped dependency map (the cascade
/// service's).
pub fn default_criticality() -> BTreeMap<String, f64> {
    rg_rounds::dependency_map::default_map()
        .into_iter()
        .map(|(s, spec)| (s, spec.criticality))
        .collect()
}

impl Config {
    /// Every region some resource is declared for.
    pub fn declared_regions(&self) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = self.regions.keys().cloned().collect();
        for r in &self.route53 {
            out.extend(r.values.keys().cloned());
            out.extend(r.aliases.keys().cloned());
            out.extend(r.set_identifiers.keys().cloned());
        }
        for b in &self.cloudfront_behaviors {
            out.extend(b.targets.keys().cloned());
        }
        for c in &self.cloudfront {
            out.extend(c.domains.keys().cloned());
        }
        for g in &self.cloudfront_origin_groups {
            out.extend(g.members.keys().cloned());
        }
        out
    }
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        if self.durable.is_empty() {
            p.push("durable", "must not be empty");
        }
        if self.state_bucket.is_empty() {
            p.push("state_bucket", "must not be empty");
        }
        if !(0.0..=1.0).contains(&self.min_target_score) {
            p.push("min_target_score", "must be within 0..=1");
        }
        if self.verify_interval.is_zero() {
            p.push("verify_interval", "must be greater than zero");
        }
        for (s, c) in &self.criticality {
            if !(0.0..=1.0).contains(c) {
                p.push(format!("criticality.{s}"), "must be within 0..=1");
            }
        }
        if self.aws.max_attempts == 0 {
            p.push("aws.max_attempts", "must be at least 1");
        }
        for (service, url) in &self.aws.endpoints {
            if !ENDPOINT_SERVICES.contains(&service.as_str()) {
                p.push(
                    format!("aws.endpoints.{service}"),
                    format!("is not one of {}", ENDPOINT_SERVICES.join(", ")),
                );
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push(
                    format!("aws.endpoints.{service}"),
                    format!("{url:?} is not an http(s) URL"),
                );
            }
        }
        if self.aws.emulator_credentials && self.aws.endpoint_url.is_none() {
            p.push("aws.emulator_credentials", "only with aws.endpoint_url (an emulator); AWS itself takes the standard credential chain");
        }
        if let Some(url) = &self.aws.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                p.push("aws.endpoint_url", format!("{url:?} is not an http(s) URL"));
            }
        }
        let declared = self.declared_regions();
        for (i, r) in self.route53.iter().enumerate() {
            let key = |k: &str| format!("route53[{i}].{k}");
            if r.zone_id.is_empty() {
                p.push(key("zone_id"), "must not be empty");
            }
            if r.name.is_empty() {
                p.push(key("name"), "must not be empty");
            }
            if r.ttl.is_some_and(|t| t < 0) {
                p.push(key("ttl"), "must not be negative");
            }
            for (region, v) in &r.values {
                if v.is_empty() {
                    p.push(key(&format!("values.{region}")), "must not be empty");
                }
                if r.aliases.contains_key(region) {
                    p.push(
                        key(&format!("aliases.{region}")),
                        "a region has values or an alias, not both",
                    );
                }
            }
            for (region, a) in &r.aliases {
                if a.hosted_zone_id.is_empty() || a.dns_name.is_empty() {
                    p.push(
                        key(&format!("aliases.{region}")),
                        "needs hosted_zone_id and dns_name",
                    );
                }
            }
            let mut ids: Vec<&String> = r.set_identifiers.values().collect();
            ids.sort();
            ids.dedup();
            if ids.len() != r.set_identifiers.len() {
                p.push(key("set_identifiers"), "names one record for two regions");
            }
            match r.kind {
                RecordKind::Simple => {
                    if r.values.len() + r.aliases.len() < 2 {
                        p.push(
                            key("values"),
                            "a simple record needs the answer (values or aliases) of at least two regions",
                        );
                    }
                    if !r.set_identifiers.is_empty() {
                        p.push(
                            key("set_identifiers"),
                            "a simple record has no set identifier",
                        );
                    }
                }
                RecordKind::Weighted => {
                    if !(0..=255).contains(&r.weight) {
                        p.push(key("weight"), "must be within 0..=255");
                    }
                }
                RecordKind::Failover | RecordKind::Latency => {}
            }
        }
        for (i, b) in self.cloudfront_behaviors.iter().enumerate() {
            let key = |k: &str| format!("cloudfront_behaviors[{i}].{k}");
            if b.distribution_id.is_empty() {
                p.push(key("distribution_id"), "must not be empty");
            }
            if b.targets.len() < 2 {
                p.push(key("targets"), "needs the origins of at least two regions");
            }
        }
        if !(0.0..=1.0).contains(&self.score_margin) {
            p.push("score_margin", "must be within 0..=1");
        }
        for (i, region) in self.standby_order.iter().enumerate() {
            if self.standby_order[..i].contains(region) {
                p.push("standby_order", format!("names {region} twice"));
            }
            if !declared.is_empty() && !declared.contains(region) {
                p.push(
                    "standby_order",
                    format!("names {region}, for which nothing is declared"),
                );
            }
        }
        for (i, c) in self.cloudfront.iter().enumerate() {
            if c.domains.len() < 2 {
                p.push(
                    format!("cloudfront[{i}].domains"),
                    "needs the domains of at least two regions",
                );
            }
        }
        for (i, g) in self.cloudfront_origin_groups.iter().enumerate() {
            let key = |k: &str| format!("cloudfront_origin_groups[{i}].{k}");
            if g.group_id.is_empty() {
                p.push(key("group_id"), "must not be empty");
            }
            if g.members.len() < 2 {
                p.push(key("members"), "needs the origins of at least two regions");
            }
            let mut ids: Vec<&String> = g.members.values().collect();
            ids.sort();
            ids.dedup();
            if ids.len() != g.members.len() {
                p.push(key("members"), "names one origin for two regions");
            }
        }
        for region in &declared {
            if rg_proto::domain::Region::parse(region).is_err() {
                p.push(format!("regions.{region}"), "is not a valid region name");
            }
        }
    }
}
