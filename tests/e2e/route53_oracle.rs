//! An oracle for what Route 53 answers, written from AWS's documentation
//! ("Choosing a routing policy", "How Amazon Route 53 chooses records when
//! health checking is configured", "Evaluate target health"), applied to
//! record sets read back from the account (boto3's JSON), not to
//! regionguard's types. It says which answers a query for a name can get.
//!
//! - A record is healthy unless its health check fails, or it is an alias
//!   with Evaluate Target Health whose target is unhealthy (both must pass
//!   when it has both).
//! - Failover: the PRIMARY if healthy, else the SECONDARY if healthy, else
//!   the PRIMARY.
//! - Weighted: among healthy records of non-zero weight; if none, healthy
//!   records of zero weight; if none is healthy, all records as if healthy.
//! - Latency: the healthy record of the region nearest the client; if none
//!   is healthy, as if all were.
//! - Simple: the record.

use serde_json::Value;

/// Which health checks and alias targets fail.
pub(crate) struct World<'a> {
    /// Health check id -> what it checks (its FQDN).
    pub(crate) checks: &'a Value,
    /// The region whose health checks and load balancers fail.
    pub(crate) failed: &'a str,
}

impl World<'_> {
    fn check_fails(&self, id: &str) -> bool {
        self.checks[id]
            .as_str()
            .is_some_and(|fqdn| fqdn.contains(self.failed))
    }

    fn healthy(&self, set: &Value) -> bool {
        if let Some(id) = set["HealthCheckId"].as_str() {
            if self.check_fails(id) {
                return false;
            }
        }
        let alias = &set["AliasTarget"];
        if alias["EvaluateTargetHealth"].as_bool() == Some(true) {
            let name = alias["DNSName"].as_str().unwrap_or_default();
            // A regional load balancer (or API Gateway endpoint) in the
            // failed region has no healthy targets.
            if name.contains(&format!(".{}.", self.failed)) {
                return false;
            }
        }
        true
    }
}

/// The answer of a record set: its values, or `alias <name>`.
pub(crate) fn answer(set: &Value) -> String {
    match set["AliasTarget"]["DNSName"].as_str() {
        Some(name) => format!("alias {}", name.to_ascii_lowercase()),
        None => set["ResourceRecords"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|r| r["Value"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
    }
}

/// Regions by latency from a client in `client` (nearest first).
fn nearest(client: &str) -> [&'static str; 3] {
    match client {
        "us-west-2" => ["us-west-2", "us-east-1", "eu-west-1"],
        "eu-west-1" => ["eu-west-1", "us-east-1", "us-west-2"],
        _ => ["us-east-1", "us-west-2", "eu-west-1"],
    }
}

/// Every answer a client in `client` can get for `name` `kind`, sorted.
pub(crate) fn answers(
    records: &Value,
    name: &str,
    kind: &str,
    world: &World<'_>,
    client: &str,
) -> Vec<String> {
    let sets: Vec<&Value> = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|s| s["Name"] == name && s["Type"] == kind)
        .collect();
    let healthy: Vec<&Value> = sets.iter().copied().filter(|s| world.healthy(s)).collect();
    let mut out: Vec<String> = if sets.iter().any(|s| s["Failover"].is_string()) {
        let role = |r: &str, among: &[&Value]| {
            among.iter().find(|s| s["Failover"] == r).map(|s| answer(s))
        };
        role("PRIMARY", &healthy)
            .or_else(|| role("SECONDARY", &healthy))
            .or_else(|| role("PRIMARY", &sets))
            .into_iter()
            .collect()
    } else if sets.iter().any(|s| s["Weight"].is_number()) {
        let weight = |s: &&Value| s["Weight"].as_i64().unwrap_or(0);
        let heavy: Vec<&Value> = healthy.iter().copied().filter(|s| weight(s) > 0).collect();
        let pool = if !heavy.is_empty() {
            heavy
        } else if !healthy.is_empty() {
            healthy
        } else {
            let all_heavy: Vec<&Value> = sets.iter().copied().filter(|s| weight(s) > 0).collect();
            if all_heavy.is_empty() {
                sets.clone()
            } else {
                all_heavy
            }
        };
        pool.iter().map(|s| answer(s)).collect()
    } else if sets.iter().any(|s| s["Region"].is_string()) {
        let pool = if healthy.is_empty() { &sets } else { &healthy };
        nearest(client)
            .iter()
            .find_map(|region| pool.iter().find(|s| s["Region"] == *region))
            .map(|s| answer(s))
            .into_iter()
            .collect()
    } else {
        sets.iter().map(|s| answer(s)).collect()
    };
    out.sort();
    out.dedup();
    out
}
