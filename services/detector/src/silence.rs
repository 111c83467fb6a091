//! Silence as a signal: a region none of whose vantages reported a health
//! event for `silence.after` (default three probe intervals) raises
//! `<p>.alerts.silence.high` (`critical` for a region listed in
//! `silence.serving_regions`: one that traffic runs in), resolved when an
//! event of the region arrives again. When every prober of a region stops,
//! that is what an outage of the region hosting them looks like; without
//! this, its endpoints just age out of every view.
//!
//! Silence is judged only from a view the detector can vouch for: its
//! reader of the health stream known current (see [`rg_bus::tail`]). When
//! NATS itself is away, or the stream has no leader, every region looks
//! silent, and that is not what this alert means.
//!
//! The alert's id is `silence:<region>:<unix ms of the last event>`, the
//! same at every detector replica that read the same stream, so a second
//! replica's copy is dropped by JetStream's duplicate window. Open
//! silences are kept in the detector's bucket (`silence.<region>`), so a
//! restarted detector neither fires one again nor loses its resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rg_proto::domain::Severity;
use rg_proto::v1::{Alert, AlertSource, AlertState};
use serde::{Deserialize, Serialize};

/// A silence alert that fired and has not resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSilence {
    /// The alert id.
    pub id: String,
    /// When the region's last event before the silence was observed.
    pub last_seen_ms: i64,
    /// When the alert fired.
    pub fired_at_ms: i64,
    /// Critical (a serving region) or high.
    pub critical: bool,
}

/// What changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `region` went silent.
    Fired(String, OpenSilence),
    /// `region` reported again at the time given (unix ms).
    Resolved(String, OpenSilence, i64),
}

/// The regions' latest events and their open silences.
#[derive(Debug)]
pub struct Watch {
    after_ms: i64,
    serving: BTreeSet<String>,
    regions: Option<BTreeSet<String>>,
    last_seen: BTreeMap<String, i64>,
    open: BTreeMap<String, OpenSilence>,
}

impl Watch {
    /// A watch of `regions` (`None`: every region seen) that calls a
    /// region silent after `after`, critical for `serving` ones, with the
    /// silences that were open when the detector last stopped.
    pub fn new(
        after: Duration,
        serving: impl IntoIterator<Item = String>,
        regions: Option<BTreeSet<String>>,
        open: impl IntoIterator<Item = (String, OpenSilence)>,
    ) -> Self {
        let open: BTreeMap<String, OpenSilence> = open.into_iter().collect();
        let last_seen = open
            .iter()
            .map(|(r, o)| (r.clone(), o.last_seen_ms))
            .collect();
        Self {
            after_ms: after.as_millis() as i64,
            serving: serving.into_iter().collect(),
            regions,
            last_seen,
            open,
        }
    }

    /// Whether this watch judges `region`.
    pub fn covers(&self, region: &str) -> bool {
        self.regions.as_ref().is_none_or(|r| r.contains(region))
    }

    /// An event of `region` observed at `at_ms`: resolves the region's open
    /// silence when the event is newer than its last one.
    pub fn seen(&mut self, region: &str, at_ms: i64) -> Option<Change> {
        if !self.covers(region) {
            return None;
        }
        let last = self.last_seen.entry(region.to_owned()).or_insert(at_ms);
        *last = (*last).max(at_ms);
        let reopened = self
            .open
            .get(region)
            .is_some_and(|o| at_ms > o.last_seen_ms);
        if !reopened {
            return None;
        }
        let open = self.open.remove(region)?;
        Some(Change::Resolved(region.to_owned(), open, at_ms))
    }

