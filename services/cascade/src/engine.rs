//! The cascade service's logic, free of I/O: complete rounds come in, and
//! out come alerts on changes of a region's severity, failover requests, the
//! regions' state to save, and the acks of the messages used.
//!
//! Per region and round: each service's agreed status (the worst of its
//! endpoints' quorum-agreed statuses) and how long it has held; the risk
//! score (see [`crate::risk`]); the severity from the score, or critical at
//! once for a quorum-agreed DNS failure of an immediate service (DynamoDB).
//!
//! Failover requests are decided after the rounds of a pass, across
//! regions: a region critical for `hysteresis_rounds` rounds (one, for an
//! immediate DNS failure), outside its cooldown, gets a request when
//! another region is fresh and healthy enough to take its traffic. Regions
//! that have not yet decided the same round are waited for (up to
//! `round_timeout`), so that a failure hitting every region at once is not
//! sent to a region whose bad round is still being collected. When no region
//! qualifies, the open alert is repeated once, saying why.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rg_proto::domain::{LookupError, Observation, Status};
use rg_proto::v1;
use rg_rounds::advice::{self, Failing, Scope};
use rg_rounds::alerting::{Open, Severity};
use rg_rounds::{Agreement, Quorum, Round, RoundBook};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use rg_rounds::Added;

use crate::config::{Config, FailoverPolicy, SeverityThresholds};
use crate::dependency_map::DependencyMap;
use crate::risk::{self, Impact};

/// One service's health in a region, as the rounds have shown it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceTrack {
    /// Agreed status in the last round it was reported.
    pub status: Option<Status>,
    /// Consecutive rounds at warning or worse.
    pub unhealthy_rounds: u32,
    /// Consecutive rounds critical.
    pub critical_rounds: u32,
    /// Vantages agreeing / reporting in the last round.
    pub agreeing: u32,
    /// Vantages reporting in the last round.
    pub reporting: u32,
    /// A quorum saw a DNS failure: any failed lookup but a local I/O error
    /// ([`LookupError::is_dns_failure`]: NXDOMAIN, SERVFAIL, REFUSED, an
    /// empty answer, a timeout, another rcode).
    pub dns_failure: bool,
}

/// What the service remembers of a region (persisted across restarts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionState {
    /// Per service.
    pub services: BTreeMap<String, ServiceTrack>,
    /// The open alert.
    pub open: Option<Open>,
    /// Risk score of the last decided round.
    pub risk: f64,
    /// The last decided round.
    pub last_round: u64,
    /// Round time of the last decided round, unix ms.
    pub round_ms: i64,
    /// Wall clock when it was decided, unix ms.
    pub decided_at_ms: i64,
    /// Consecutive critical rounds.
    pub critical_rounds: u32,
    /// The last round had a quorum DNS failure of an immediate service.
    pub immediate_failure: bool,
    /// Round time of the last failover request, unix ms.
    pub last_request_ms: Option<i64>,
    /// The open alert was already repeated to say no region can take over.
    pub no_target_noted: bool,
    /// The open alert was already repeated to say the cooldown holds a new
    /// request back.
    #[serde(default)]
    pub cooldown_noted: bool,
    /// Services critical when the open alert was last sent.
    #[serde(default)]
    pub alerted_critical: Vec<String>,
    /// The last round was decided silently (a backlog).
    pub quiet: bool,
    /// The alert's last summary, evidence and actions (to repeat it).
    #[serde(default)]
    pub last_alert: Option<AlertBody>,
}

/// The text of an alert, kept to repeat it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertBody {
    /// One line.
    pub summary: String,
    /// Services expected to suffer.
    pub impacts: Vec<(String, f64, Vec<String>)>,
    /// What to do.
    pub actions: Vec<String>,
}

/// Something to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// On `<p>.alerts.cascade.<severity>`.
    Alert {
        /// Subject token.
        severity: Severity,
        /// The alert.
        alert: v1::Alert,
        /// JetStream message id.
        msg_id: String,
    },
    /// On `<p>.decisions.failover.requested`.
    Request {
        /// The request.
        decision: v1::FailoverDecision,
        /// JetStream message id.
        msg_id: String,
    },
}

