//! Domain types parsed from the wire at the edge, so that logic never
//! re-checks strings or enum numbers.

use std::fmt;
use std::time::Duration;

use crate::v1;

/// The AWS services watched by default (prober, simulator, the shipped
/// dependency map).
pub const DEFAULT_SERVICES: [&str; 7] = [
    "dynamodb",
    "ec2",
    "rds",
    "elasticloadbalancing",
    "lambda",
    "s3",
    "sqs",
];

/// The regions watched by default.
pub const DEFAULT_REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// A wire field that does not hold a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidField {
    /// A required field is empty or unspecified.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field that becomes a NATS subject token holds characters that would
    /// break the subject (dots, wildcards, white space) or is too long.
    #[error("field `{field}` = {value:?} is not a valid name (lowercase letters, digits and '-', 1 to 64 characters)")]
    BadName {
        /// The field's name.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// An enum field holds a number the schema does not define.
    #[error("field `{field}` holds unknown enum value {value}")]
    UnknownEnum {
        /// The field's name.
        field: &'static str,
        /// The offending number.
        value: i32,
    },
}

impl InvalidField {
    /// A short, fixed label for metrics.
    pub fn as_metrics_label(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing_field",
            Self::BadName { .. } => "bad_name",
            Self::UnknownEnum { .. } => "unknown_enum",
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses a name: lowercase ASCII letters, digits and `-`, 1 to 64
            /// characters, not starting with `-` (it is used as a NATS
            /// subject token).
            pub fn parse(s: &str) -> Result<Self, InvalidField> {
                if is_token(s) {
                    Ok(Self(s.to_owned()))
                } else if s.is_empty() {
                    Err(InvalidField::Missing($field))
                } else {
                    Err(InvalidField::BadName { field: $field, value: s.to_owned() })
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidField;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// An AWS region name such as `us-east-1`.
    Region,
    "region"
);
name_type!(
    /// An AWS service short name such as `dynamodb` or `elasticloadbalancing`.
    ServiceName,
    "service"
);

/// Health status of an endpoint; ordered from best to worst, so `max` is the
/// worst of several.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within the healthy threshold.
    Healthy,
    /// Above the healthy threshold, within the warning threshold.
    Warning,
    /// Above the warning threshold, or the lookup failed.
    Critical,
}

impl Status {
    /// Lowercase name, as used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert's severity, from least to most severe: the last token of its
/// subject (`<p>.alerts.<source>.<severity>`), its name in configs
/// (`min_severity`), and [`v1::Severity`] on the wire. The one place
/// these names and mappings are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record (e.g. a notice that a sink gave up on).
    Info,
    /// Minor.
    Low,
    /// Degraded (e.g. an endpoint in warning).
    Medium,
    /// Failing.
    High,
    /// Failing where it matters most (e.g. DynamoDB), or an outage in the
    /// making.
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Self; 5] = [
        Self::Info,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// The name: subject token, config value, label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The severity named `name` (as [`as_str`](Self::as_str) writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The wire enum.
    pub fn to_wire(self) -> v1::Severity {
        match self {
            Self::Info => v1::Severity::Info,
            Self::Low => v1::Severity::Low,
            Self::Medium => v1::Severity::Medium,
            Self::High => v1::Severity::High,
            Self::Critical => v1::Severity::Critical,
        }
    }

    /// From the wire enum; `None` when unspecified.
    pub fn from_wire(s: v1::Severity) -> Option<Self> {
        match s {
            v1::Severity::Unspecified => None,
            v1::Severity::Info => Some(Self::Info),
            v1::Severity::Low => Some(Self::Low),
            v1::Severity::Medium => Some(Self::Medium),
            v1::Severity::High => Some(Self::High),
            v1::Severity::Critical => Some(Self::Critical),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Priority of an endpoint: selects its latency thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Healthy <= 100 ms, warning <= 200 ms by default.
    Default,
    /// Healthy <= 50 ms, warning <= 100 ms by default (e.g. DynamoDB).
    Critical,
}

impl Priority {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Critical => "critical",
        }
    }
}

/// Why a lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupError {
    /// rcode NXDOMAIN.
    Nxdomain,
    /// rcode SERVFAIL.
    Servfail,
    /// rcode REFUSED.
    Refused,
    /// NOERROR with no record of the queried type.
    EmptyAnswer,
    /// No answer within the timeout.
    Timeout,
    /// Socket error or an unparsable answer.
    Io,
    /// Any other non-zero rcode.
    OtherRcode,
}

impl LookupError {
    /// Short fixed label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nxdomain => "nxdomain",
            Self::Servfail => "servfail",
            Self::Refused => "refused",
            Self::EmptyAnswer => "empty_answer",
            Self::Timeout => "timeout",
            Self::Io => "io",
            Self::OtherRcode => "other_rcode",
        }
    }

    /// True for the DNS failures that mean "this name cannot be reached"
    /// (everything but an I/O error on our side).
    pub fn is_dns_failure(self) -> bool {
        !matches!(self, Self::Io)
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated [`v1::HealthEvent`]: what consumers reason about.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Observation {
    /// Region of the endpoint.
    pub region: Region,
    /// Service of the endpoint.
    pub service: ServiceName,
    /// The DNS name probed.
    pub endpoint: String,
    /// The prober instance that observed it.
    pub vantage: String,
    /// Probe round (see the proto).
    pub round_id: u64,
    /// When the lookup was sent, unix ms.
    pub observed_at_unix_ms: i64,
    /// Resolver asked.
    pub resolver: String,
    /// Lookup outcome: `None` on success.
    pub error: Option<LookupError>,
    /// Round-trip time.
    pub response_time: Duration,
    /// Classified status.
    pub status: Status,
    /// Endpoint priority.
    pub priority: Priority,
    /// Part of a confirmation burst.
    pub confirmation: bool,
    /// Per-vantage sequence number.
    pub sequence: u64,
    /// Re-probes to come (see the proto's `burst_size`).
    pub burst_size: u32,
    /// Not healthy, and the other vantage points were asked to confirm.
    pub peers_asked: bool,
    /// Scheduled lookups its prober makes every round (0: unknown).
    pub round_lookups: u32,
}

impl TryFrom<&v1::HealthEvent> for Observation {
    type Error = InvalidField;

    fn try_from(e: &v1::HealthEvent) -> Result<Self, Self::Error> {
        if e.endpoint.is_empty() {
            return Err(InvalidField::Missing("endpoint"));
        }
        if e.vantage.is_empty() {
            return Err(InvalidField::Missing("vantage"));
        }
        Ok(Self {
            region: Region::parse(&e.region)?,
            service: ServiceName::parse(&e.service)?,
            endpoint: e.endpoint.clone(),
            vantage: e.vantage.clone(),
            round_id: e.round_id,
            observed_at_unix_ms: e.observed_at_unix_ms,
            resolver: e.resolver.clone(),
            error: lookup_error_from_wire(e.error_kind)?,
            response_time: Duration::from_micros(e.response_time_us),
            status: Status::try_from(e.status)?,
            priority: Priority::try_from(e.priority)?,
            confirmation: e.confirmation,
            sequence: e.sequence,
            burst_size: e.burst_size,
            peers_asked: e.peers_asked,
            round_lookups: e.round_lookups,
        })
    }
}

impl Observation {
    /// A healthy scheduled lookup of `endpoint` (`<service>.<region>.<...>`,
    /// e.g. `dynamodb.us-east-1.amazonaws.com`): vantage `a`, resolver `r`,
    /// round 1, 3 ms, priority critical for DynamoDB and default otherwise,
    /// no confirmation. For tests and tools; change it with the `with_*`
    /// methods.
    ///
    /// ```
    /// use rg_proto::domain::{LookupError, Observation, Status};
    /// let o = Observation::example("dynamodb.us-east-1.amazonaws.com")
    ///     .with_vantage("b")
    ///     .with_error(LookupError::Timeout);
    /// assert_eq!((o.region.as_str(), o.status), ("us-east-1", Status::Critical));
    /// ```
    ///
    /// # Panics
    /// When `endpoint` does not start with a service and a region label.
    pub fn example(endpoint: &str) -> Self {
        let mut labels = endpoint.split('.');
        let service = labels.next().and_then(|s| ServiceName::parse(s).ok());
        let region = labels.next().and_then(|r| Region::parse(r).ok());
        let (Some(service), Some(region)) = (service, region) else {
            panic!("{endpoint:?} is not <service>.<region>.<domain>");
        };
        let priority = if service.as_str() == "dynamodb" {
            Priority::Critical
        } else {
            Priority::Default
        };
        Self {
            region,
            service,
            endpoint: endpoint.to_owned(),
            vantage: "a".into(),
            round_id: 1,
            observed_at_unix_ms: 1_760_000_000_000,
            resolver: "r".into(),
            error: None,
            response_time: Duration::from_millis(3),
            status: Status::Healthy,
            priority,
            confirmation: false,
            sequence: 0,
            burst_size: 0,
            peers_asked: false,
            round_lookups: 1,
        }
    }

    /// Its prober makes `n` scheduled lookups a round.
    pub fn with_round_lookups(mut self, n: u32) -> Self {
        self.round_lookups = n;
        self
    }

    /// Seen by `vantage`.
    pub fn with_vantage(mut self, vantage: &str) -> Self {
        self.vantage = vantage.to_owned();
        self
    }

    /// Through `resolver`.
    pub fn with_resolver(mut self, resolver: &str) -> Self {
        self.resolver = resolver.to_owned();
        self
    }

    /// In round `round` (observed at `round` x 10 s).
    pub fn with_round(mut self, round: u64) -> Self {
        self.round_id = round;
        self.observed_at_unix_ms = (round as i64).saturating_mul(10_000);
        self
    }

    /// Failed with `error` (critical).
    pub fn with_error(mut self, error: LookupError) -> Self {
        self.error = Some(error);
        self.status = Status::Critical;
        self
    }

    /// Classified `status` (without an error: a slow answer).
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Took `ms` milliseconds.
    pub fn with_millis(mut self, ms: u64) -> Self {
        self.response_time = Duration::from_millis(ms);
        self
    }

    /// A re-probe of a confirmation burst of `burst_size`.
    pub fn as_confirmation(mut self, burst_size: u32) -> Self {
        self.confirmation = true;
        self.burst_size = burst_size;
        self
    }

    /// A scheduled lookup whose prober runs bursts of `burst_size`, and
    /// (when not healthy) asked the other vantages (`peers_asked`).
    pub fn confirming(mut self, burst_size: u32, peers_asked: bool) -> Self {
        self.burst_size = burst_size;
        self.peers_asked = peers_asked;
        self
    }
}

// === wire <-> domain enums ===

impl TryFrom<i32> for Status {
    type Error = InvalidField;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        match v1::Status::try_from(v) {
            Ok(v1::Status::Healthy) => Ok(Self::Healthy),
            Ok(v1::Status::Warning) => Ok(Self::Warning),
            Ok(v1::Status::Critical) => Ok(Self::Critical),
            Ok(v1::Status::Unspecified) => Err(InvalidField::Missing("status")),
            Err(_) => Err(InvalidField::UnknownEnum {
                field: "status",
                value: v,
            }),
        }
    }
}