    /// Regions that had been silent for longer than `after` when the
    /// reader was last known current (`verified_ms`: every event stored by
    /// then was delivered), with no open silence yet. Judging by that
    /// moment, not by the clock, keeps a reader that stalled from calling
    /// every region silent.
    pub fn check(&mut self, verified_ms: i64, now_ms: i64) -> Vec<Change> {
        let mut out = Vec::new();
        for (region, last) in &self.last_seen {
            if self.open.contains_key(region) || verified_ms - last <= self.after_ms {
                continue;
            }
            let open = OpenSilence {
                id: format!("silence:{region}:{last}"),
                last_seen_ms: *last,
                fired_at_ms: now_ms,
                critical: self.serving.contains(region),
            };
            out.push(Change::Fired(region.clone(), open));
        }
        for c in &out {
            if let Change::Fired(region, open) = c {
                self.open.insert(region.clone(), open.clone());
            }
        }
        out
    }

    /// After a time the view could not be vouched for (NATS away, the
    /// stream without a leader), every region gets a full `after` from
    /// `now_ms` to report again (its probers buffered meanwhile) before it
    /// is called silent; open silences stay open.
    pub fn grace(&mut self, now_ms: i64) {
        for (region, last) in self.last_seen.iter_mut() {
            if !self.open.contains_key(region) {
                *last = (*last).max(now_ms);
            }
        }
    }

    /// Regions with an open silence.
    pub fn silent(&self) -> impl Iterator<Item = &String> {
        self.open.keys()
    }
}