/// One step's output.
#[derive(Debug)]
pub struct Step<T> {
    /// Region concerned.
    pub region: String,
    /// What to publish, in order.
    pub out: Vec<Publication>,
    /// Region state to save after publishing.
    pub saved: Option<RegionState>,
    /// Acks to send after that.
    pub acks: Vec<T>,
}

/// The cascade's state.
pub struct Engine<T> {
    map: DependencyMap,
    quorum: Quorum,
    confirm_rounds: u32,
    immediate: Vec<String>,
    thresholds: SeverityThresholds,
    failover: FailoverPolicy,
    quiet_older_than: Duration,
    round_timeout: Duration,
    book: RoundBook<T>,
    regions: BTreeMap<String, RegionState>,
    /// Evidence of the last round per region (not persisted).
    evidence: HashMap<String, Vec<v1::Evidence>>,
}

impl<T> Engine<T> {
    /// An engine for a checked config, starting from saved regions.
    pub fn new(config: &Config, map: DependencyMap, saved: Vec<(String, RegionState)>) -> Self {
        Self {
            map,
            quorum: config.rounds.quorum,
            confirm_rounds: config.confirm_rounds.max(1),
            immediate: config.immediate.clone(),
            thresholds: config.severity,
            failover: config.failover.clone(),
            quiet_older_than: config.rounds.quiet_older_than,
            round_timeout: config.rounds.round_timeout,
            book: RoundBook::new(config.rounds.timing()),
            regions: saved.into_iter().collect(),
            evidence: HashMap::new(),
        }
    }

    /// Rounds held and observations in them.
    pub fn held(&self) -> (usize, usize) {
        self.book.held()
    }

    /// The regions' state.
    pub fn regions(&self) -> &BTreeMap<String, RegionState> {
        &self.regions
    }

    /// Takes an observation and the ack of its message.
    pub fn add(&mut self, obs: Observation, ack: T, now: Instant) -> Added<T> {
        self.book.add(obs, ack, now)
    }

    /// When the next round completes.
    pub fn next_due(&self) -> Option<Instant> {
        self.book.next_due()
    }

    /// Decides the complete rounds, then the failover requests.
    pub fn step(&mut self, now: Instant, now_ms: i64) -> Vec<Step<T>> {
        // Round by round across regions, with the failover pass after each:
        // several rounds can come due at once (a healthy round that is
        // complete hands out the failing one before it), and a request
        // judged only after the next, healthy round would never be made.
        let mut rounds = self.book.take_due(now);
        rounds.sort_by_key(|r| r.round);
        let mut steps = Vec::new();
        let mut rounds = rounds.into_iter().peekable();
        while let Some(first) = rounds.next() {
            let id = first.round;
            steps.push(self.decide(first, now_ms));
            while let Some(r) = rounds.next_if(|r| r.round == id) {
                steps.push(self.decide(r, now_ms));
            }
            steps.extend(self.failover_pass(now_ms));
        }
        if steps.is_empty() {
            steps.extend(self.failover_pass(now_ms));
        }
        steps
    }

