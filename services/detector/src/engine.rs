//! The detector's logic, free of I/O: observations go in, grouped by region
//! and round; when a round is complete it is decided (quorum, threshold
//! alerts, anomaly batch) and comes out as alerts to publish, state to save
//! and the acks of the messages it was made of.
//!
//! A round of a region is decided when nothing more of it is on its way, or
//! on a deadline (see `rg-rounds`). An event for a round already decided is
//! late: it is acked and counted, not used.
//!
//! Rounds older than `quiet_older_than` (a detector catching up on a
//! backlog) update the state without publishing: a page about an outage
//! that ended an hour ago helps nobody.

use std::collections::HashMap;
use std::time::Duration;

use rg_proto::domain::{LookupError, Observation, Status};
use rg_proto::v1;
use tokio::time::Instant;

use crate::anomaly::{AnomalyConfig, AnomalyDetector, Basis, Verdict};
use crate::features::Check;
use crate::threshold::{self, Change, EndpointState, Open, Severity};
use rg_rounds::advice::{self, Failing, Scope};
use rg_rounds::dependency_map::{default_map, DependencyMap};
pub use rg_rounds::Added;
use rg_rounds::{risk, Agreement, DecidedBy, Quorum, Round, RoundBook, RoundTiming};

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Vantages that must agree.
    pub quorum: Quorum,
    /// Re-notify unresolved alerts this often (0: never).
    pub renotify: Duration,
    /// Rounds a better status must hold before a threshold alert resolves
    /// or eases.
    pub resolve_after: u32,
    /// When rounds are decided.
    pub timing: RoundTiming,
    /// Rounds older than this are decided silently.
    pub quiet_older_than: Duration,
    /// The anomaly model (`None`: off).
    pub anomaly: Option<AnomalyConfig>,
    /// Clean rounds before an anomaly alert resolves.
    pub anomaly_resolve_after: u32,
    /// The dependency map threshold alerts predict impact from (`None`:
    /// they predict none).
    pub dependencies: Option<DependencyMap>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            quorum: Quorum::Majority,
            renotify: Duration::from_secs(30 * 60),
            resolve_after: 2,
            timing: RoundTiming::default(),
            quiet_older_than: Duration::from_secs(10 * 60),
            anomaly: Some(AnomalyConfig::default()),
            anomaly_resolve_after: 3,
            dependencies: DependencyMap::build(&default_map()).ok(),
        }
    }
}

/// An alert ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertToPublish {
    /// `threshold` or `anomaly`: the subject's source token.
    pub source: &'static str,
    /// The subject's severity token.
    pub severity: Severity,
    /// The alert.
    pub alert: v1::Alert,
    /// JetStream message id: the alert id, its state and re-notification.
    pub msg_id: String,
}

/// Persisted state that changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved {
    /// An endpoint's state (key: region, endpoint).
    Endpoint(String, String, EndpointState),
    /// A region's anomaly episode.
    Anomaly(String, AnomalyEpisode),
}

/// A decided round.
#[derive(Debug)]
pub struct Decided<T> {
    /// Region.
    pub region: String,
    /// Round id.
    pub round: u64,
    /// Alerts to publish (empty when decided silently).
    pub alerts: Vec<AlertToPublish>,
    /// State to save.
    pub saved: Vec<Saved>,
    /// Acks of the messages the round was made of.
    pub acks: Vec<T>,
    /// Observations in the round.
    pub events: usize,
    /// The anomaly verdict, when the model ran.
    pub verdict: Option<Verdict>,
    /// Decided without publishing (too old).
    pub quiet: bool,
    /// What decided the round when it was.
    pub decided_by: DecidedBy,
}

/// A region's anomaly episode (persisted).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnomalyEpisode {
    /// The open anomaly alert.
    pub open: Option<Open>,
    /// Consecutive clean rounds while open.
    pub clean_rounds: u32,
}

/// The detector's state.
pub struct Engine<T> {
    config: EngineConfig,
    book: RoundBook<T>,
    endpoints: HashMap<(String, String), EndpointState>,
    models: HashMap<String, AnomalyDetector>,
    episodes: HashMap<String, AnomalyEpisode>,
}

