//! Route 53 records as a failover moves them: which record set is whose
//! region, and what each routing policy's records become so that Route 53,
//! by its own answer rules, sends the failed region's traffic to the
//! target with every health check of the failed region failing.
//!
//! - simple: the one record takes the target's declared answer (values
//!   or an alias target);
//! - failover: the roles move. The target region's record becomes PRIMARY
//!   and the failed region's SECONDARY; each record keeps its own answer,
//!   alias target and health check. (Swapping only the answers would leave
//!   the failed region's health check on the PRIMARY record: when that
//!   check fails, Route 53 answers the SECONDARY, which would then hold
//!   the failed region's answer.)
//! - weighted: the target's record gets `weight`, every other region's 0;
//! - latency: the failed region's record takes the target region's
//!   record's answer and health check, so the users nearest the failed
//!   region are sent to the target; other regions' users keep theirs.
//!
//! A failback is the exact inverse: every record back to what it was.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{AliasConfig, RecordKind, Route53Record};
use crate::plan::PlanError;

/// An alias target as Route 53 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The target's hosted zone id.
    pub hosted_zone_id: String,
    /// The target's DNS name, with the trailing dot, lowercase.
    pub dns_name: String,
    /// Answered only while the target is healthy.
    pub evaluate_target_health: bool,
}

impl From<&AliasConfig> for Alias {
    fn from(a: &AliasConfig) -> Self {
        Self {
            hosted_zone_id: a.hosted_zone_id.clone(),
            dns_name: canonical(&a.dns_name),
            evaluate_target_health: a.evaluate_target_health,
        }
    }
}

/// A Route 53 record set as regionguard reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    /// Name, with the trailing dot.
    pub name: String,
    /// Record type, e.g. `A`.
    #[serde(rename = "type")]
    pub record_type: String,
    /// TTL, seconds (value records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// The values (empty for an alias record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The alias target (alias records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    /// Set identifier (every routing policy but simple).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    /// Weight (weighted records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// `PRIMARY` or `SECONDARY` (failover records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// The AWS region of a latency record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    /// A routing policy regionguard does not move (`geolocation`,
    /// `geoproximity`, `multivalue`, `ip-based`): such a record is read,
    /// never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_policy: Option<String>,
}

impl RecordSet {
    /// The routing policy of the record set: `simple`, `weighted`,
    /// `failover`, `latency`, or one regionguard does not move.
    pub fn policy(&self) -> &str {
        if let Some(p) = &self.other_policy {
            p
        } else if self.failover.is_some() {
            "failover"
        } else if self.weight.is_some() {
            "weighted"
        } else if self.region.is_some() {
            "latency"
        } else {
            "simple"
        }
    }

    /// The answer in words: the values, or `alias <name>`.
    pub fn answer(&self) -> String {
        match &self.alias {
            Some(a) => format!("alias {}", a.dns_name),
            None => self.values.join(" "),
        }
    }

    /// The record set in a few words: set identifier, role, weight,
    /// region, answer, health check.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(id) = &self.set_identifier {
            parts.push(format!("set {id:?}"));
        }
        if let Some(role) = &self.failover {
            parts.push(role.clone());
        }
        if let Some(w) = self.weight {
            parts.push(format!("weight {w}"));
        }
        if let Some(r) = &self.region {
            parts.push(format!("region {r}"));
        }
        parts.push(self.answer());
        if let Some(hc) = &self.health_check_id {
            parts.push(format!("health check {hc}"));
        }
        parts.join(" ")
    }

    /// The record with another record's answer (values or alias target)
    /// and health check.
    fn answering_as(&self, other: &RecordSet) -> RecordSet {
        RecordSet {
            ttl: other.ttl,
            values: other.values.clone(),
            alias: other.alias.clone(),
            health_check_id: other.health_check_id.clone(),
            ..self.clone()
        }
    }

    /// A value record's TTL set to `ttl` when one is configured.
    fn with_ttl(mut self, ttl: Option<i64>) -> RecordSet {
        if self.alias.is_none() {
            if let Some(t) = ttl {
                self.ttl = Some(t);
            }
        }
        self
    }
}