    fn decide(&mut self, round: Round<T>, now_ms: i64) -> Step<T> {
        let region = round.region.clone();
        let round_ms = round.start_ms(now_ms);
        let quiet = now_ms - round_ms > self.quiet_older_than.as_millis() as i64;
        let state = self.regions.entry(region.clone()).or_default();

        // Each service: the worst agreed status of its endpoints.
        let mut seen: BTreeMap<String, (Status, u32, u32, bool)> = BTreeMap::new();
        let mut evidence = Vec::new();
        for e in round.endpoints(self.quorum) {
            let Agreement::Agreed {
                status,
                agreeing,
                reporting,
            } = e.agreement
            else {
                continue;
            };
            let required = self.quorum.required(reporting);
            let dns_vantages = e
                .votes
                .keys()
                .filter(|v| {
                    e.events.iter().any(|o| {
                        &o.vantage == *v && o.error.is_some_and(LookupError::is_dns_failure)
                    })
                })
                .count();
            let dns = status == Status::Critical && dns_vantages >= required;
            let entry = seen
                .entry(e.service.to_string())
                .or_insert((Status::Healthy, 0, 0, false));
            if status >= entry.0 {
                *entry = (
                    status,
                    agreeing as u32,
                    reporting as u32,
                    dns || (status == entry.0 && entry.3),
                );
            }
            if status != Status::Healthy {
                evidence.extend(e.events.iter().map(|o| evidence_of(o, agreeing, reporting)));
            }
        }
        for (service, (status, agreeing, reporting, dns)) in seen {
            let t = state.services.entry(service).or_default();
            t.status = Some(status);
            t.unhealthy_rounds = if status >= Status::Warning {
                t.unhealthy_rounds + 1
            } else {
                0
            };
            t.critical_rounds = if status == Status::Critical {
                t.critical_rounds + 1
            } else {
                0
            };
            t.agreeing = agreeing;
            t.reporting = reporting;
            t.dns_failure = dns;
        }

        // The score.
        let direct = direct_failures(
            &self.map,
            &state.services,
            self.confirm_rounds,
            &self.immediate,
        );
        let assessment = risk::assess(&self.map, &direct);
        let impacts = assessment.impacts(&self.map, &direct, 0.05);
        let immediate_failure = self.immediate.iter().any(|s| {
            state
                .services
                .get(s)
                .is_some_and(|t| t.status == Some(Status::Critical) && t.dns_failure)
        });
        let severity = if immediate_failure {
            Some(Severity::Critical)
        } else {
            severity_of(assessment.score, self.thresholds)
        };
        state.risk = assessment.score;
        state.last_round = round.round;
        state.round_ms = round_ms;
        state.decided_at_ms = now_ms;
        state.immediate_failure = immediate_failure;
        state.critical_rounds = if severity == Some(Severity::Critical) {
            state.critical_rounds + 1
        } else {
            0
        };
        state.quiet = quiet;

        // One alert per change of severity.
        let mut out = Vec::new();
        let current = state.open.as_ref().map(|o| o.severity);
        let body = describe(
            &region,
            &state.services,
            assessment.score,
            severity,
            &impacts,
        );
        if current != severity {
            if let Some(open) = state.open.take() {
                // The old alert ends; say whether the region got worse (the
                // new, more severe alert follows), better, or is well.
                let was = open.severity.as_str();
                let summary = match severity {
                    Some(now) if now > open.severity => format!(
                        "{region}: escalated from {was} to {} (cascade risk up to {:.2}); the {} alert replaces this one",
                        now.as_str(),
                        assessment.score,
                        now.as_str()
                    ),
                    Some(now) => format!(
                        "{region}: eased from {was} to {} (cascade risk down to {:.2}); the {} alert replaces this one",
                        now.as_str(),
                        assessment.score,
                        now.as_str()
                    ),
                    None => format!(
                        "{region}: cascade risk down to {:.2}, no longer {was}",
                        assessment.score
                    ),
                };
                let resolved = AlertBody {
                    summary,
                    ..Default::default()
                };
                out.push(alert(
                    &region,
                    &open,
                    v1::AlertState::Resolved,
                    &resolved,
                    assessment.score,
                    Vec::new(),
                    round_ms,
                    now_ms,
                ));
            }
            if let Some(severity) = severity {
                let open = Open {
                    id: format!("cascade:{region}:{}:{}", severity.as_str(), round.round),
                    severity,
                    since_round: round.round,
                    since_ms: round_ms,
                    last_notified_ms: round_ms,
                    renotify_count: 0,
                };
                out.push(alert(
                    &region,
                    &open,
                    v1::AlertState::Firing,
                    &body,
                    assessment.score,
                    evidence.clone(),
                    0,
                    now_ms,
                ));
                state.open = Some(open);
                state.no_target_noted = false;
                state.cooldown_noted = false;
                state.alerted_critical = critical_services(&state.services);
            }
        } else if let Some(open) = &mut state.open {
            // Same severity, but a service has become critical that the open
            // alert does not name (a region already critical from EC2 whose
            // DynamoDB now fails too): the alert is sent again, updated.
            let now_critical = critical_services(&state.services);
            if now_critical
                .iter()
                .any(|s| !state.alerted_critical.contains(s))
            {
                open.renotify_count += 1;
                out.push(alert(
                    &region,
                    open,
                    v1::AlertState::Firing,
                    &body,
                    assessment.score,
                    evidence.clone(),
                    0,
                    now_ms,
                ));
                state.alerted_critical = now_critical;
            }
        }
        state.last_alert = Some(body);
        self.evidence.insert(region.clone(), evidence);
        if quiet {
            out.clear();
        }
        Step {
            region,
            out,
            saved: Some(state.clone()),
            acks: round.acks,
        }
    }

