//! What an alert recommends: one place for the advice that threshold
//! alerts (one endpoint) and cascade alerts (a region) give, from what is
//! failing and what the dependency map says it will hurt.
//!
//! ```
//! use rg_proto::domain::{LookupError, Status};
//! use rg_rounds::advice::{actions, Failing, Scope};
//! let failing = [Failing { service: "dynamodb", status: Status::Critical, error: Some(LookupError::EmptyAnswer) }];
//! let todo = actions("us-east-1", Scope::Endpoint("dynamodb.us-east-1.amazonaws.com"), &failing, &[], None);
//! assert!(todo[0].contains("cannot resolve dynamodb.us-east-1.amazonaws.com (empty_answer)"));
//! assert!(todo.iter().any(|a| a.contains("global-table replica outside us-east-1")));
//! ```

use rg_proto::domain::{LookupError, Status};

use crate::alerting::Severity;
use crate::risk::Impact;

/// A service failing in a region, as the alert saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failing<'a> {
    /// The service, e.g. `dynamodb`.
    pub service: &'a str,
    /// Its agreed status.
    pub status: Status,
    /// The lookup error a quorum saw, if it failed (not merely slow).
    pub error: Option<LookupError>,
}

/// What the alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One endpoint (a threshold alert): the region's failover is the
    /// cascade service's to decide.
    Endpoint(&'a str),
    /// A whole region (a cascade alert).
    Region,
}

/// What to do, most urgent first. `severity` is the region's (cascade
/// alerts); it adds moving traffic (high and above) and pausing
/// deployments (medium and above).
pub fn actions(
    region: &str,
    scope: Scope<'_>,
    failing: &[Failing<'_>],
    impacts: &[Impact],
    severity: Option<Severity>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Scope::Endpoint(endpoint) = scope {
        for f in failing.iter().filter(|f| f.status != Status::Healthy) {
            out.push(match f.error {
                Some(e) if e.is_dns_failure() => format!(
                    "clients in {region} cannot resolve {endpoint} ({e}): check the AWS Health Dashboard for {} in {region}",
                    f.service
                ),
                Some(e) => format!(
                    "lookups of {endpoint} fail ({e}) at most vantage points: check the probers' network and the AWS Health Dashboard for {} in {region}",
                    f.service
                ),
                None => format!(
                    "{endpoint} answers slowly: check the AWS Health Dashboard for {} in {region}; a slow-down often comes before an outage",
                    f.service
                ),
            });
        }
    }
    if severity >= Some(Severity::High) {
        out.push(format!(
            "move traffic from {region} to the healthiest other region"
        ));
    }
    if severity >= Some(Severity::Medium) {
        out.push(format!("pause deployments in {region}"));
    }
    let critical = |s: &str| {
        failing
            .iter()
            .any(|f| f.service == s && f.status == Status::Critical)
    };
    if critical("dynamodb") {
        out.push(format!(
            "switch DynamoDB clients to a global-table replica outside {region}"
        ));
    }
    if critical("ec2")
        || impacts
            .iter()
            .any(|i| i.service == "ec2" && i.degradation >= 0.5)
    {
        out.push(format!(
            "hold instance launches and scaling in {region}: new capacity may not come up"
        ));
    }
    if let Scope::Endpoint(_) = scope {
        let hurt: Vec<&str> = impacts.iter().take(4).map(|i| i.service.as_str()).collect();
        if !hurt.is_empty() {
            out.push(format!(
                "expect trouble in {} in {region} (they depend on it); the cascade alert for {region} weighs the whole region and decides on a failover request",
                hurt.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(service: &str, status: Status, error: Option<LookupError>) -> Failing<'_> {
        Failing {
            service,
            status,
            error,
        }
    }

    #[test]
    fn an_endpoint_alert_says_what_fails_and_what_it_will_hurt_but_leaves_failover_to_the_cascade()
    {
        let impacts = [Impact {
            service: "ec2".into(),
            degradation: 0.7,
            path: vec!["dynamodb".into(), "ec2".into()],
        }];
        let todo = actions(
            "us-east-1",
            Scope::Endpoint("dynamodb.us-east-1.amazonaws.com"),
            &[failing(
                "dynamodb",
                Status::Critical,
                Some(LookupError::Refused),
            )],
            &impacts,
            None,
        );
        assert!(
            todo[0].starts_with(
                "clients in us-east-1 cannot resolve dynamodb.us-east-1.amazonaws.com (refused)"
            ),
            "{todo:?}"
        );
        assert!(todo.iter().any(|a| a.contains("global-table replica")));
        assert!(todo.iter().any(|a| a.starts_with("hold instance launches")));
        assert!(todo
            .iter()
            .any(|a| a.starts_with("expect trouble in ec2 in us-east-1")));
        assert!(
            !todo.iter().any(|a| a.starts_with("move traffic")),
            "{todo:?}"
        );
    }

    #[test]
    fn a_slow_endpoint_is_not_called_unresolvable() {
        let todo = actions(
            "eu-west-1",
            Scope::Endpoint("ec2.eu-west-1.amazonaws.com"),
            &[failing("ec2", Status::Warning, None)],
            &[],
            None,
        );
        assert_eq!(todo.len(), 1, "{todo:?}");
        assert!(todo[0].starts_with("ec2.eu-west-1.amazonaws.com answers slowly"));
    }

    #[test]
    fn a_region_alert_moves_traffic_from_high_and_pauses_deployments_from_medium() {
        let f = [failing("ec2", Status::Critical, Some(LookupError::Timeout))];
        let at = |s| actions("us-east-1", Scope::Region, &f, &[], s);
        assert!(at(Some(Severity::High))[0].starts_with("move traffic from us-east-1"));
        assert!(at(Some(Severity::Medium))[0].starts_with("pause deployments"));
        assert!(at(Some(Severity::Low))[0].starts_with("hold instance launches"));
    }
}