impl From<Status> for v1::Status {
    fn from(s: Status) -> Self {
        match s {
            Status::Healthy => Self::Healthy,
            Status::Warning => Self::Warning,
            Status::Critical => Self::Critical,
        }
    }
}

impl TryFrom<i32> for Priority {
    type Error = InvalidField;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        match v1::Priority::try_from(v) {
            Ok(v1::Priority::Default) => Ok(Self::Default),
            Ok(v1::Priority::Critical) => Ok(Self::Critical),
            Ok(v1::Priority::Unspecified) => Err(InvalidField::Missing("priority")),
            Err(_) => Err(InvalidField::UnknownEnum {
                field: "priority",
                value: v,
            }),
        }
    }
}

impl From<Priority> for v1::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Default => Self::Default,
            Priority::Critical => Self::Critical,
        }
    }
}

fn lookup_error_from_wire(v: i32) -> Result<Option<LookupError>, InvalidField> {
    use v1::ErrorKind as W;
    let kind = W::try_from(v).map_err(|_| InvalidField::UnknownEnum {
        field: "error_kind",
        value: v,
    })?;
    Ok(match kind {
        W::None => None,
        W::Nxdomain => Some(LookupError::Nxdomain),
        W::Servfail => Some(LookupError::Servfail),
        W::Refused => Some(LookupError::Refused),
        W::EmptyAnswer => Some(LookupError::EmptyAnswer),
        W::Timeout => Some(LookupError::Timeout),
        W::Io => Some(LookupError::Io),
        W::OtherRcode => Some(LookupError::OtherRcode),
    })
}