    /// Failover requests across regions (see the module docs).
    fn failover_pass(&mut self, now_ms: i64) -> Vec<Step<T>> {
        if !self.failover.enabled {
            return Vec::new();
        }
        let fresh_within = self.failover.fresh_within.as_millis() as i64;
        let fresh = move |s: &RegionState| now_ms - s.decided_at_ms <= fresh_within;
        let names: Vec<String> = self.regions.keys().cloned().collect();
        let mut steps = Vec::new();
        for name in names {
            let Some(state) = self.regions.get(&name) else {
                continue;
            };
            let required = if state.immediate_failure {
                1
            } else {
                self.failover.hysteresis_rounds.max(1)
            };
            let cooldown_ms = self.failover.cooldown.as_millis() as i64;
            let cooling = state
                .last_request_ms
                .is_some_and(|t| state.round_ms - t < cooldown_ms);
            if state.quiet || state.critical_rounds < required || state.open.is_none() {
                continue;
            }
            if cooling {
                // A request made since this alert opened answered it. One
                // made for an earlier episode holds a new one back: say so
                // once, on the open alert, since silence would read as "no
                // failover needed" while the alert says to move traffic.
                let answered = state
                    .open
                    .as_ref()
                    .zip(state.last_request_ms)
                    .is_some_and(|(open, at)| at >= open.since_ms);
                if !answered && !state.cooldown_noted {
                    let ago =
                        (state.round_ms - state.last_request_ms.unwrap_or(state.round_ms)) / 1000;
                    let why = format!(
                        "no new failover request: one was made {ago} s ago (cooldown {})",
                        humantime::format_duration(self.failover.cooldown)
                    );
                    if let Some(step) = self.repeat_open_alert(&name, &why, now_ms) {
                        steps.push(step);
                    }
                    if let Some(state) = self.regions.get_mut(&name) {
                        state.cooldown_noted = true;
                    }
                }
                continue;
            }
            let others: Vec<(&String, &RegionState)> =
                self.regions.iter().filter(|(n, _)| **n != name).collect();
            // Wait for regions still collecting this round.
            let behind = others
                .iter()
                .any(|(_, o)| fresh(o) && o.last_round < state.last_round);
            if behind && now_ms - state.decided_at_ms < self.round_timeout.as_millis() as i64 {
                tracing::debug!(region = %name, round = state.last_round, "failover request waits for regions still collecting this round");
                continue;
            }
            // A region that asked for its own failover within the cooldown
            // is not a place to send traffic, however it looks this round.
            let fled = |o: &RegionState| {
                o.last_request_ms
                    .is_some_and(|t| state.round_ms - t < cooldown_ms)
            };
            let mut candidates: Vec<(String, f64)> = others
                .iter()
                .filter(|(_, o)| {
                    fresh(o)
                        && o.risk <= self.failover.healthy_max_risk
                        && o.last_round >= state.last_round
                        && !fled(o)
                })
                .map(|(n, o)| ((*n).clone(), o.risk))
                .collect();
            candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let considered: Vec<String> = others
                .iter()
                .map(|(n, o)| {
                    if !fresh(o) {
                        format!("{n} has no recent data")
                    } else if fled(o) {
                        format!(
                            "{n} had its own failover request {} s ago",
                            (state.round_ms - o.last_request_ms.unwrap_or(state.round_ms)) / 1000
                        )
                    } else {
                        format!("{n} risk {:.2}", o.risk)
                    }
                })
                .collect();
            let (round_ms, round, risk) = (state.round_ms, state.last_round, state.risk);
            let open = state.open.clone();
            let evidence = self.evidence.get(&name).cloned().unwrap_or_default();
            let Some(state) = self.regions.get_mut(&name) else {
                continue;
            };
            let mut out = Vec::new();
            match candidates.first() {
                Some(_) => {
                    let id = format!("fo:{name}:{round}");
                    // The failover manager chooses the target, from its
                    // own deep health checks: the request names the regions
                    // that look able to take the traffic from here, not one.
                    let able: Vec<String> = candidates
                        .iter()
                        .map(|(n, r)| format!("{n} (risk {r:.2})"))
                        .collect();
                    let reason = format!(
                        "{name} is critical (cascade risk {risk:.2}{}); healthy enough to take its traffic: {}; the failover manager chooses the target",
                        if state.immediate_failure { ", DNS failure of an immediate service" } else { "" },
                        able.join(", ")
                    );
                    tracing::info!(region = %name, candidates = %able.join(", "), risk, "requesting a failover");
                    out.push(Publication::Request {
                        msg_id: format!("{id}:requested"),
                        decision: v1::FailoverDecision {
                            id,
                            phase: v1::FailoverPhase::Requested as i32,
                            from_region: name.clone(),
                            to_region: String::new(),
                            reason,
                            risk_score: risk,
                            evidence,
                            actor: "cascade".into(),
                            at_unix_ms: now_ms,
                            alert_id: open.as_ref().map(|o| o.id.clone()).unwrap_or_default(),
                            ..Default::default()
                        },
                    });
                    state.last_request_ms = Some(round_ms);
                }
                None if !state.no_target_noted => {
                    // Say once, on the open alert, why there is no request.
                    state.no_target_noted = true;
                    let why = format!(
                        "no failover: no other region is healthy enough to take the traffic ({})",
                        considered.join(", ")
                    );
                    if let Some(step) = self.repeat_open_alert(&name, &why, now_ms) {
                        steps.push(step);
                    }
                }
                None => {}
            }
            if !out.is_empty() {
                if let Some(state) = self.regions.get(&name) {
                    steps.push(Step {
                        region: name.clone(),
                        out,
                        saved: Some(state.clone()),
                        acks: Vec::new(),
                    });
                }
            }
        }
        steps
    }