/// The alert of a change, its severity and its message id.
pub fn alert(change: &Change, now_ms: i64) -> (Alert, Severity, String) {
    let (region, open, state) = match change {
        Change::Fired(r, o) => (r, o, AlertState::Firing),
        Change::Resolved(r, o, _) => (r, o, AlertState::Resolved),
    };
    let severity = if open.critical {
        Severity::Critical
    } else {
        Severity::High
    };
    let silent_for = ((now_ms - open.last_seen_ms).max(0) as f64 / 1000.0).round();
    let summary = match change {
        Change::Fired(..) => format!(
            "{region}: no health event from any vantage for {silent_for:.0} s: its probers stopped, cannot reach NATS, or the region hosting them is down"
        ),
        Change::Resolved(_, _, back_at) => format!(
            "{region}: health events again after {:.0} s of silence",
            ((back_at - open.last_seen_ms).max(0) as f64 / 1000.0).round()
        ),
    };
    let mut a = Alert {
        id: open.id.clone(),
        region: region.clone(),
        summary,
        started_at_unix_ms: open.last_seen_ms,
        emitted_at_unix_ms: now_ms,
        ended_at_unix_ms: match change {
            Change::Resolved(_, _, back_at) => *back_at,
            Change::Fired(..) => 0,
        },
        recommended_actions: match change {
            Change::Fired(..) => vec![
                format!("check the probers that probe {region} (`regionguard status`) and their way to NATS"),
                format!("judge {region} from vantages outside it: run probers elsewhere with --region {region}"),
                "a silent region is never chosen as a failover target while its health is unknown".into(),
            ],
            Change::Resolved(..) => Vec::new(),
        },
        ..Default::default()
    };
    a.set_source(AlertSource::Silence);
    a.set_severity(severity.to_wire());
    a.set_state(state);
    let msg_id = format!(
        "{}:{}:0",
        a.id,
        match state {
            AlertState::Resolved => "resolved",
            _ => "firing",
        }
    );
    (a, severity, msg_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(serving: &[&str]) -> Watch {
        Watch::new(
            Duration::from_secs(3),
            serving.iter().map(|s| s.to_string()),
            None,
            Vec::new(),
        )
    }

    #[test]
    fn a_region_fires_once_after_the_silence_and_resolves_when_it_reports_again() {
        let mut w = watch(&["us-east-1"]);
        assert_eq!(w.seen("us-east-1", 1_000), None);
        assert_eq!(w.seen("eu-west-1", 1_000), None);
        assert!(w.check(4_000, 4_000).is_empty(), "3 s is not more than 3 s");
        w.seen("eu-west-1", 3_900);
        let fired = w.check(4_001, 4_001);
        assert_eq!(fired.len(), 1, "{fired:?}");
        let Change::Fired(region, open) = &fired[0] else {
            panic!("{fired:?}")
        };
        assert_eq!(region, "us-east-1");
        assert_eq!(open.id, "silence:us-east-1:1000");
        assert!(open.critical);
        assert!(w
            .check(9_000, 9_000)
            .iter()
            .all(|c| matches!(c, Change::Fired(r, o) if r == "eu-west-1" && !o.critical)));
        assert!(w.check(20_000, 20_000).is_empty(), "fired once");
        // Judged by when the reader was last known current, not the clock.
        let mut stalled = watch(&[]);
        stalled.seen("us-west-2", 1_000);
        assert!(
            stalled.check(3_500, 60_000).is_empty(),
            "a stalled reader calls nothing silent"
        );
        // An event older than the silence's start does not resolve it.
        assert_eq!(w.seen("us-east-1", 900), None);
        match w.seen("us-east-1", 20_500) {
            Some(Change::Resolved(r, o, at)) => {
                assert_eq!(
                    (r.as_str(), o.id.as_str(), at),
                    ("us-east-1", "silence:us-east-1:1000", 20_500)
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.silent().collect::<Vec<_>>(), ["eu-west-1"]);
    }

    #[test]
    fn a_restored_silence_is_not_fired_again_and_resolves() {
        let open = OpenSilence {
            id: "silence:us-west-2:5000".into(),
            last_seen_ms: 5_000,
            fired_at_ms: 9_000,
            critical: false,
        };
        let mut w = Watch::new(
            Duration::from_secs(3),
            Vec::new(),
            None,
            [("us-west-2".to_owned(), open.clone())],
        );
        assert!(w.check(60_000, 60_000).is_empty());
        assert_eq!(
            w.seen("us-west-2", 61_000),
            Some(Change::Resolved("us-west-2".into(), open, 61_000))
        );
    }

    #[test]
    fn after_an_unsure_spell_every_region_gets_a_full_silence_to_report() {
        let mut w = watch(&[]);
        w.seen("us-east-1", 0);
        w.seen("us-west-2", 0);
        assert_eq!(w.check(4_000, 4_000).len(), 2);
        w.seen("us-west-2", 5_000); // resolves
        w.grace(60_000);
        assert!(w.check(62_000, 62_000).is_empty(), "within the grace");
        let fired = w.check(63_001, 63_001);
        assert!(
            matches!(&fired[..], [Change::Fired(r, o)] if r == "us-west-2" && o.last_seen_ms == 60_000),
            "{fired:?}"
        );
        assert_eq!(w.silent().count(), 2, "us-east-1's silence stayed open");
    }

    #[test]
    fn only_the_covered_regions_are_judged() {
        let mut w = Watch::new(
            Duration::from_secs(3),
            Vec::new(),
            Some(BTreeSet::from(["us-east-1".to_owned()])),
            Vec::new(),
        );
        w.seen("us-west-2", 0);
        w.seen("us-east-1", 0);
        let fired = w.check(10_000, 10_000);
        assert_eq!(fired.len(), 1);
        assert!(matches!(&fired[0], Change::Fired(r, _) if r == "us-east-1"));
    }

    #[test]
    fn the_alert_names_the_region_its_severity_and_a_stable_message_id() {
        let open = OpenSilence {
            id: "silence:us-east-1:1000".into(),
            last_seen_ms: 1_000,
            fired_at_ms: 41_000,
            critical: true,
        };
        let (a, severity, msg) = alert(&Change::Fired("us-east-1".into(), open.clone()), 41_000);
        assert_eq!(severity, Severity::Critical);
        assert_eq!(msg, "silence:us-east-1:1000:firing:0");
        assert_eq!(a.source(), AlertSource::Silence);
        assert!(a.summary.contains("for 40 s"), "{}", a.summary);
        let (r, _, msg) = alert(&Change::Resolved("us-east-1".into(), open, 50_000), 50_000);
        assert_eq!(r.state(), AlertState::Resolved);
        assert_eq!(r.ended_at_unix_ms, 50_000);
        assert_eq!(msg, "silence:us-east-1:1000:resolved:0");
    }
}