impl<T> Engine<T> {
    /// An engine starting from saved state.
    pub fn new(config: EngineConfig, saved: Vec<Saved>) -> Self {
        let mut engine = Self {
            book: RoundBook::new(config.timing),
            config,
            endpoints: HashMap::new(),
            models: HashMap::new(),
            episodes: HashMap::new(),
        };
        for s in saved {
            match s {
                Saved::Endpoint(region, endpoint, state) => {
                    engine.endpoints.insert((region, endpoint), state);
                }
                Saved::Anomaly(region, episode) => {
                    engine.episodes.insert(region, episode);
                }
            }
        }
        engine
    }

    /// Rounds held, and observations in them.
    pub fn held(&self) -> (usize, usize) {
        self.book.held()
    }

    /// Takes an observation and the ack of its message.
    pub fn add(&mut self, obs: Observation, ack: T, now: Instant) -> Added<T> {
        self.book.add(obs, ack, now)
    }

    /// When the next round becomes due (for the caller's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.book.next_due()
    }

    /// Decides every round that is complete at `now` (`now_ms`: wall clock,
    /// for `quiet_older_than`), oldest first per region.
    pub fn decide_due(&mut self, now: Instant, now_ms: i64) -> Vec<Decided<T>> {
        let rounds = self.book.take_due(now);
        rounds.into_iter().map(|r| self.decide(r, now_ms)).collect()
    }

    /// Decides every held round now (used at shutdown by tests and tools).
    pub fn decide_all(&mut self, now_ms: i64) -> Vec<Decided<T>> {
        let rounds = self.book.take_all();
        rounds.into_iter().map(|r| self.decide(r, now_ms)).collect()
    }

    fn decide(&mut self, data: Round<T>, now_ms: i64) -> Decided<T> {
        let (region, round) = (data.region.clone(), data.round);
        let round_ms = data.start_ms(now_ms);
        let quiet = now_ms - round_ms > self.config.quiet_older_than.as_millis() as i64;
        let mut alerts = Vec::new();
        let mut saved = Vec::new();

        // Threshold: per endpoint, one vote per vantage (its worst status).
        for e in data.endpoints(self.config.quorum) {
            let (endpoint, events, agreement, priority) =
                (e.endpoint, e.events, e.agreement, e.priority);
            let key = (region.clone(), endpoint.to_owned());
            let state = self.endpoints.entry(key).or_default();
            let changes = threshold::step(
                state,
                agreement,
                priority,
                &region,
                endpoint,
                round,
                round_ms,
                self.config.renotify,
                self.config.resolve_after,
            );
            if changes.is_empty() {
                continue;
            }
            let consecutive = state.consecutive_rounds;
            saved.push(Saved::Endpoint(
                region.clone(),
                endpoint.to_owned(),
                state.clone(),
            ));
            for change in changes {
                alerts.push(threshold_alert(
                    &region,
                    endpoint,
                    &events,
                    agreement,
                    consecutive,
                    change,
                    self.config.dependencies.as_ref(),
                    now_ms,
                ));
            }
        }

        // Anomaly: the round is the batch.
        let mut verdict = None;
        if let Some(config) = &self.config.anomaly {
            let model = self
                .models
                .entry(region.clone())
                .or_insert_with(|| AnomalyDetector::new(config.clone()));
            // One row per regular lookup: a confirmation burst repeats a
            // lookup, and would weigh one endpoint several times.
            let regular: Vec<_> = data
                .events
                .iter()
                .filter(|e| !e.confirmation)
                .cloned()
                .collect();
            let checks = confirmed_checks(&data.events);
            let v = model.assess(&checks);
            tracing::debug!(
                %region, round, basis = ?v.basis, rows = checks.len(), flagged = v.flagged.len(),
                share = v.share, expected = v.expected_share, cutoff = v.cutoff, alert = v.alert,
                history = model.history_len(), "anomaly verdict"
            );
            let episode = self.episodes.entry(region.clone()).or_default();
            if let Some(a) = anomaly_step(
                episode,
                &v,
                &region,
                round,
                round_ms,
                self.config.renotify,
                self.config.anomaly_resolve_after,
                &regular,
                config.min_effect_ms,
                now_ms,
            ) {
                saved.push(Saved::Anomaly(region.clone(), episode.clone()));
                alerts.push(a);
            } else if v.alert || episode.open.is_some() {
                saved.push(Saved::Anomaly(region.clone(), episode.clone()));
            }
            verdict = Some(v);
        }
        if quiet {
            alerts.clear();
        }
        Decided {
            region,
            round,
            alerts,
            saved,
            acks: data.acks,
            events: data.events.len(),
            verdict,
            quiet,
            decided_by: data.decided_by,
        }
    }
}