    /// The region's open alert again (a reminder), its summary and first
    /// action saying `why`.
    fn repeat_open_alert(&mut self, name: &str, why: &str, now_ms: i64) -> Option<Step<T>> {
        let evidence = self.evidence.get(name).cloned().unwrap_or_default();
        let state = self.regions.get_mut(name)?;
        let open = state.open.as_mut()?;
        open.renotify_count += 1;
        let open = open.clone();
        let mut body = state.last_alert.clone().unwrap_or_default();
        body.summary = format!("{}; {why}", body.summary);
        body.actions.insert(0, why.to_owned());
        let out = vec![alert(
            name,
            &open,
            v1::AlertState::Firing,
            &body,
            state.risk,
            evidence,
            0,
            now_ms,
        )];
        Some(Step {
            region: name.to_owned(),
            out,
            saved: Some(state.clone()),
            acks: Vec::new(),
        })
    }
}

/// The services critical in a region now, by name.
fn critical_services(services: &BTreeMap<String, ServiceTrack>) -> Vec<String> {
    services
        .iter()
        .filter(|(_, t)| t.status == Some(Status::Critical))
        .map(|(s, _)| s.clone())
        .collect()
}

/// d(s) per map index (see [`crate::risk`]).
fn direct_failures(
    map: &DependencyMap,
    services: &BTreeMap<String, ServiceTrack>,
    confirm: u32,
    immediate: &[String],
) -> Vec<f64> {
    (0..map.len())
        .map(|i| {
            let Some(t) = services.get(map.name(i)) else {
                return 0.0;
            };
            let (weight, rounds) = match t.status {
                Some(Status::Critical) => (1.0, t.critical_rounds),
                Some(Status::Warning) => (0.4, t.unhealthy_rounds),
                _ => return 0.0,
            };
            let agree = if t.reporting > 0 {
                f64::from(t.agreeing) / f64::from(t.reporting)
            } else {
                0.0
            };
            let persist = if t.dns_failure && immediate.iter().any(|s| s == map.name(i)) {
                1.0
            } else {
                (f64::from(rounds) / f64::from(confirm)).min(1.0)
            };
            weight * agree * persist
        })
        .collect()
}

fn severity_of(score: f64, t: SeverityThresholds) -> Option<Severity> {
    if score >= t.critical {
        Some(Severity::Critical)
    } else if score >= t.high {
        Some(Severity::High)
    } else if score >= t.medium {
        Some(Severity::Medium)
    } else if score > t.low {
        Some(Severity::Low)
    } else {
        None
    }
}

