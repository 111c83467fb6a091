//! Every subject and stream name, in one place. Nothing else in the
//! project formats a subject.
//!
//! ```
//! use rg_bus::subjects::Subjects;
//! let s = Subjects::new("rg");
//! assert_eq!(s.health("us-east-1", "dynamodb"), "rg.health.us-east-1.dynamodb");
//! assert_eq!(s.health_region("us-east-1"), "rg.health.us-east-1.>");
//! assert_eq!(s.stream(rg_bus::subjects::Stream::Health), "RG_HEALTH");
//! ```

/// The JetStream streams of the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `<p>.health.>`: health events, 24 h.
    Health,
    /// `<p>.alerts.>`: alerts, 30 days.
    Alerts,
    /// `<p>.decisions.>`: failover decisions (audit trail), 90 days.
    Decisions,
    /// `<p>.snapshots.>`: dashboard snapshots, last one per subject.
    Snapshots,
    /// `<p>.deadletter.>`: payloads that did not decode.
    DeadLetter,
}

impl Stream {
    /// Every stream, in provisioning order.
    pub const ALL: [Stream; 5] = [
        Stream::Health,
        Stream::Alerts,
        Stream::Decisions,
        Stream::Snapshots,
        Stream::DeadLetter,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Self::Health => "HEALTH",
            Self::Alerts => "ALERTS",
            Self::Decisions => "DECISIONS",
            Self::Snapshots => "SNAPSHOTS",
            Self::DeadLetter => "DEADLETTER",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Alerts => "alerts",
            Self::Decisions => "decisions",
            Self::Snapshots => "snapshots",
            Self::DeadLetter => "deadletter",
        }
    }
}

/// Subject builder for one prefix (`rg` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Subjects under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stream name, e.g. `RG_HEALTH`.
    pub fn stream(&self, stream: Stream) -> String {
        format!(
            "{}_{}",
            self.prefix.to_uppercase().replace('-', "_"),
            stream.suffix()
        )
    }

    /// The wildcard subject a stream captures, e.g. `rg.health.>`.
    pub fn stream_subject(&self, stream: Stream) -> String {
        format!("{}.{}.>", self.prefix, stream.token())
    }

    /// `<p>.health.<region>.<service>`.
    pub fn health(&self, region: &str, service: &str) -> String {
        format!("{}.health.{region}.{service}", self.prefix)
    }

    /// `<p>.health.<region>.>`: every service of one region.
    pub fn health_region(&self, region: &str) -> String {
        format!("{}.health.{region}.>", self.prefix)
    }

    /// `<p>.health.>`.
    pub fn health_all(&self) -> String {
        self.stream_subject(Stream::Health)
    }

    /// `<p>.alerts.<source>.<severity>`.
    pub fn alert(&self, source: &str, severity: &str) -> String {
        format!("{}.alerts.{source}.{severity}", self.prefix)
    }

    /// `<p>.alerts.>`.
    pub fn alerts_all(&self) -> String {
        self.stream_subject(Stream::Alerts)
    }

    /// `<p>.decisions.failover.<phase>`.
    pub fn failover(&self, phase: &str) -> String {
        format!("{}.decisions.failover.{phase}", self.prefix)
    }

    /// `<p>.decisions.readiness.<region>`: whether a failover away from
    /// the region would work now.
    pub fn readiness(&self, region: &str) -> String {
        format!("{}.decisions.readiness.{region}", self.prefix)
    }

    /// `<p>.failover.readiness`: an on-demand readiness check (core
    /// request/reply, not stored).
    pub fn readiness_check(&self) -> String {
        format!("{}.failover.readiness", self.prefix)
    }

    /// `<p>.decisions.>`.
    pub fn decisions_all(&self) -> String {
        self.stream_subject(Stream::Decisions)
    }

    /// `<p>.snapshots.dashboard`.
    pub fn dashboard_snapshot(&self) -> String {
        format!("{}.snapshots.dashboard", self.prefix)
    }

    /// `<p>.confirm.<region>`: a prober asks the region's other vantage
    /// points to re-probe an endpoint now (core NATS, not stored).
    pub fn confirm(&self, region: &str) -> String {
        format!("{}.confirm.{region}", self.prefix)
    }

    /// `<p>.sim.faults`: simulator fault control (core request/reply).
    pub fn sim_faults(&self) -> String {
        format!("{}.sim.faults", self.prefix)
    }

    /// `<p>.deadletter.<original subject>`.
    pub fn dead_letter(&self, original: &str) -> String {
        format!("{}.deadletter.{original}", self.prefix)
    }

    /// `<p>.deadletter.>`.
    pub fn dead_letter_all(&self) -> String {
        self.stream_subject(Stream::DeadLetter)
    }

    /// `<p>.>`: everything.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new("rg")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_subject_sits_under_the_prefix() {
        let s = Subjects::new("acme");
        for stream in Stream::ALL {
            assert!(s.stream_subject(stream).starts_with("acme."));
            assert!(s.stream(stream).starts_with("ACME_"));
        }
        assert_eq!(s.failover("requested"), "acme.decisions.failover.requested");
        assert_eq!(
            s.alert("cascade", "critical"),
            "acme.alerts.cascade.critical"
        );
        assert_eq!(
            s.dead_letter("acme.health.x.y"),
            "acme.deadletter.acme.health.x.y"
        );
    }
}