/// The rows the anomaly model sees of a round: one per regular lookup;
/// where the vantage re-probed it (a confirmation burst), the row is what
/// the burst saw (success when most re-probes succeeded, ties failing; the
/// median lookup time), as in the vantage's quorum vote. One lost answer or
/// one slow answer of a heavy-tailed network, which the re-probes do not
/// repeat, is then not an abnormal row.
pub fn confirmed_checks(events: &[Observation]) -> Vec<Check> {
    let mut bursts: HashMap<(&str, &str, &str), Vec<&Observation>> = HashMap::new();
    for e in events.iter().filter(|e| e.confirmation) {
        bursts
            .entry((e.vantage.as_str(), e.resolver.as_str(), e.endpoint.as_str()))
            .or_default()
            .push(e);
    }
    events
        .iter()
        .filter(|e| !e.confirmation)
        .map(|e| {
            let mut check = check_of(e);
            let key = (e.vantage.as_str(), e.resolver.as_str(), e.endpoint.as_str());
            if let Some(burst) = bursts.get(&key) {
                let ok = burst.iter().filter(|b| b.error.is_none()).count();
                check.success = 2 * ok > burst.len();
                let mut times: Vec<f64> = burst
                    .iter()
                    .map(|b| b.response_time.as_secs_f64() * 1000.0)
                    .collect();
                times.sort_by(f64::total_cmp);
                check.response_time_ms = times[times.len() / 2];
            }
            check
        })
        .collect()
}

/// The check the anomaly model sees of an observation.
pub fn check_of(e: &Observation) -> Check {
    Check {
        timestamp_ms: e.observed_at_unix_ms,
        region: e.region.to_string(),
        service: e.service.to_string(),
        endpoint: e.endpoint.clone(),
        vantage: format!("{}/{}", e.vantage, e.resolver),
        success: e.error.is_none(),
        response_time_ms: e.response_time.as_secs_f64() * 1000.0,
    }
}