fn evidence_of(o: &Observation, agreeing: usize, reporting: usize) -> v1::Evidence {
    v1::Evidence {
        endpoint: o.endpoint.clone(),
        vantage: o.vantage.clone(),
        status: v1::Status::from(o.status) as i32,
        error_kind: v1::ErrorKind::from(o.error) as i32,
        response_time_us: o.response_time.as_micros() as u64,
        round_id: o.round_id,
        consecutive_rounds: 0,
        agreeing: agreeing as u32,
        reporting: reporting as u32,
    }
}

/// The alert's words: what fails, what it will hurt, what to do.
fn describe(
    region: &str,
    services: &BTreeMap<String, ServiceTrack>,
    score: f64,
    severity: Option<Severity>,
    impacts: &[Impact],
) -> AlertBody {
    let failing: Vec<String> = services
        .iter()
        .filter(|(_, t)| matches!(t.status, Some(Status::Warning | Status::Critical)))
        .map(|(s, t)| {
            let status = t.status.map_or("unknown", Status::as_str);
            let dns = if t.dns_failure { "DNS failure, " } else { "" };
            format!(
                "{s} {status} ({dns}{}/{} vantage points)",
                t.agreeing, t.reporting
            )
        })
        .collect();
    let hurt: Vec<String> = impacts
        .iter()
        .take(6)
        .map(|i| format!("{} {:.0} %", i.service, i.degradation * 100.0))
        .collect();
    let level = severity.map_or("none", Severity::as_str);
    let mut summary = format!("{region}: cascade risk {score:.2} ({level})");
    if !failing.is_empty() {
        summary.push_str(&format!(": {}", failing.join(", ")));
    }
    if !hurt.is_empty() {
        summary.push_str(&format!("; expected to hurt {}", hurt.join(", ")));
    }
    let failing: Vec<Failing<'_>> = services
        .iter()
        .filter_map(|(s, t)| {
            Some(Failing {
                service: s,
                status: t.status?,
                error: None,
            })
        })
        .collect();
    let actions = advice::actions(region, Scope::Region, &failing, impacts, severity);
    AlertBody {
        summary,
        impacts: impacts
            .iter()
            .map(|i| (i.service.clone(), i.degradation, i.path.clone()))
            .collect(),
        actions,
    }
}

#[allow(clippy::too_many_arguments)]
fn alert(
    region: &str,
    open: &Open,
    state: v1::AlertState,
    body: &AlertBody,
    score: f64,
    evidence: Vec<v1::Evidence>,
    ended_ms: i64,
    now_ms: i64,
) -> Publication {
    let resolved = state == v1::AlertState::Resolved;
    Publication::Alert {
        severity: open.severity,
        msg_id: format!(
            "{}:{}:{}",
            open.id,
            if resolved { "resolved" } else { "firing" },
            open.renotify_count
        ),
        alert: v1::Alert {
            id: open.id.clone(),
            source: v1::AlertSource::Cascade as i32,
            severity: open.severity.to_wire() as i32,
            state: state as i32,
            region: region.to_owned(),
            summary: body.summary.clone(),
            started_at_unix_ms: open.since_ms,
            emitted_at_unix_ms: now_ms,
            ended_at_unix_ms: ended_ms,
            risk_score: score,
            predicted_impact: body
                .impacts
                .iter()
                .map(|(service, degradation, path)| v1::Impact {
                    service: service.clone(),
                    degradation: *degradation,
                    path: path.clone(),
                })
                .collect(),
            recommended_actions: body.actions.clone(),
            evidence,
            renotify_count: open.renotify_count,
            ..Default::default()
        },
    }
}