/// A record name with its trailing dot, lowercase.
pub fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

/// Whether `text` names `region` as a whole word (`app-us-east-1`,
/// `lb.us-east-1.elb.amazonaws.com`, but not `us-east-10`).
fn names_region(text: &str, region: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.match_indices(region).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + region.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The region a record set serves: `set_identifiers` when declared;
/// otherwise a latency record's region, a set identifier naming a region,
/// the declared `values` or `aliases`, or an alias target in a region.
fn region_of(r: &Route53Record, set: &RecordSet, regions: &BTreeSet<String>) -> Option<String> {
    let id = set.set_identifier.as_deref()?;
    if !r.set_identifiers.is_empty() {
        return r
            .set_identifiers
            .iter()
            .find(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.clone());
    }
    if let Some(region) = &set.region {
        return Some(region.clone());
    }
    let named = |text: &str| regions.iter().find(|reg| names_region(text, reg)).cloned();
    if let Some(region) = named(id) {
        return Some(region);
    }
    if !set.values.is_empty() {
        let have = sorted(&set.values);
        if let Some((region, _)) = r.values.iter().find(|(_, v)| sorted(v) == have) {
            return Some(region.clone());
        }
    }
    let alias = set.alias.as_ref()?;
    r.aliases
        .iter()
        .find(|(_, a)| canonical(&a.dns_name) == alias.dns_name)
        .map(|(region, _)| region.clone())
        .or_else(|| named(&alias.dns_name))
}

/// Each region's record set among `found` (weighted, failover, latency).
fn by_region(
    r: &Route53Record,
    what: &str,
    found: &[RecordSet],
    regions: &BTreeSet<String>,
) -> Result<(BTreeMap<String, RecordSet>, Vec<RecordSet>), PlanError> {
    let mut mine: BTreeMap<String, RecordSet> = BTreeMap::new();
    let mut unknown = Vec::new();
    for set in found.iter().filter(|s| s.set_identifier.is_some()) {
        match region_of(r, set, regions) {
            Some(region) => {
                if let Some(other) = mine.get(&region) {
                    return Err(PlanError::Unsupported(format!(
                        "{what}: set identifiers {:?} and {:?} both look like {region}'s record; declare set_identifiers",
                        other.set_identifier.as_deref().unwrap_or_default(),
                        set.set_identifier.as_deref().unwrap_or_default()
                    )));
                }
                mine.insert(region, set.clone());
            }
            None => unknown.push(set.clone()),
        }
    }
    Ok((mine, unknown))
}

/// Each region's record set of a weighted, failover or latency record, as
/// a failover would tell them apart (empty for a simple record).
pub fn sets_by_region(
    r: &Route53Record,
    found: &[RecordSet],
    regions: &BTreeSet<String>,
) -> Result<BTreeMap<String, RecordSet>, PlanError> {
    if r.kind == RecordKind::Simple {
        let what = format!("record {} {} in zone {}", r.name, r.record_type, r.zone_id);
        same_policy(r, &what, found)?;
        return Ok(BTreeMap::new());
    }
    let what = format!("record {} {} in zone {}", r.name, r.record_type, r.zone_id);
    same_policy(r, &what, found)?;
    let (mine, unknown) = by_region(r, &what, found, regions)?;
    if let Some(region) = r.set_identifiers.keys().find(|k| !mine.contains_key(*k)) {
        return Err(PlanError::Missing(format!(
            "{what} with set identifier {:?} ({region})",
            r.set_identifiers[region]
        )));
    }
    if !unknown.is_empty() && mine.is_empty() {
        return Err(PlanError::Unsupported(format!(
            "{what}: no set identifier matches a declared region{}",
            unknown_note(&unknown)
        )));
    }
    Ok(mine)
}

/// Every region a record could send traffic to: the declared ones, and
/// the AWS regions of latency records.
pub fn regions_named(declared: &BTreeSet<String>, found: &[RecordSet]) -> BTreeSet<String> {
    let mut out = declared.clone();
    out.extend(found.iter().filter_map(|s| s.region.clone()));
    out
}

/// The record sets after a failover from `from` to `target`: only those
/// written (each with its set identifier, so the sets they replace can be
/// found). `found` is every record set of the name and type now.
pub fn fail_over(
    r: &Route53Record,
    found: &[RecordSet],
    regions: &BTreeSet<String>,
    from: &str,
    target: &str,
) -> Result<Vec<RecordSet>, PlanError> {
    let what = format!("record {} {} in zone {}", r.name, r.record_type, r.zone_id);
    if found.is_empty() {
        return Err(PlanError::Missing(what));
    }
    same_policy(r, &what, found)?;
    let not_covered = |why: String| PlanError::NotCovered {
        region: target.to_owned(),
        why: vec![why],
    };
    match r.kind {
        RecordKind::Simple => {
            let rec = found
                .iter()
                .find(|x| x.set_identifier.is_none())
                .ok_or_else(|| PlanError::Missing(what.clone()))?;
            // Only a record that sends the failed region's traffic moves.
            if region_answered(r, rec).as_deref() != Some(from) {
                return Ok(Vec::new());
            }
            let after = if let Some(a) = r.aliases.get(target) {
                RecordSet {
                    ttl: None,
                    values: Vec::new(),
                    alias: Some(Alias::from(a)),
                    ..rec.clone()
                }
            } else if let Some(v) = r.values.get(target) {
                RecordSet {
                    ttl: r.ttl.or(rec.ttl).or(Some(60)),
                    values: v.clone(),
                    alias: None,
                    ..rec.clone()
                }
            } else {
                return Err(not_covered(format!(
                    "{what} declares no answer (values or aliases) for it"
                )));
            };
            Ok(vec![after])
        }
        RecordKind::Failover => {
            let (mine, unknown) = by_region(r, &what, found, regions)?;
            let missing_role = |role: &str| {
                found
                    .iter()
                    .all(|s| s.failover.as_deref() != Some(role))
                    .then(|| format!("{what} has no {role} record"))
            };
            if let Some(why) = missing_role("PRIMARY") {
                return Err(PlanError::Unsupported(why));
            }
            let theirs = mine.get(target).ok_or_else(|| {
                not_covered(format!(
                    "{what} has no failover record for it{}",
                    unknown_note(&unknown)
                ))
            })?;
            let Some(failed) = mine.get(from) else {
                // The failing region has no record here: its traffic
                // does not come through this name.
                return Ok(Vec::new());
            };
            if failed.failover.as_deref() != Some("PRIMARY") {
                return Ok(Vec::new());
            }
            Ok(vec![
                RecordSet {
                    failover: Some("PRIMARY".into()),
                    ..theirs.clone()
                }
                .with_ttl(r.ttl),
                RecordSet {
                    failover: Some("SECONDARY".into()),
                    ..failed.clone()
                }
                .with_ttl(r.ttl),
            ])
        }
        RecordKind::Weighted => {
            let (mine, unknown) = by_region(r, &what, found, regions)?;
            if let Some(u) = unknown.iter().find(|u| u.weight.unwrap_or(0) > 0) {
                return Err(PlanError::Unsupported(format!(
                    "{what}: set identifier {:?} (weight {}) is no declared region's record, and it would keep getting traffic; declare set_identifiers",
                    u.set_identifier.as_deref().unwrap_or_default(),
                    u.weight.unwrap_or(0)
                )));
            }
            if !mine.contains_key(target) {
                return Err(not_covered(format!(
                    "{what} has no weighted record for it{}",
                    unknown_note(&unknown)
                )));
            }
            // The failed region gets no traffic from this name: leave it.
            if mine.get(from).and_then(|s| s.weight).unwrap_or(0) == 0 {
                return Ok(Vec::new());
            }
            Ok(mine
                .iter()
                .map(|(region, set)| {
                    RecordSet {
                        weight: Some(if region == target { r.weight } else { 0 }),
                        ..set.clone()
                    }
                    .with_ttl(r.ttl)
                })
                .collect())
        }
        RecordKind::Latency => {
            let (mine, unknown) = by_region(r, &what, found, regions)?;
            let theirs = mine.get(target).ok_or_else(|| {
                not_covered(format!(
                    "{what} has no latency record for it{}",
                    unknown_note(&unknown)
                ))
            })?;
            let Some(failed) = mine.get(from) else {
                return Ok(Vec::new());
            };
            Ok(vec![failed.answering_as(theirs).with_ttl(r.ttl)])
        }
    }
}

/// The region whose declared answer a simple record gives now.
fn region_answered(r: &Route53Record, set: &RecordSet) -> Option<String> {
    if let Some(alias) = &set.alias {
        return r
            .aliases
            .iter()
            .find(|(_, a)| canonical(&a.dns_name) == alias.dns_name)
            .map(|(region, _)| region.clone());
    }
    let have = sorted(&set.values);
    r.values
        .iter()
        .find(|(_, v)| sorted(v) == have)
        .map(|(region, _)| region.clone())
}

/// Every record set of the name uses the declared routing policy.
fn same_policy(r: &Route53Record, what: &str, found: &[RecordSet]) -> Result<(), PlanError> {
    let want = r.kind.name();
    if let Some(other) = found.iter().find(|s| s.policy() != want) {
        let policy = other.policy();
        let moved = ["simple", "weighted", "failover", "latency"].contains(&policy);
        return Err(PlanError::Unsupported(if moved {
            format!(
                "{what} uses {policy} routing{}, not {want}: declare kind = \"{policy}\"",
                other
                    .set_identifier
                    .as_deref()
                    .map(|id| format!(" (set identifier {id:?})"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "{what} uses {policy} routing, which regionguard does not move (simple, weighted, failover and latency records only)"
            )
        }));
    }
    Ok(())
}

fn unknown_note(unknown: &[RecordSet]) -> String {
    if unknown.is_empty() {
        return String::new();
    }
    let ids: Vec<&str> = unknown
        .iter()
        .filter_map(|u| u.set_identifier.as_deref())
        .collect();
    format!(
        " (set identifiers {} match no declared region; declare set_identifiers)",
        ids.join(", ")
    )
}

/// What the target region answers for this record after a failover, when
/// that is a list of values (for verification by DNS); `None` for an alias.
pub fn target_values(
    r: &Route53Record,
    found: &[RecordSet],
    regions: &BTreeSet<String>,
    target: &str,
) -> Option<Vec<String>> {
    let values = match r.kind {
        RecordKind::Simple => r.values.get(target).cloned()?,
        _ => {
            let (mine, _) = by_region(r, "", found, regions).ok()?;
            let set = mine.get(target)?;
            if set.alias.is_some() {
                return None;
            }
            set.values.clone()
        }
    };
    Some(sorted(&values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: RecordKind) -> Route53Record {
        Route53Record {
            zone_id: "Z1".into(),
            name: "api.example.com.".into(),
            record_type: "A".into(),
            kind,
            ttl: None,
            weight: 100,
            set_identifiers: BTreeMap::new(),
            values: BTreeMap::new(),
            aliases: BTreeMap::new(),
        }
    }

    fn set(id: &str, value: &str) -> RecordSet {
        RecordSet {
            name: "api.example.com.".into(),
            record_type: "A".into(),
            ttl: Some(60),
            values: vec![value.into()],
            alias: None,
            set_identifier: Some(id.into()),
            weight: None,
            failover: None,
            region: None,
            health_check_id: None,
            other_policy: None,
        }
    }

    fn alias(id: &str, dns: &str, hc: &str, role: &str) -> RecordSet {
        RecordSet {
            ttl: None,
            values: Vec::new(),
            alias: Some(Alias {
                hosted_zone_id: "Z35SXDOTRQ7X7K".into(),
                dns_name: dns.into(),
                evaluate_target_health: true,
            }),
            failover: Some(role.into()),
            health_check_id: Some(hc.into()),
            ..set(id, "")
        }
    }

    fn regions() -> BTreeSet<String> {
        ["us-east-1", "us-west-2", "eu-west-1"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_region_is_named_as_a_whole_word_only() {
        assert!(names_region("app-us-east-1", "us-east-1"));
        assert!(names_region(
            "dualstack.web-1.us-east-1.elb.amazonaws.com.",
            "us-east-1"
        ));
        assert!(!names_region("app-us-east-10", "us-east-1"));
        assert!(!names_region("xus-east-1", "us-east-1"));
    }

    #[test]
    fn failover_roles_move_with_their_answers_and_health_checks() {
        let found = [
            alias(
                "api-primary",
                "dualstack.web.us-east-1.elb.amazonaws.com.",
                "hc-use1",
                "PRIMARY",
            ),
            alias(
                "api-secondary",
                "dualstack.web.us-west-2.elb.amazonaws.com.",
                "hc-usw2",
                "SECONDARY",
            ),
        ];
        let after = fail_over(
            &config(RecordKind::Failover),
            &found,
            &regions(),
            "us-east-1",
            "us-west-2",
        )
        .unwrap();
        let primary = after
            .iter()
            .find(|s| s.failover.as_deref() == Some("PRIMARY"))
            .unwrap();
        assert_eq!(primary.set_identifier.as_deref(), Some("api-secondary"));
        assert_eq!(primary.health_check_id.as_deref(), Some("hc-usw2"));
        assert!(primary.answer().contains("us-west-2"));
        let secondary = after
            .iter()
            .find(|s| s.failover.as_deref() == Some("SECONDARY"))
            .unwrap();
        assert_eq!(secondary.health_check_id.as_deref(), Some("hc-use1"));
        // The failing region is not the primary: nothing to move.
        let after = fail_over(
            &config(RecordKind::Failover),
            &found,
            &regions(),
            "us-west-2",
            "us-east-1",
        )
        .unwrap();
        assert!(after.is_empty());
    }

    #[test]
    fn a_target_without_a_record_is_not_covered_and_says_so() {
        let mut found = [set("app-us-east-1", "192.0.2.1"), set("blue", "192.0.2.2")];
        found[0].weight = Some(100);
        found[1].weight = Some(0);
        let e = fail_over(
            &config(RecordKind::Weighted),
            &found,
            &regions(),
            "us-east-1",
            "us-west-2",
        )
        .unwrap_err();
        assert!(matches!(e, PlanError::NotCovered { .. }), "{e}");
        assert!(
            e.to_string().contains("blue match no declared region"),
            "{e}"
        );
        // Declared, it is the target's.
        let mut r = config(RecordKind::Weighted);
        r.set_identifiers = [("us-east-1", "app-us-east-1"), ("us-west-2", "blue")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let after = fail_over(&r, &found, &regions(), "us-east-1", "us-west-2").unwrap();
        let w: Vec<_> = after
            .iter()
            .map(|s| (s.set_identifier.clone().unwrap(), s.weight.unwrap()))
            .collect();
        assert_eq!(
            w,
            [("app-us-east-1".into(), 0), ("blue".into(), 100)] as [(String, i64); 2]
        );
    }

    #[test]
    fn a_weighted_record_of_no_region_with_weight_is_refused() {
        let mut found = [
            set("app-us-east-1", "192.0.2.1"),
            set("canary", "192.0.2.9"),
        ];
        found[0].weight = Some(90);
        found[1].weight = Some(10);
        let e = fail_over(
            &config(RecordKind::Weighted),
            &found,
            &regions(),
            "us-east-1",
            "eu-west-1",
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"canary\" (weight 10)"), "{e}");
    }

    #[test]
    fn the_failed_regions_latency_record_answers_as_the_targets() {
        let mut a = set("lat-a", "192.0.2.1");
        a.region = Some("us-east-1".into());
        a.health_check_id = Some("hc-a".into());
        let mut b = set("lat-b", "198.51.100.1");
        b.region = Some("us-west-2".into());
        b.health_check_id = Some("hc-b".into());
        let mut r = config(RecordKind::Latency);
        r.ttl = Some(30);
        let after = fail_over(&r, &[a, b], &regions(), "us-east-1", "us-west-2").unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].set_identifier.as_deref(), Some("lat-a"));
        assert_eq!(after[0].region.as_deref(), Some("us-east-1"));
        assert_eq!(after[0].values, ["198.51.100.1"]);
        assert_eq!(after[0].health_check_id.as_deref(), Some("hc-b"));
        assert_eq!(after[0].ttl, Some(30));
    }

    #[test]
    fn a_simple_record_takes_the_declared_alias_or_values() {
        let mut r = config(RecordKind::Simple);
        r.values
            .insert("us-east-1".into(), vec!["192.0.2.1".into()]);
        r.aliases.insert(
            "us-west-2".into(),
            AliasConfig {
                hosted_zone_id: "Z2FDTNDATAQYW2".into(),
                dns_name: "D111.CloudFront.net".into(),
                evaluate_target_health: false,
            },
        );
        let mut now = set("", "192.0.2.1");
        now.set_identifier = None;
        let after = fail_over(&r, &[now.clone()], &regions(), "us-east-1", "us-west-2").unwrap();
        assert_eq!(after[0].answer(), "alias d111.cloudfront.net.");
        assert_eq!(after[0].ttl, None, "an alias record has no TTL");
        let back = fail_over(&r, &after, &regions(), "us-west-2", "us-east-1").unwrap();
        assert_eq!(back[0], now);
    }

    #[test]
    fn records_of_another_routing_policy_than_declared_are_refused_by_name() {
        let mut geo = set("geo-us", "192.0.2.1");
        geo.other_policy = Some("geolocation".into());
        let e = fail_over(
            &config(RecordKind::Weighted),
            &[geo],
            &regions(),
            "us-east-1",
            "us-west-2",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("uses geolocation routing, which regionguard does not move"),
            "{e}"
        );
        let mut lat = set("lat-1", "192.0.2.1");
        lat.region = Some("us-east-1".into());
        let e = fail_over(
            &config(RecordKind::Weighted),
            &[lat],
            &regions(),
            "us-east-1",
            "us-west-2",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("uses latency routing (set identifier \"lat-1\"), not weighted: declare kind = \"latency\""),
            "{e}"
        );
    }

    #[test]
    fn a_record_that_does_not_carry_the_failed_regions_traffic_is_left_alone() {
        // Weighted: eu-west-1 has weight 0 here.
        let mut found = [
            set("app-us-east-1", "192.0.2.1"),
            set("app-us-west-2", "198.51.100.1"),
            set("app-eu-west-1", "203.0.113.1"),
        ];
        found[0].weight = Some(80);
        found[1].weight = Some(20);
        found[2].weight = Some(0);
        let r = config(RecordKind::Weighted);
        assert!(fail_over(&r, &found, &regions(), "eu-west-1", "us-west-2")
            .unwrap()
            .is_empty());
        // Simple: the record answers us-east-1, not eu-west-1.
        let mut simple = config(RecordKind::Simple);
        for (region, v) in [("us-east-1", "192.0.2.1"), ("us-west-2", "198.51.100.1")] {
            simple.values.insert(region.into(), vec![v.into()]);
        }
        let mut now = set("", "192.0.2.1");
        now.set_identifier = None;
        assert!(
            fail_over(&simple, &[now], &regions(), "eu-west-1", "us-west-2")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn two_records_that_look_like_one_region_are_ambiguous() {
        let mut found = [
            set("web-us-east-1", "192.0.2.1"),
            set("us-east-1-b", "192.0.2.2"),
        ];
        found[0].weight = Some(1);
        found[1].weight = Some(1);
        let e = fail_over(
            &config(RecordKind::Weighted),
            &found,
            &regions(),
            "us-east-1",
            "us-west-2",
        )
        .unwrap_err();
        assert!(e.to_string().contains("both look like us-east-1"), "{e}");
    }
}