impl From<Option<LookupError>> for v1::ErrorKind {
    fn from(e: Option<LookupError>) -> Self {
        match e {
            None => Self::None,
            Some(LookupError::Nxdomain) => Self::Nxdomain,
            Some(LookupError::Servfail) => Self::Servfail,
            Some(LookupError::Refused) => Self::Refused,
            Some(LookupError::EmptyAnswer) => Self::EmptyAnswer,
            Some(LookupError::Timeout) => Self::Timeout,
            Some(LookupError::Io) => Self::Io,
            Some(LookupError::OtherRcode) => Self::OtherRcode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names_are_subject_tokens() {
        assert!(Region::parse("us-east-1").is_ok());
        assert_eq!(Region::parse(""), Err(InvalidField::Missing("region")));
        for bad in ["us.east.1", "us-east-*", ">", "US-EAST-1", "us east", "-x"] {
            assert!(
                matches!(Region::parse(bad), Err(InvalidField::BadName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn status_orders_from_best_to_worst() {
        assert!(Status::Healthy < Status::Warning && Status::Warning < Status::Critical);
        assert_eq!(
            [Status::Warning, Status::Critical, Status::Healthy]
                .iter()
                .max(),
            Some(&Status::Critical)
        );
    }

    #[test]
    fn unknown_and_unspecified_enums_are_refused() {
        let mut e = v1::HealthEvent {
            region: "us-east-1".into(),
            service: "ec2".into(),
            endpoint: "ec2.us-east-1.amazonaws.com".into(),
            vantage: "v".into(),
            status: 99,
            priority: 1,
            ..Default::default()
        };
        assert_eq!(
            Observation::try_from(&e),
            Err(InvalidField::UnknownEnum {
                field: "status",
                value: 99
            })
        );
        e.status = 0;
        assert_eq!(
            Observation::try_from(&e),
            Err(InvalidField::Missing("status"))
        );
    }

    #[test]
    fn json_uses_enum_names_and_field_names() {
        let e = v1::HealthEvent {
            region: "us-east-1".into(),
            status: v1::Status::Critical as i32,
            error_kind: v1::ErrorKind::EmptyAnswer as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["status"], "STATUS_CRITICAL");
        assert_eq!(json["error_kind"], "ERROR_KIND_EMPTY_ANSWER");
        assert_eq!(json["region"], "us-east-1");
    }
}

// === impl FailoverPhase, FailoverDecision ===

impl v1::FailoverPhase {
    /// The last subject token of this phase:
    /// `<prefix>.decisions.failover.<token>`.
    pub fn token(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Requested => "requested",
            Self::Planned => "planned",
            Self::Approved => "approved",
            Self::Step => "step",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Rejected => "rejected",
        }
    }
}

/// A failover that cannot be approved (or rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// Only a planned failover waits for an answer.
    #[error(
        "failover {id} is {phase}, not planned: only a planned failover can be approved or rejected"
    )]
    NotPlanned {
        /// The failover.
        id: String,
        /// Its latest phase.
        phase: &'static str,
    },
}

impl v1::FailoverDecision {
    /// The APPROVED phase of this planned failover, by `actor` (e.g.
    /// `"cli:alice"`, `"grpc:alice"`) at `at_unix_ms`. Approving an approved
    /// failover again gives the same approval (idempotent).
    pub fn approval(&self, actor: &str, at_unix_ms: i64) -> Result<Self, ApprovalError> {
        self.answer(v1::FailoverPhase::Approved, actor, at_unix_ms, "")
    }

    /// The REJECTED phase of this planned failover, by `actor`, with the
    /// operator's reason in `error`. Rejecting a rejected failover again
    /// gives the same rejection.
    pub fn rejection(
        &self,
        actor: &str,
        at_unix_ms: i64,
        reason: &str,
    ) -> Result<Self, ApprovalError> {
        let why = if reason.trim().is_empty() {
            format!("rejected by {actor}")
        } else {
            format!("rejected by {actor}: {}", reason.trim())
        };
        self.answer(v1::FailoverPhase::Rejected, actor, at_unix_ms, &why)
    }

    /// An operator's answer to a planned failover: `phase` (approved or
    /// rejected) by `actor`, or the same answer again.
    fn answer(
        &self,
        phase: v1::FailoverPhase,
        actor: &str,
        at_unix_ms: i64,
        error: &str,
    ) -> Result<Self, ApprovalError> {
        match self.phase() {
            v1::FailoverPhase::Planned => {
                let mut answered = self.clone();
                answered.set_phase(phase);
                answered.actor = actor.to_owned();
                answered.at_unix_ms = at_unix_ms;
                answered.step_index = 0;
                error.clone_into(&mut answered.error);
                Ok(answered)
            }
            same if same == phase => Ok(self.clone()),
            other => Err(ApprovalError::NotPlanned {
                id: self.id.clone(),
                phase: other.token(),
            }),
        }
    }

    /// The JetStream message id of an operator's answer (approval or
    /// rejection) to this failover: one answer per failover, however often
    /// and by whomever it is sent; the first stored wins, and a later one
    /// is reported as a duplicate.
    pub fn answer_msg_id(&self) -> String {
        format!("{}:answer", self.id)
    }
}

#[cfg(test)]
mod approval_tests {
    use super::*;

    #[test]
    fn only_a_planned_failover_is_approved_and_approving_twice_is_the_same() {
        let mut d = v1::FailoverDecision {
            id: "f1".into(),
            actor: "failover:a".into(),
            at_unix_ms: 5,
            ..Default::default()
        };
        d.set_phase(v1::FailoverPhase::Requested);
        assert_eq!(
            d.approval("grpc:bob", 9).unwrap_err().to_string(),
            "failover f1 is requested, not planned: only a planned failover can be approved or rejected"
        );
        d.set_phase(v1::FailoverPhase::Planned);
        let a = d.approval("grpc:bob", 9).unwrap();
        assert_eq!(a.phase(), v1::FailoverPhase::Approved);
        assert_eq!(
            (a.actor.as_str(), a.at_unix_ms, a.id.as_str()),
            ("grpc:bob", 9, "f1")
        );
        assert_eq!(a.approval("cli:eve", 11).unwrap(), a);
        // Approved: no rejection any more.
        assert_eq!(
            a.rejection("http:eve", 12, "no").unwrap_err().to_string(),
            "failover f1 is approved, not planned: only a planned failover can be approved or rejected"
        );
    }

    #[test]
    fn a_planned_failover_is_rejected_with_who_and_why_and_then_cannot_be_approved() {
        let mut d = v1::FailoverDecision {
            id: "f2".into(),
            ..Default::default()
        };
        d.set_phase(v1::FailoverPhase::Planned);
        let r = d
            .rejection("http:alice", 7, "  the target has no capacity ")
            .unwrap();
        assert_eq!(r.phase(), v1::FailoverPhase::Rejected);
        assert_eq!(
            r.error,
            "rejected by http:alice: the target has no capacity"
        );
        assert_eq!(r.rejection("cli:bob", 8, "").unwrap(), r);
        assert!(r.approval("cli:bob", 9).is_err());
        assert_eq!(
            d.rejection("cli:bob", 8, "").unwrap().error,
            "rejected by cli:bob"
        );
        assert_eq!(
            r.answer_msg_id(),
            d.approval("x", 1).unwrap().answer_msg_id()
        );
    }
}