impl rg_rounds::feed::Judge for Engine<rg_bus::consume::Pending> {
    type Step = Step<rg_bus::consume::Pending>;

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
        Engine::step(self, now, now_ms)
    }

    fn held(&self) -> (usize, usize) {
        Engine::held(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(
        region: &str,
        service: &str,
        round: u64,
        error: Option<LookupError>,
        ms: u64,
    ) -> Observation {
        let status = match (error, ms) {
            (Some(_), _) => Status::Critical,
            (None, ms) if ms > 100 => Status::Warning,
            _ => Status::Healthy,
        };
        let mut o = Observation::example(&format!("{service}.{region}.amazonaws.com"))
            .with_vantage(&format!("{region}-a"))
            .with_round(round)
            .with_round_lookups(SERVICES.len() as u32)
            .with_millis(ms)
            .with_status(status);
        o.error = error;
        o
    }

    use rg_proto::domain::{DEFAULT_REGIONS as REGIONS, DEFAULT_SERVICES as SERVICES};

    /// Feeds one round for every region; `fault(region, service)` gives
    /// the error and latency of each lookup. Returns the published items.
    fn round(
        e: &mut Engine<()>,
        r: u64,
        fault: impl Fn(&str, &str) -> (Option<LookupError>, u64),
    ) -> Vec<Publication> {
        let t = Instant::now();
        for region in REGIONS {
            for service in SERVICES {
                let (err, ms) = fault(region, service);
                e.add(obs(region, service, r, err, ms), (), t);
            }
        }
        // The next round's first event makes this one complete.
        let mut out = Vec::new();
        for region in REGIONS {
            e.add(obs(region, "s3", r + 1, None, 2), (), t);
        }
        for s in e.step(t + Duration::from_secs(3), r as i64 * 10_000 + 3_000) {
            out.extend(s.out);
        }
        out
    }

    fn engine() -> Engine<()> {
        let config = Config {
            rounds: rg_rounds::RoundSettings {
                settle: Duration::from_millis(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let map = DependencyMap::build(&config.services).unwrap();
        Engine::new(&config, map, Vec::new())
    }

    fn alerts(out: &[Publication]) -> Vec<&v1::Alert> {
        out.iter()
            .filter_map(|o| {
                if let Publication::Alert { alert, .. } = o {
                    Some(alert)
                } else {
                    None
                }
            })
            .collect()
    }

    fn requests(out: &[Publication]) -> Vec<&v1::FailoverDecision> {
        out.iter()
            .filter_map(|o| {
                if let Publication::Request { decision, .. } = o {
                    Some(decision)
                } else {
                    None
                }
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_dynamodb_answer_is_critical_and_a_request_in_the_first_round() {
        let mut e = engine();
        assert!(
            round(&mut e, 1, |_, _| (None, 2)).is_empty(),
            "healthy: nothing to say"
        );
        let out = round(&mut e, 2, |r, s| {
            if r == "us-east-1" && s == "dynamodb" {
                (Some(LookupError::EmptyAnswer), 1)
            } else {
                (None, 2)
            }
        });
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:#?}");
        assert_eq!(a[0].severity, v1::Severity::Critical as i32);
        assert!(
            a[0].summary
                .contains("dynamodb critical (DNS failure, 1/1 vantage points)"),
            "{}",
            a[0].summary
        );
        let hurt: Vec<&str> = a[0]
            .predicted_impact
            .iter()
            .map(|i| i.service.as_str())
            .collect();
        assert!(
            hurt.contains(&"ec2") && hurt.contains(&"lambda"),
            "{hurt:?}"
        );
        assert!(
            a[0].recommended_actions
                .iter()
                .any(|x| x.contains("global-table")),
            "{:?}",
            a[0].recommended_actions
        );
        let r = requests(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].from_region, "us-east-1");
        assert!(
            r[0].reason.contains("us-west-2") || r[0].reason.contains("eu-west-1"),
            "{}",
            r[0].reason
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_ec2_is_a_lower_severity_without_a_request() {
        let mut e = engine();
        let mut all = Vec::new();
        for r in 1..8 {
            all.extend(round(&mut e, r, |reg, s| {
                if reg == "us-west-2" && s == "ec2" {
                    (None, 150)
                } else {
                    (None, 2)
                }
            }));
        }
        let a = alerts(&all);
        assert!(!a.is_empty());
        assert!(
            a.iter().all(|a| a.severity <= v1::Severity::Medium as i32),
            "{a:#?}"
        );
        assert!(requests(&all).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn flapping_makes_at_most_one_request_per_cooldown() {
        let mut e = engine();
        let mut all = Vec::new();
        for r in 1..=10 {
            let failing = r % 2 == 1;
            all.extend(round(&mut e, r, |reg, s| {
                if failing && reg == "us-east-1" && s == "dynamodb" {
                    (Some(LookupError::Servfail), 1)
                } else {
                    (None, 2)
                }
            }));
        }
        assert_eq!(requests(&all).len(), 1, "{:#?}", requests(&all));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_held_back_by_the_cooldown_is_said_once_on_the_open_alert() {
        let mut e = engine();
        let ddb_down = |reg: &str, s: &str| {
            if reg == "us-east-1" && s == "dynamodb" {
                (Some(LookupError::EmptyAnswer), 1)
            } else {
                (None, 2)
            }
        };
        let mut all = round(&mut e, 1, ddb_down);
        assert_eq!(requests(&all).len(), 1);
        // The same episode going on: its request answered it, nothing to say.
        all.extend(round(&mut e, 2, ddb_down));
        assert!(
            !alerts(&all)
                .iter()
                .any(|a| a.summary.contains("no new failover request")),
            "{:#?}",
            alerts(&all)
        );
        // Well for a round, then down again within the cooldown.
        round(&mut e, 3, |_, _| (None, 2));
        for r in 4..7 {
            all.extend(round(&mut e, r, ddb_down));
        }
        assert_eq!(requests(&all).len(), 1, "{:#?}", requests(&all));
        let said: Vec<&str> = alerts(&all)
            .iter()
            .filter(|a| a.summary.contains("no new failover request"))
            .map(|a| a.summary.as_str())
            .collect();
        assert_eq!(said.len(), 1, "{said:#?}");
        assert!(said[0].contains("cooldown 10m"), "{}", said[0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_region_that_just_asked_for_its_own_failover_takes_no_traffic() {
        let mut e = engine();
        let east = |reg: &str, s: &str| {
            if reg == "us-east-1" && s == "dynamodb" {
                (Some(LookupError::EmptyAnswer), 1)
            } else {
                (None, 2)
            }
        };
        let first = round(&mut e, 1, east);
        assert_eq!(requests(&first)[0].from_region, "us-east-1");
        // us-east-1 looks well again; now us-west-2 fails.
        let west = |reg: &str, s: &str| {
            if reg == "us-west-2" && s == "dynamodb" {
                (Some(LookupError::EmptyAnswer), 1)
            } else {
                (None, 2)
            }
        };
        let second = round(&mut e, 2, west);
        let r = requests(&second);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert!(
            r[0].reason.contains("eu-west-1") && !r[0].reason.contains("us-east-1 (risk"),
            "{}",
            r[0].reason
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_alert_is_sent_again_when_another_service_becomes_critical() {
        let mut e = engine();
        let ec2 = |reg: &str, s: &str| {
            if reg == "us-east-1" && s == "ec2" {
                (Some(LookupError::Servfail), 1)
            } else {
                (None, 2)
            }
        };
        let mut all = Vec::new();
        for r in 1..=4 {
            all.extend(round(&mut e, r, ec2));
        }
        let open: Vec<_> = alerts(&all)
            .into_iter()
            .filter(|a| a.state == v1::AlertState::Firing as i32)
            .cloned()
            .collect();
        let last = open.last().unwrap().clone();
        assert!(!last.summary.contains("dynamodb"), "{}", last.summary);
        let both = round(&mut e, 5, |reg, s| {
            if reg == "us-east-1" && (s == "ec2" || s == "dynamodb") {
                (Some(LookupError::Servfail), 1)
            } else {
                (None, 2)
            }
        });
        let update: Vec<_> = alerts(&both)
            .into_iter()
            .filter(|a| {
                a.summary.contains("dynamodb critical") && !a.summary.contains("no new failover")
            })
            .collect();
        assert_eq!(update.len(), 1, "{:#?}", alerts(&both));
        assert_eq!(update[0].id, last.id, "the same alert, updated");
    }

    #[tokio::test(start_paused = true)]
    async fn every_region_failing_is_critical_without_a_request_and_says_why() {
        let mut e = engine();
        round(&mut e, 1, |_, _| (None, 2));
        let mut all = round(&mut e, 2, |_, s| {
            if s == "dynamodb" {
                (Some(LookupError::Timeout), 2000)
            } else {
                (None, 2)
            }
        });
        all.extend(round(&mut e, 3, |_, s| {
            if s == "dynamodb" {
                (Some(LookupError::Timeout), 2000)
            } else {
                (None, 2)
            }
        }));
        assert!(requests(&all).is_empty(), "{:#?}", requests(&all));
        let why: Vec<_> = alerts(&all)
            .into_iter()
            .filter(|a| a.summary.contains("no other region is healthy"))
            .collect();
        assert_eq!(why.len(), 3, "{:#?}", alerts(&all));
    }
}