#[allow(clippy::too_many_arguments)]
fn threshold_alert(
    region: &str,
    endpoint: &str,
    events: &[&Observation],
    agreement: Agreement,
    consecutive: u32,
    change: Change,
    map: Option<&DependencyMap>,
    now_ms: i64,
) -> AlertToPublish {
    let (agreeing, reporting) = match agreement {
        Agreement::Agreed {
            agreeing,
            reporting,
            ..
        } => (agreeing, reporting),
        Agreement::NoQuorum { reporting, .. } => (0, reporting),
    };
    let service = events
        .first()
        .map(|e| e.service.to_string())
        .unwrap_or_default();
    let worst_error = dominant_error(events);
    let evidence = events
        .iter()
        .map(|e| v1::Evidence {
            endpoint: e.endpoint.clone(),
            vantage: e.vantage.clone(),
            status: v1::Status::from(e.status) as i32,
            error_kind: v1::ErrorKind::from(e.error) as i32,
            response_time_us: e.response_time.as_micros() as u64,
            round_id: e.round_id,
            consecutive_rounds: consecutive,
            agreeing: agreeing as u32,
            reporting: reporting as u32,
        })
        .collect();
    let why = |status: Status| match (status, worst_error) {
        (Status::Healthy, _) => String::new(),
        (_, Some(err)) => format!(" ({})", err.as_str()),
        (_, None) => {
            let slowest = events
                .iter()
                .map(|e| e.response_time)
                .max()
                .unwrap_or_default();
            format!(" ({:.0} ms)", slowest.as_secs_f64() * 1000.0)
        }
    };
    let (open, status, state, summary, ended) = match change {
        Change::Fire(open, s) => {
            let summary = format!(
                "{endpoint} is {s}{} at {agreeing}/{reporting} vantage points",
                why(s)
            );
            (open, s, v1::AlertState::Firing, summary, 0)
        }
        Change::Renotify(open, s) => {
            let summary = format!(
                "{endpoint} is still {s}{} after {consecutive} rounds (reminder {})",
                why(s),
                open.renotify_count
            );
            (open, s, v1::AlertState::Firing, summary, 0)
        }
        Change::Resolve(open, s, at) => {
            let summary = format!(
                "{endpoint} is no longer {s} (resolved after {} s)",
                (at - open.since_ms).max(0) / 1000
            );
            (open, s, v1::AlertState::Resolved, summary, at)
        }
    };
    let (predicted_impact, recommended_actions) = if state == v1::AlertState::Firing {
        endpoint_advice(
            map,
            region,
            &service,
            endpoint,
            status,
            worst_error,
            (agreeing, reporting),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let msg_id = format!(
        "{}:{}:{}",
        open.id,
        if state == v1::AlertState::Resolved {
            "resolved"
        } else {
            "firing"
        },
        open.renotify_count
    );
    AlertToPublish {
        source: "threshold",
        severity: open.severity,
        alert: v1::Alert {
            id: open.id.clone(),
            source: v1::AlertSource::Threshold as i32,
            severity: open.severity.to_wire() as i32,
            state: state as i32,
            region: region.to_owned(),
            service,
            endpoint: endpoint.to_owned(),
            summary,
            started_at_unix_ms: open.since_ms,
            emitted_at_unix_ms: now_ms,
            ended_at_unix_ms: ended,
            status: v1::Status::from(status) as i32,
            evidence,
            renotify_count: open.renotify_count,
            predicted_impact,
            recommended_actions,
            ..Default::default()
        },
        msg_id,
    }
}

/// The error most of an endpoint's lookups in the round got (re-probes
/// included, so a SERVFAIL seen once while a server reloaded does not name
/// an outage whose re-probes all say REFUSED); among equals the latest.
fn dominant_error(events: &[&Observation]) -> Option<LookupError> {
    let mut counts: Vec<(LookupError, usize, usize)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(err) = e.error else { continue };
        match counts.iter_mut().find(|(k, _, _)| *k == err) {
            Some(c) => {
                c.1 += 1;
                c.2 = i;
            }
            None => counts.push((err, 1, i)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n, last)| (*n, *last))
        .map(|(e, _, _)| e)
}

/// What a failing endpoint will hurt, from the dependency map (the
/// cascade service's formula, with only this service failing, as much as
/// its vantages agree), and what to do about it.
fn endpoint_advice(
    map: Option<&DependencyMap>,
    region: &str,
    service: &str,
    endpoint: &str,
    status: Status,
    error: Option<LookupError>,
    (agreeing, reporting): (usize, usize),
) -> (Vec<v1::Impact>, Vec<String>) {
    let impacts = map
        .and_then(|map| {
            let i = map.index_of(service)?;
            let weight = match status {
                Status::Critical => 1.0,
                Status::Warning => 0.4,
                Status::Healthy => 0.0,
            };
            let mut direct = vec![0.0; map.len()];
            direct[i] = weight * agreeing as f64 / reporting.max(1) as f64;
            Some(risk::assess(map, &direct).impacts(map, &direct, 0.05))
        })
        .unwrap_or_default();
    let failing = [Failing {
        service,
        status,
        error,
    }];
    let actions = advice::actions(region, Scope::Endpoint(endpoint), &failing, &impacts, None);
    let impacts = impacts
        .into_iter()
        .map(|i| v1::Impact {
            service: i.service,
            degradation: i.degradation,
            path: i.path,
        })
        .collect();
    (impacts, actions)
}

/// Advances a region's anomaly episode; returns the alert to send, if any.
#[allow(clippy::too_many_arguments)]
fn anomaly_step(
    episode: &mut AnomalyEpisode,
    verdict: &Verdict,
    region: &str,
    round: u64,
    round_ms: i64,
    renotify: Duration,
    resolve_after: u32,
    events: &[Observation],
    min_effect_ms: f64,
    now_ms: i64,
) -> Option<AlertToPublish> {
    let (open, state) = if verdict.alert {
        episode.clean_rounds = 0;
        match &mut episode.open {
            None => {
                let open = Open {
                    id: format!("anom:{region}:{round}"),
                    severity: Severity::High,
                    since_round: round,
                    since_ms: round_ms,
                    last_notified_ms: round_ms,
                    renotify_count: 0,
                };
                episode.open = Some(open.clone());
                (open, v1::AlertState::Firing)
            }
            Some(open)
                if !renotify.is_zero()
                    && round_ms - open.last_notified_ms >= renotify.as_millis() as i64 =>
            {
                open.renotify_count += 1;
                open.last_notified_ms = round_ms;
                (open.clone(), v1::AlertState::Firing)
            }
            Some(_) => return None,
        }
    } else {
        let open = episode.open.as_ref()?;
        // A model still learning (a restarted detector) cannot say the
        // region is normal again: the episode waits.
        if verdict.basis == Basis::WarmingUp {
            return None;
        }
        episode.clean_rounds += 1;
        if episode.clean_rounds < resolve_after.max(1) {
            return None;
        }
        let open = open.clone();
        episode.open = None;
        episode.clean_rounds = 0;
        (open, v1::AlertState::Resolved)
    };
    let resolved = state == v1::AlertState::Resolved;
    let n = verdict.scores.len();
    // The rows that make the alert first (failed, or slower than usual by
    // the floor), each said in words before the model's own reasons.
    let mut flagged: Vec<&crate::anomaly::Finding> = verdict.flagged.iter().collect();
    flagged.sort_by_key(|f| !f.practical);
    let anomalies: Vec<v1::AnomalyFinding> = flagged
        .iter()
        .filter_map(|f| {
            let e = events.get(f.index)?;
            let said = match (e.error, f.usual_ms) {
                (Some(err), _) => format!("lookup failed ({err})"),
                (None, Some(usual)) => format!(
                    "{:.1} ms where it usually takes {usual:.1} ms",
                    e.response_time.as_secs_f64() * 1000.0
                ),
                (None, None) => format!(
                    "{:.1} ms, with no usual time known yet",
                    e.response_time.as_secs_f64() * 1000.0
                ),
            };
            let mut reasons = vec![said];
            reasons.extend(f.reasons.iter().filter(|r| !r.contains(" z=")).cloned());
            Some(v1::AnomalyFinding {
                endpoint: e.endpoint.clone(),
                vantage: e.vantage.clone(),
                score: f.score,
                reasons,
            })
        })
        .collect();
    let practical_endpoints: Vec<&str> = flagged
        .iter()
        .filter(|f| f.practical)
        .filter_map(|f| events.get(f.index).map(|e| e.endpoint.as_str()))
        .collect();
    let summary = if resolved {
        format!(
            "{region}: health checks look normal again (anomalous since {})",
            clock(open.since_ms)
        )
    } else {
        let mut endpoints = practical_endpoints;
        endpoints.sort_unstable();
        endpoints.dedup();
        let names = endpoints
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let floor = if min_effect_ms > 0.0 {
            format!("failed or at least {min_effect_ms:.0} ms slower than usual")
        } else {
            "failed or slower than usual".to_owned()
        };
        if verdict.whole_round {
            format!(
                "{region}: lookups are slower than usual across the region: typically +{:.0} ms; {} of {n} checks {floor}",
                verdict.effect_ms, verdict.practical
            )
        } else {
            let normally = if verdict.expected_share.is_finite() {
                format!(" (normally {:.0} %)", verdict.expected_share * 100.0)
            } else {
                String::new()
            };
            let typically = if verdict.effect_ms >= 1.0 {
                format!(" (typically +{:.0} ms)", verdict.effect_ms)
            } else {
                String::new()
            };
            format!(
                "{region}: {} of {n} checks look abnormal{normally}; {} of them {floor}{typically}{}{names}",
                verdict.flagged.len(),
                verdict.practical,
                if names.is_empty() { "" } else { ": " },
            )
        }
    };
    let errors: Vec<LookupError> = events.iter().filter_map(|e| e.error).collect();
    let mut actions = Vec::new();
    if !resolved {
        actions.push(format!("compare {region} with the other regions on the dashboard; check the AWS Health Dashboard for {region}"));
        if !errors.is_empty() {
            actions.push(
                "failed lookups are part of it: those a quorum of vantage points agrees on have threshold alerts of their own"
                    .to_owned(),
            );
        }
    }
    Some(AlertToPublish {
        source: "anomaly",
        severity: Severity::High,
        msg_id: format!(
            "{}:{}:{}",
            open.id,
            if resolved { "resolved" } else { "firing" },
            open.renotify_count
        ),
        alert: v1::Alert {
            id: open.id.clone(),
            source: v1::AlertSource::Anomaly as i32,
            severity: v1::Severity::High as i32,
            state: state as i32,
            region: region.to_owned(),
            summary,
            started_at_unix_ms: open.since_ms,
            emitted_at_unix_ms: now_ms,
            ended_at_unix_ms: if resolved { round_ms } else { 0 },
            anomalies: if resolved { Vec::new() } else { anomalies },
            flagged_share: verdict.share,
            recommended_actions: actions,
            renotify_count: open.renotify_count,
            ..Default::default()
        },
    })
}

/// A unix time in ms as `HH:MM:SS UTC` (alerts are read the same day; a
/// round number means nothing to a person).
pub fn clock(unix_ms: i64) -> String {
    let s = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

impl rg_rounds::feed::Judge for Engine<rg_bus::consume::Pending> {
    type Step = Decided<rg_bus::consume::Pending>;

    fn add(
        &mut self,
        obs: Observation,
        ack: rg_bus::consume::Pending,
        now: Instant,
    ) -> Added<rg_bus::consume::Pending> {
        Engine::add(self, obs, ack, now)
    }

    fn next_due(&self) -> Option<Instant> {
        Engine::next_due(self)
    }

    fn step(&mut self, now: Instant, now_ms: i64) -> Vec<Self::Step> {
        self.decide_due(now, now_ms)
    }

    fn held(&self) -> (usize, usize) {
        Engine::held(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(vantage: &str, confirmation: bool, error: bool, ms: u64) -> Observation {
        let o = Observation::example("dynamodb.us-east-1.amazonaws.com")
            .with_vantage(vantage)
            .with_millis(ms);
        let o = if error {
            o.with_error(LookupError::Timeout)
        } else {
            o
        };
        if confirmation {
            o.as_confirmation(3)
        } else {
            o
        }
    }

    #[test]
    fn a_model_still_learning_does_not_resolve_an_open_anomaly() {
        let open = Open {
            id: "anom:us-east-1:1".into(),
            severity: Severity::High,
            since_round: 1,
            since_ms: 10_000,
            last_notified_ms: 10_000,
            renotify_count: 0,
        };
        let mut episode = AnomalyEpisode {
            open: Some(open),
            clean_rounds: 0,
        };
        let mut learning = AnomalyDetector::new(AnomalyConfig::default());
        let v = learning.assess(&[]);
        assert_eq!(v.basis, Basis::WarmingUp);
        for r in 0..5 {
            let out = anomaly_step(
                &mut episode,
                &v,
                "us-east-1",
                r,
                0,
                Duration::ZERO,
                1,
                &[],
                50.0,
                0,
            );
            assert!(out.is_none());
        }
        assert!(episode.open.is_some() && episode.clean_rounds == 0);
    }

    #[test]
    fn an_alert_names_the_error_most_lookups_got() {
        let d = "rds.us-east-1.amazonaws.com";
        let servfail = Observation::example(d).with_error(LookupError::Servfail);
        let refused = Observation::example(d).with_error(LookupError::Refused);
        let events = [
            &servfail,
            &refused,
            &refused.clone().as_confirmation(3),
            &refused,
        ];
        assert_eq!(dominant_error(&events), Some(LookupError::Refused));
        assert_eq!(dominant_error(&[&servfail]), Some(LookupError::Servfail));
        assert_eq!(dominant_error(&[&Observation::example(d)]), None);
    }

    #[test]
    fn a_lookup_its_burst_did_not_repeat_is_a_normal_row() {
        let events = [
            // a: lost its answer, then three healthy re-probes.
            observation("a", false, true, 400),
            observation("a", true, false, 3),
            observation("a", true, false, 5),
            observation("a", true, false, 4),
            // b: a slow answer, then two failures of three: confirmed.
            observation("b", false, false, 90),
            observation("b", true, true, 400),
            observation("b", true, false, 2),
            observation("b", true, true, 400),
            // c: no burst: its row as it was.
            observation("c", false, false, 2),
        ];
        let rows = confirmed_checks(&events);
        assert_eq!(rows.len(), 3, "one row per regular lookup");
        assert!(
            rows[0].success && (rows[0].response_time_ms - 4.0).abs() < 1e-9,
            "{:?}",
            rows[0]
        );
        assert!(!rows[1].success, "{:?}", rows[1]);
        assert!(rows[2].success && (rows[2].response_time_ms - 2.0).abs() < 1e-9);
    }

    fn obs(
        region: &str,
        endpoint: &str,
        vantage: &str,
        round: u64,
        status: Status,
        error: Option<LookupError>,
    ) -> Observation {
        assert!(endpoint.contains(region));
        let mut o = Observation::example(endpoint)
            .with_vantage(vantage)
            .with_round(round)
            .with_millis(5)
            .with_status(status);
        o.error = error;
        o.priority = rg_proto::domain::Priority::Critical;
        o
    }

    fn engine() -> Engine<u32> {
        Engine::new(
            EngineConfig {
                anomaly: None,
                timing: RoundTiming {
                    settle: Duration::from_millis(100),
                    ..RoundTiming::default()
                },
                ..Default::default()
            },
            Vec::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_are_decided_when_the_next_has_settled() {
        let mut e = engine();
        let t0 = Instant::now();
        let d = "dynamodb.us-east-1.amazonaws.com";
        for (i, v) in ["a", "b", "c"].iter().enumerate() {
            let status = if i < 2 {
                Status::Critical
            } else {
                Status::Healthy
            };
            assert!(matches!(
                e.add(
                    obs("us-east-1", d, v, 5, status, Some(LookupError::EmptyAnswer)),
                    i as u32,
                    t0
                ),
                Added::Held
            ));
        }
        assert!(
            e.decide_due(t0, 50_000).is_empty(),
            "round 5 is not complete yet"
        );
        let t1 = t0 + Duration::from_secs(10);
        e.add(obs("us-east-1", d, "a", 6, Status::Critical, None), 9, t1);
        assert!(
            e.decide_due(t1, 60_000).is_empty(),
            "round 6 has not settled"
        );
        let decided = e.decide_due(t1 + Duration::from_millis(100), 60_100);
        assert_eq!(decided.len(), 1);
        let r = &decided[0];
        assert_eq!((r.round, r.events, r.acks.clone()), (5, 3, vec![0, 1, 2]));
        assert_eq!(r.alerts.len(), 1);
        let a = &r.alerts[0];
        assert_eq!((a.source, a.severity), ("threshold", Severity::Critical));
        assert_eq!(
            a.alert.summary,
            format!("{d} is critical (empty_answer) at 2/3 vantage points")
        );
        assert_eq!(a.alert.evidence.len(), 3);
        // A straggler of round 5 is late.
        assert!(matches!(
            e.add(obs("us-east-1", d, "c", 5, Status::Healthy, None), 7, t1),
            Added::Late(7)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn old_rounds_update_state_silently() {
        let mut e = engine();
        let t0 = Instant::now();
        e.add(
            obs(
                "eu-west-1",
                "ec2.eu-west-1.amazonaws.com",
                "a",
                1,
                Status::Critical,
                Some(LookupError::Timeout),
            ),
            1,
            t0,
        );
        let decided = e.decide_due(t0 + Duration::from_secs(61), 3_600_000);
        assert!(decided[0].quiet && decided[0].alerts.is_empty());
        assert_eq!(decided[0].saved.len(), 1, "the state still changed");
    }
}
