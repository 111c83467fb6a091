//! The dashboard's figures, from the latest observations (no I/O).
//!
//! Each endpoint keeps the latest observation of every vantage point
//! (vantage and resolver). At a given time, the observations younger than
//! `stale_after` count; each vantage votes the worst status it sees
//! through any resolver, and the endpoint's status is what the votes agree
//! on by the detector's rule ([`rg_rounds::agree`] with `[rounds]
//! quorum`), so one flaky vantage point does not colour the dashboard.
//! With fewer vantages fresh than the quorum needs, a majority of those
//! fresh decides (the page shows what is seen; the detector waits). Its
//! response time is the mean of theirs.
//!
//! From the endpoints: the summary (total, the three counts, uptime =
//! healthy / total × 100, mean response time), a card per region ("N/M
//! Healthy"), a card per service in a region (mean response time of its
//! endpoints, worst status of any of them) and the trend of the three
//! counts, one point per interval boundary.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rg_proto::v1::{
    Alert, AlertSource, AlertState, DashboardSnapshot, ErrorKind, FailoverDecision, HealthEvent,
    Readiness, RegionCard, ResourceCheck, ServiceCard, Status, Summary, TrendPoint,
};
use rg_rounds::{Agreement, Quorum};

/// The latest observation of one endpoint by one vantage point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    status: Status,
    response_time_us: u64,
    at_ms: i64,
    error_kind: ErrorKind,
}

#[derive(Debug, Default)]
struct Endpoint {
    /// By vantage and resolver.
    seen: HashMap<(String, String), Seen>,
}

/// Region, service, endpoint name.
type EndpointKey = (String, String, String);

/// One endpoint's figures at a time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointFigure {
    pub(crate) status: Status,
    pub(crate) response_time_us: u64,
    /// Why it is not healthy, for a person: what the vantages that say so
    /// saw, and how many of the voting vantages they are ("empty answer at
    /// 2/3 vantages"); empty when healthy.
    pub(crate) reason: String,
}

/// An error kind in words.
fn error_kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::None => "slow answers",
        ErrorKind::Nxdomain => "NXDOMAIN",
        ErrorKind::Servfail => "SERVFAIL",
        ErrorKind::Refused => "REFUSED",
        ErrorKind::EmptyAnswer => "empty answer",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Io => "socket error",
        ErrorKind::OtherRcode => "error rcode",
    }
}

/// The reason for `status` from each voting vantage's worst observation
/// (its status and error kind): each error kind seen by the vantages that
/// saw `status`, the most common first, with how many of all voting
/// vantages saw it ("empty answer at 2/3 vantages, timeout at 1/3").
fn reason_for(status: Status, worst: &BTreeMap<&str, (Status, ErrorKind)>) -> String {
    if status == Status::Healthy || status == Status::Unspecified {
        return String::new();
    }
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, kind) in worst.values().filter(|(s, _)| *s == status) {
        *counts.entry(*kind as i32).or_default() += 1;
    }
    let mut kinds: Vec<(i32, usize)> = counts.into_iter().collect();
    kinds.sort_by_key(|(kind, n)| (std::cmp::Reverse(*n), *kind));
    let all = worst.len();
    kinds
        .iter()
        .enumerate()
        .map(|(i, (kind, n))| {
            let what = error_kind_text(ErrorKind::try_from(*kind).unwrap_or(ErrorKind::None));
            if i == 0 {
                format!(
                    "{what} at {n}/{all} vantage{}",
                    if all == 1 { "" } else { "s" }
                )
            } else {
                format!("{what} at {n}/{all}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the vantages' votes agree on (each vote: the worst status a
/// vantage saw through any of its resolvers); a majority of those voting
/// when fewer vote than `quorum` needs. `None` without votes.
pub(crate) fn agreed_status<K: Ord>(
    votes: &BTreeMap<K, rg_proto::domain::Status>,
    quorum: Quorum,
) -> Option<Status> {
    let agreed = match rg_rounds::agree(votes, quorum) {
        Agreement::Agreed { status, .. } => status,
        Agreement::NoQuorum { .. } => match rg_rounds::agree(votes, Quorum::Majority) {
            Agreement::Agreed { status, .. } => status,
            Agreement::NoQuorum { .. } => return None,
        },
    };
    Some(match agreed {
        rg_proto::domain::Status::Healthy => Status::Healthy,
        rg_proto::domain::Status::Warning => Status::Warning,
        rg_proto::domain::Status::Critical => Status::Critical,
    })
}

/// A wire status as a vote (`None`: unspecified, no vote).
pub(crate) fn vote(s: Status) -> Option<rg_proto::domain::Status> {
    match s {
        Status::Unspecified => None,
        Status::Healthy => Some(rg_proto::domain::Status::Healthy),
        Status::Warning => Some(rg_proto::domain::Status::Warning),
        Status::Critical => Some(rg_proto::domain::Status::Critical),
    }
}

/// Uptime in percent: healthy / total × 100, 0 without endpoints.
pub(crate) fn uptime_percent(healthy: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        f64::from(healthy) * 100.0 / f64::from(total)
    }
}

/// Integer mean, 0 for none.
fn mean(sum: u128, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        (sum / u128::from(n)) as u64
    }
}

/// What the dashboard shows, kept up to date from the streams.
#[derive(Debug)]
pub(crate) struct View {
    quorum: Quorum,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
    stale_after_ms: i64,
    interval_ms: i64,
    trend: VecDeque<TrendPoint>,
    trend_points: usize,
    /// The next interval boundary a trend point is due for.
    next_boundary_ms: Option<i64>,
    alerts: VecDeque<Alert>,
    alerts_kept: usize,
    timeline: VecDeque<FailoverDecision>,
    timeline_kept: usize,
    /// The latest phase of every failover seen (for approval).
    failovers: HashMap<String, FailoverDecision>,
    /// The latest readiness check of each region.
    readiness: BTreeMap<String, Readiness>,
    /// Each region's open cascade alert.
    cascade: BTreeMap<String, Alert>,
    sequence: u64,
}

/// A view's sizes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) quorum: Quorum,
    pub(crate) stale_after_ms: i64,
    pub(crate) interval_ms: i64,
    pub(crate) trend_points: usize,
    pub(crate) alerts: usize,
    pub(crate) timeline: usize,
}

/// How long a region that went silent keeps its (stale) card.
const FORGET_AFTER_MS: i64 = 3_600_000;

/// Failovers remembered for approval, at most.
const FAILOVERS_KEPT: usize = 10_000;

impl View {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            quorum: limits.quorum,
            endpoints: BTreeMap::new(),
            stale_after_ms: limits.stale_after_ms.max(1),
            interval_ms: limits.interval_ms.max(1),
            trend: VecDeque::new(),
            trend_points: limits.trend_points.max(1),
            next_boundary_ms: None,
            alerts: VecDeque::new(),
            alerts_kept: limits.alerts,
            timeline: VecDeque::new(),
            timeline_kept: limits.timeline,
            failovers: HashMap::new(),
            readiness: BTreeMap::new(),
            cascade: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// Takes a health event (already validated by the caller: region and
    /// service are tokens, status is known). A vantage point's older
    /// observation never replaces a newer one.
    pub(crate) fn observe(&mut self, e: &HealthEvent) {
        let key = (e.region.clone(), e.service.clone(), e.endpoint.clone());
        let seen = Seen {
            status: e.status(),
            response_time_us: e.response_time_us,
            at_ms: e.observed_at_unix_ms,
            error_kind: e.error_kind(),
        };
        let vantage = (e.vantage.clone(), e.resolver.clone());
        let endpoint = self.endpoints.entry(key).or_default();
        match endpoint.seen.get_mut(&vantage) {
            Some(old) if old.at_ms > seen.at_ms => {}
            Some(old) => *old = seen,
            None => {
                endpoint.seen.insert(vantage, seen);
            }
        }
    }

    /// Emits the trend points of every interval boundary up to `now_ms`
    /// (each from the observations as they stand), so the trend has one
    /// point per interval however the time is reached: a snapshot timer,
    /// or the event times of a replay.
    pub(crate) fn advance_to(&mut self, now_ms: i64) {
        let boundary = (now_ms / self.interval_ms) * self.interval_ms;
        let mut next = match self.next_boundary_ms {
            Some(n) => n,
            None => {
                // The first boundary reached: start the trend there.
                self.next_boundary_ms = Some(boundary);
                boundary
            }
        };
        // After a long gap, only the last `trend_points` boundaries matter.
        let earliest = boundary - self.interval_ms * (self.trend_points as i64 - 1);
        if next < earliest {
            next = earliest;
        }
        while next <= boundary {
            let point = self.trend_point(next);
            self.trend.push_back(point);
            while self.trend.len() > self.trend_points {
                self.trend.pop_front();
            }
            next += self.interval_ms;
        }
        self.next_boundary_ms = Some(next);
    }

    fn trend_point(&self, at_ms: i64) -> TrendPoint {
        let mut point = TrendPoint {
            at_unix_ms: at_ms,
            ..Default::default()
        };
        for f in self.figures(at_ms).map(|(_, f)| f) {
            match f.status {
                Status::Healthy => point.healthy += 1,
                Status::Warning => point.warning += 1,
                Status::Critical => point.critical += 1,
                Status::Unspecified => {}
            }
        }
        point
    }

    /// Every endpoint with a fresh observation at `at_ms`, in key order.
    ///
    /// Observations newer than `at_ms` count too: each vantage point keeps
    /// only its latest, so leaving out one made just after an interval
    /// boundary (when the boundary's trend point is computed a moment
    /// later) dropped the endpoint from that point. A replay never has
    /// them: it advances the trend before taking each event.
    fn figures(&self, at_ms: i64) -> impl Iterator<Item = (&EndpointKey, EndpointFigure)> + '_ {
        let oldest = at_ms - self.stale_after_ms;
        let quorum = self.quorum;
        let mut votes = BTreeMap::new();
        let mut worst_seen: BTreeMap<&str, (Status, ErrorKind)> = BTreeMap::new();
        self.endpoints.iter().filter_map(move |(key, e)| {
            votes.clear();
            worst_seen.clear();
            let mut sum = 0u128;
            let mut n = 0u64;
            for ((vantage, _), s) in e.seen.iter().filter(|(_, s)| s.at_ms >= oldest) {
                sum += u128::from(s.response_time_us);
                n += 1;
                if let Some(v) = vote(s.status) {
                    let worst = votes.entry(vantage.as_str()).or_insert(v);
                    *worst = (*worst).max(v);
                    let seen = worst_seen
                        .entry(vantage.as_str())
                        .or_insert((s.status, s.error_kind));
                    if vote(s.status) > vote(seen.0) {
                        *seen = (s.status, s.error_kind);
                    }
                }
            }
            let status = agreed_status(&votes, quorum)?;
            Some((
                key,
                EndpointFigure {
                    status,
                    response_time_us: mean(sum, n),
                    reason: reason_for(status, &worst_seen),
                },
            ))
        })
    }

    /// Endpoints known but with no fresh observation at `at_ms`.
    fn stale_count(&self, at_ms: i64) -> u32 {
        let oldest = at_ms - self.stale_after_ms;
        self.endpoints
            .values()
            .filter(|e| !e.seen.values().any(|s| s.at_ms >= oldest))
            .count() as u32
    }

    /// Takes an alert for the feed: newest first; an alert with the id of
    /// one held replaces it (a producer's re-send after a restart).
    pub(crate) fn alert(&mut self, a: Alert) {
        // A region's open cascade alert stays on its card until resolved,
        // however many alerts come after it.
        if a.source() == AlertSource::Cascade && !a.region.is_empty() {
            if a.state() == AlertState::Resolved {
                if self
                    .cascade
                    .get(&a.region)
                    .is_some_and(|open| open.id == a.id)
                {
                    self.cascade.remove(&a.region);
                }
            } else {
                self.cascade.insert(a.region.clone(), a.clone());
            }
        }
        self.alerts.retain(|x| x.id != a.id);
        self.alerts.push_front(a);
        self.alerts.truncate(self.alerts_kept);
    }

    /// Takes a failover phase for the timeline.
    pub(crate) fn decision(&mut self, d: FailoverDecision) {
        let is_newer = self
            .failovers
            .get(&d.id)
            .is_none_or(|old| old.at_unix_ms <= d.at_unix_ms);
        if is_newer {
            if self.failovers.len() >= FAILOVERS_KEPT && !self.failovers.contains_key(&d.id) {
                // Forget the failover whose latest phase is oldest.
                if let Some(oldest) = self
                    .failovers
                    .values()
                    .min_by_key(|x| x.at_unix_ms)
                    .map(|x| x.id.clone())
                {
                    self.failovers.remove(&oldest);
                }
            }
            self.failovers.insert(d.id.clone(), d.clone());
        }
        self.timeline
            .retain(|x| !(x.id == d.id && x.phase == d.phase && x.step_index == d.step_index));
        self.timeline.push_front(d);
        self.timeline.truncate(self.timeline_kept);
    }

    /// Takes a readiness check; an older one never replaces a newer.
    pub(crate) fn readiness(&mut self, r: Readiness) {
        let newer = self
            .readiness
            .get(&r.region)
            .is_none_or(|old| old.checked_at_unix_ms <= r.checked_at_unix_ms);
        if newer {
            self.readiness.insert(r.region.clone(), r);
        }
    }

    /// A region's readiness and its latest deep-health score and checks:
    /// the score comes from the newest check of another region that
    /// considered it as a target.
    fn deep_health(&self, region: &str) -> (Option<Readiness>, f64, Vec<ResourceCheck>) {
        let scored = self
            .readiness
            .values()
            // Its own check lists it as the failing region, unscored.
            .filter(|r| r.region != region)
            .filter_map(|r| {
                r.candidates
                    .iter()
                    .find(|c| c.region == region)
                    .map(|c| (r.checked_at_unix_ms, c))
            })
            .max_by_key(|(at, _)| *at)
            .map_or((-1.0, Vec::new()), |(_, c)| {
                (c.health_score, c.checks.clone())
            });
        (self.readiness.get(region).cloned(), scored.0, scored.1)
    }

    /// The latest phase of a failover.
    pub(crate) fn failover(&self, id: &str) -> Option<&FailoverDecision> {
        self.failovers.get(id)
    }

    pub(crate) fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }

    pub(crate) fn timeline(&self) -> impl Iterator<Item = &FailoverDecision> {
        self.timeline.iter()
    }

    /// Builds the snapshot at `now_ms` (the trend as advanced so far).
    pub(crate) fn snapshot(&mut self, now_ms: i64) -> (DashboardSnapshot, u32) {
        self.sequence += 1;
        let mut summary = Summary::default();
        let mut rt_sum = 0u128;
        let mut regions: Vec<RegionCard> = Vec::new();
        // Per service of the current region: card, response-time sum.
        let mut service: Option<(ServiceCard, u128)> = None;
        let close_service = |region: &mut RegionCard, service: &mut Option<(ServiceCard, u128)>| {
            if let Some((mut card, sum)) = service.take() {
                card.avg_response_time_us = mean(sum, u64::from(card.endpoints));
                region.services.push(card);
            }
        };
        for ((region, service_name, _), f) in self.figures(now_ms) {
            summary.total_endpoints += 1;
            rt_sum += u128::from(f.response_time_us);
            match f.status {
                Status::Healthy => summary.healthy += 1,
                Status::Warning => summary.warning += 1,
                Status::Critical => summary.critical += 1,
                Status::Unspecified => {}
            }
            if regions.last().is_none_or(|r| r.region != *region) {
                if let Some(last) = regions.last_mut() {
                    close_service(last, &mut service);
                }
                regions.push(RegionCard {
                    region: region.clone(),
                    ..Default::default()
                });
            }
            let Some(card) = regions.last_mut() else {
                continue; // pushed just above
            };
            card.total += 1;
            if f.status == Status::Healthy {
                card.healthy += 1;
            }
            if service
                .as_ref()
                .is_none_or(|(s, _)| s.service != *service_name)
            {
                close_service(card, &mut service);
                service = Some((
                    ServiceCard {
                        service: service_name.clone(),
                        status: Status::Unspecified as i32,
                        ..Default::default()
                    },
                    0,
                ));
            }
            let Some((s, sum)) = service.as_mut() else {
                continue; // set just above
            };
            s.endpoints += 1;
            *sum += u128::from(f.response_time_us);
            if vote(f.status) > vote(s.status()) {
                s.set_status(f.status);
                // The first endpoint with the card's (worst) status says
                // why.
                s.reason = f.reason.clone();
            }
        }
        if let Some(last) = regions.last_mut() {
            close_service(last, &mut service);
        }
        // A region whose endpoints all went stale keeps its card, marked
        // stale, for FORGET_AFTER; each card says when it last heard.
        let oldest = now_ms - self.stale_after_ms;
        let mut heard: BTreeMap<&str, (i64, u32)> = BTreeMap::new();
        for ((region, _, _), e) in &self.endpoints {
            let last = e.seen.values().map(|s| s.at_ms).max().unwrap_or(0);
            let entry = heard.entry(region.as_str()).or_insert((0, 0));
            entry.0 = entry.0.max(last);
            if last < oldest {
                entry.1 += 1;
            }
        }
        for (region, (last, stale)) in &heard {
            summary.stale_endpoints += stale;
            match regions.iter_mut().find(|r| r.region == *region) {
                Some(card) => {
                    card.last_event_unix_ms = *last;
                    card.stale_endpoints = *stale;
                }
                None if now_ms - last <= FORGET_AFTER_MS => regions.push(RegionCard {
                    region: (*region).to_owned(),
                    last_event_unix_ms: *last,
                    stale: true,
                    stale_endpoints: *stale,
                    ..Default::default()
                }),
                None => {}
            }
        }
        // A region readiness knows of keeps its card even without health
        // events (its probers may be down).
        for region in self.readiness.keys() {
            if !regions.iter().any(|r| r.region == *region) {
                regions.push(RegionCard {
                    region: region.clone(),
                    ..Default::default()
                });
            }
        }
        regions.sort_by(|a, b| a.region.cmp(&b.region));
        for card in &mut regions {
            let (readiness, score, checks) = self.deep_health(&card.region);
            card.readiness = readiness;
            card.health_score = score;
            card.checks = checks;
            if let Some(a) = self.cascade.get(&card.region) {
                card.cascade_risk = a.risk_score;
                card.cascade_summary.clone_from(&a.summary);
                card.cascade_impact.clone_from(&a.predicted_impact);
            }
        }
        summary.uptime_percent = uptime_percent(summary.healthy, summary.total_endpoints);
        summary.avg_response_time_us = mean(rt_sum, u64::from(summary.total_endpoints));
        let stale = self.stale_count(now_ms);
        let snapshot = DashboardSnapshot {
            generated_at_unix_ms: now_ms,
            sequence: self.sequence,
            summary: Some(summary),
            regions,
            trend: self.trend.iter().cloned().collect(),
            recent_alerts: self.alerts.iter().cloned().collect(),
            failover_timeline: self.timeline.iter().cloned().collect(),
        };
        (snapshot, stale)
    }

    /// Endpoints known (fresh or not).
    pub(crate) fn known_endpoints(&self) -> usize {
        self.endpoints.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rg_proto::v1::FailoverPhase;

    const INTERVAL: i64 = 10_000;

    fn view() -> View {
        View::new(Limits {
            quorum: Quorum::Majority,
            stale_after_ms: 35_000,
            interval_ms: INTERVAL,
            trend_points: 20,
            alerts: 3,
            timeline: 3,
        })
    }

    fn event(
        region: &str,
        service: &str,
        endpoint: &str,
        vantage: &str,
        status: Status,
        rt_us: u64,
        at_ms: i64,
    ) -> HealthEvent {
        let mut e = HealthEvent {
            region: region.into(),
            service: service.into(),
            endpoint: endpoint.into(),
            vantage: vantage.into(),
            resolver: "127.0.0.1:53".into(),
            observed_at_unix_ms: at_ms,
            response_time_us: rt_us,
            ..Default::default()
        };
        e.set_status(status);
        e
    }

    #[test]
    fn the_reason_names_the_most_common_error_and_how_many_vantages_saw_it() {
        use ErrorKind::{EmptyAnswer, None as NoError, Timeout};
        let worst: BTreeMap<&str, (Status, ErrorKind)> = [
            ("a", (Status::Critical, EmptyAnswer)),
            ("b", (Status::Critical, EmptyAnswer)),
            ("c", (Status::Critical, Timeout)),
            ("d", (Status::Healthy, NoError)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            reason_for(Status::Critical, &worst),
            "empty answer at 2/4 vantages, timeout at 1/4"
        );
        assert_eq!(reason_for(Status::Healthy, &worst), "");
        let slow: BTreeMap<&str, (Status, ErrorKind)> =
            [("a", (Status::Warning, NoError))].into_iter().collect();
        assert_eq!(
            reason_for(Status::Warning, &slow),
            "slow answers at 1/1 vantage"
        );
    }

    fn votes(v: &[rg_proto::domain::Status]) -> BTreeMap<String, rg_proto::domain::Status> {
        v.iter()
            .enumerate()
            .map(|(i, s)| (format!("v{i}"), *s))
            .collect()
    }

    #[test]
    fn the_status_is_what_the_votes_agree_on_by_the_detectors_rule() {
        use rg_proto::domain::Status::*;
        let m = Quorum::Majority;
        assert_eq!(agreed_status(&votes(&[]), m), None);
        assert_eq!(
            agreed_status(&votes(&[Critical]), m),
            Some(Status::Critical)
        );
        // One of three vantage points is not a majority ...
        assert_eq!(
            agreed_status(&votes(&[Healthy, Critical, Healthy]), m),
            Some(Status::Healthy)
        );
        // ... two are.
        assert_eq!(
            agreed_status(&votes(&[Critical, Healthy, Critical]), m),
            Some(Status::Critical)
        );
        // One of two is not a strict majority.
        assert_eq!(
            agreed_status(&votes(&[Critical, Healthy]), m),
            Some(Status::Healthy)
        );
        // Two of three see at least a warning.
        assert_eq!(
            agreed_status(&votes(&[Critical, Healthy, Warning]), m),
            Some(Status::Warning)
        );
        // `quorum = 1`: one vantage seeing a failure is enough, as for the detector.
        assert_eq!(
            agreed_status(&votes(&[Critical, Healthy, Healthy]), Quorum::AtLeast(1)),
            Some(Status::Critical)
        );
        // Fewer fresh vantages than the quorum: a majority of those decides.
        assert_eq!(
            agreed_status(&votes(&[Critical, Healthy]), Quorum::AtLeast(3)),
            Some(Status::Healthy)
        );
    }

    #[test]
    fn a_vantage_votes_the_worst_of_its_resolvers() {
        let mut v = View::new(Limits {
            quorum: Quorum::Majority,
            stale_after_ms: 60_000,
            interval_ms: 10_000,
            trend_points: 10,
            alerts: 10,
            timeline: 10,
        });
        let t = 1_000_000;
        let mut through = |vantage: &str, resolver: &str, status| {
            let mut e = event("us-east-1", "dynamodb", "d", vantage, status, 1_000, t);
            e.resolver = resolver.into();
            v.observe(&e);
        };
        // Vantage a: one resolver fails, one does not; vantage b: fails.
        through("a", "10.0.0.1:53", Status::Critical);
        through("a", "10.0.0.2:53", Status::Healthy);
        through("a", "10.0.0.3:53", Status::Healthy);
        through("b", "10.0.0.1:53", Status::Critical);
        let figures: Vec<_> = v.figures(t).map(|(_, f)| f.status).collect();
        assert_eq!(
            figures,
            [Status::Critical],
            "two vantages of two see critical, however many resolvers answered"
        );
    }

    #[test]
    fn uptime_is_healthy_over_total_and_zero_without_endpoints() {
        assert_eq!(uptime_percent(0, 0), 0.0);
        assert_eq!(uptime_percent(7, 7), 100.0);
        assert_eq!(uptime_percent(0, 7), 0.0);
        assert!((uptime_percent(20, 21) - 95.238_095).abs() < 1e-5);
    }

    #[test]
    fn summary_region_and_service_cards() {
        let mut v = view();
        let t = 1_000_000;
        // us-east-1: dynamodb critical (2 endpoints, one critical), ec2 healthy.
        v.observe(&event(
            "us-east-1",
            "dynamodb",
            "a",
            "v1",
            Status::Healthy,
            1_000,
            t,
        ));
        v.observe(&event(
            "us-east-1",
            "dynamodb",
            "b",
            "v1",
            Status::Critical,
            2_000_000,
            t,
        ));
        v.observe(&event(
            "us-east-1",
            "ec2",
            "c",
            "v1",
            Status::Healthy,
            3_000,
            t,
        ));
        // eu-west-1: one warning endpoint.
        v.observe(&event(
            "eu-west-1",
            "sts",
            "d",
            "v1",
            Status::Warning,
            150_000,
            t,
        ));
        let (s, stale) = v.snapshot(t);
        assert_eq!(stale, 0);
        let sum = s.summary.unwrap();
        assert_eq!(
            (sum.total_endpoints, sum.healthy, sum.warning, sum.critical),
            (4, 2, 1, 1)
        );
        assert_eq!(sum.uptime_percent, 50.0);
        // (1,000 + 2,000,000 + 3,000 + 150,000) / 4
        assert_eq!(sum.avg_response_time_us, 538_500);
        let names: Vec<_> = s.regions.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(names, ["eu-west-1", "us-east-1"]);
        let east = &s.regions[1];
        assert_eq!((east.healthy, east.total), (2, 3));
        let dynamo = &east.services[0];
        assert_eq!(dynamo.service, "dynamodb");
        assert_eq!(dynamo.status(), Status::Critical);
        assert_eq!(dynamo.endpoints, 2);
        assert_eq!(dynamo.avg_response_time_us, 1_000_500);
        assert_eq!(east.services[1].status(), Status::Healthy);
        assert_eq!(s.regions[0].services[0].status(), Status::Warning);
        assert_eq!(s.sequence, 1);
        assert_eq!(v.snapshot(t).0.sequence, 2);
    }

    #[test]
    fn an_endpoint_takes_the_majority_of_its_vantage_points_and_their_mean_time() {
        let mut v = view();
        let t = 1_000_000;
        v.observe(&event("r", "s", "e", "v1", Status::Critical, 900, t));
        v.observe(&event("r", "s", "e", "v2", Status::Healthy, 100, t));
        v.observe(&event("r", "s", "e", "v3", Status::Healthy, 200, t));
        let (s, _) = v.snapshot(t);
        let sum = s.summary.unwrap();
        assert_eq!((sum.total_endpoints, sum.healthy), (1, 1));
        assert_eq!(sum.avg_response_time_us, 400);
        // A second vantage point turns it.
        v.observe(&event("r", "s", "e", "v2", Status::Critical, 900, t + 1));
        assert_eq!(v.snapshot(t + 1).0.summary.unwrap().critical, 1);
        // An older observation never replaces a newer one.
        v.observe(&event("r", "s", "e", "v2", Status::Healthy, 100, t - 5));
        assert_eq!(v.snapshot(t + 1).0.summary.unwrap().critical, 1);
    }

    #[test]
    fn observations_older_than_stale_after_drop_out_at_the_boundary_and_the_region_stays_stale() {
        let mut v = view();
        let t = 1_000_000;
        v.observe(&event("r", "s", "e", "v1", Status::Healthy, 100, t));
        v.observe(&event(
            "q",
            "s",
            "e2",
            "v1",
            Status::Healthy,
            100,
            t + 30_000,
        ));
        // Exactly stale_after old still counts.
        let (s, stale) = v.snapshot(t + 35_000);
        assert_eq!((s.summary.unwrap().total_endpoints, stale), (2, 0));
        assert!(s.regions.iter().all(|r| !r.stale));
        // One millisecond more does not: the endpoint is not counted, its
        // region keeps a card, stale, saying when it last heard.
        let (s, stale) = v.snapshot(t + 35_001);
        let sum = s.summary.unwrap();
        assert_eq!((sum.total_endpoints, sum.stale_endpoints, stale), (1, 1, 1));
        assert_eq!(sum.uptime_percent, 100.0);
        let r = s
            .regions
            .iter()
            .find(|r| r.region == "r")
            .expect("r's card");
        assert!(r.stale, "{r:?}");
        assert_eq!(
            (r.last_event_unix_ms, r.stale_endpoints, r.total),
            (t, 1, 0)
        );
        let q = s
            .regions
            .iter()
            .find(|r| r.region == "q")
            .expect("q's card");
        assert!(!q.stale && q.total == 1 && q.last_event_unix_ms == t + 30_000);
        // An hour later the silent region is forgotten.
        let (s, _) = v.snapshot(t + FORGET_AFTER_MS + 1);
        assert!(s.regions.iter().all(|r| r.region != "r"), "{:?}", s.regions);
    }

    #[test]
    fn the_trend_keeps_one_point_per_boundary_and_the_last_twenty() {
        let mut v = view();
        let t0 = 100 * INTERVAL;
        v.observe(&event("r", "s", "e", "v1", Status::Healthy, 100, t0 - 1));
        v.advance_to(t0);
        v.advance_to(t0 + 5); // same interval: no new point
        assert_eq!(v.trend.len(), 1);
        assert_eq!(v.trend[0].at_unix_ms, t0);
        assert_eq!((v.trend[0].healthy, v.trend[0].critical), (1, 0));
        // 24 more intervals, critical from the 3rd on.
        for k in 1..=24 {
            let at = t0 + k * INTERVAL;
            let status = if k >= 3 {
                Status::Critical
            } else {
                Status::Healthy
            };
            v.observe(&event("r", "s", "e", "v1", status, 100, at - 1));
            v.advance_to(at);
        }
        assert_eq!(v.trend.len(), 20);
        assert_eq!(v.trend.front().unwrap().at_unix_ms, t0 + 5 * INTERVAL);
        assert_eq!(v.trend.back().unwrap().at_unix_ms, t0 + 24 * INTERVAL);
        assert!(v.trend.iter().all(|p| p.critical == 1 && p.healthy == 0));
        let (s, _) = v.snapshot(t0 + 24 * INTERVAL);
        assert_eq!(s.trend.len(), 20);
    }

    #[test]
    fn an_observation_just_after_the_boundary_still_counts_in_its_point() {
        let mut v = view();
        let t0 = 100 * INTERVAL;
        v.observe(&event(
            "r",
            "s",
            "e",
            "v1",
            Status::Healthy,
            100,
            t0 - INTERVAL + 3,
        ));
        v.advance_to(t0 - INTERVAL);
        // The next round lands 2 ms after the boundary; the timer fires at +5 ms.
        v.observe(&event("r", "s", "e", "v1", Status::Healthy, 100, t0 + 2));
        v.advance_to(t0 + 5);
        let last = v.trend.back().unwrap();
        assert_eq!((last.at_unix_ms, last.healthy), (t0, 1));
    }

    #[test]
    fn a_gap_fills_boundaries_and_a_replay_builds_points_from_event_times() {
        let mut v = view();
        let t0 = 100 * INTERVAL;
        v.advance_to(t0);
        // Three intervals pass with one endpoint seen before each boundary.
        v.observe(&event("r", "s", "e", "v1", Status::Warning, 100, t0 + 1));
        v.advance_to(t0 + 3 * INTERVAL + 7);
        let at: Vec<_> = v
            .trend
            .iter()
            .map(|p| (p.at_unix_ms - t0) / INTERVAL)
            .collect();
        assert_eq!(at, [0, 1, 2, 3]);
        assert_eq!(v.trend[0].warning, 0);
        assert!(v.trend.iter().skip(1).all(|p| p.warning == 1));
        // A gap longer than the window keeps only the window.
        v.advance_to(t0 + 500 * INTERVAL);
        assert_eq!(v.trend.len(), 20);
        assert_eq!(v.trend.back().unwrap().at_unix_ms, t0 + 500 * INTERVAL);
    }

    #[test]
    fn a_region_card_keeps_its_open_cascade_alert_until_it_resolves() {
        let mut v = view();
        let t0 = 1_700_000_000_000;
        v.observe(&event(
            "us-east-1",
            "dynamodb",
            "dynamodb.us-east-1.amazonaws.com",
            "v1",
            Status::Critical,
            300,
            t0,
        ));
        let cascade = |id: &str, state: AlertState, risk: f64| {
            let mut a = Alert {
                id: id.into(),
                region: "us-east-1".into(),
                summary: format!("us-east-1: cascade risk {risk:.2}"),
                risk_score: risk,
                predicted_impact: vec![rg_proto::v1::Impact {
                    service: "lambda".into(),
                    degradation: 0.9,
                    path: vec!["dynamodb".into(), "lambda".into()],
                }],
                ..Default::default()
            };
            a.set_source(AlertSource::Cascade);
            a.set_state(state);
            a
        };
        v.alert(cascade("casc-1", AlertState::Firing, 0.82));
        // Many alerts later (more than the feed keeps), the card still has it.
        for i in 0..10 {
            v.alert(Alert {
                id: format!("other-{i}"),
                region: "us-east-1".into(),
                ..Default::default()
            });
        }
        let card = |v: &mut View| {
            let (s, _) = v.snapshot(t0 + 1);
            s.regions
                .into_iter()
                .find(|r| r.region == "us-east-1")
                .unwrap()
        };
        let c = card(&mut v);
        assert_eq!(c.cascade_risk, 0.82);
        assert_eq!(c.cascade_summary, "us-east-1: cascade risk 0.82");
        assert_eq!(c.cascade_impact[0].service, "lambda");
        // An older alert's resolution does not clear a newer one.
        v.alert(cascade("casc-0", AlertState::Resolved, 0.1));
        assert_eq!(card(&mut v).cascade_risk, 0.82);
        v.alert(cascade("casc-1", AlertState::Resolved, 0.1));
        let c = card(&mut v);
        assert_eq!((c.cascade_risk, c.cascade_summary.as_str()), (0.0, ""));
    }

    #[test]
    fn alerts_and_timeline_are_newest_first_bounded_and_deduplicated() {
        let mut v = view();
        for id in ["a", "b", "c", "d"] {
            v.alert(Alert {
                id: id.into(),
                ..Default::default()
            });
        }
        v.alert(Alert {
            id: "c".into(),
            summary: "again".into(),
            ..Default::default()
        });
        let ids: Vec<_> = v.alerts().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "b"]);
        let phase = |p: FailoverPhase, at: i64| {
            let mut d = FailoverDecision {
                id: "f1".into(),
                at_unix_ms: at,
                ..Default::default()
            };
            d.set_phase(p);
            d
        };
        v.decision(phase(FailoverPhase::Requested, 1));
        v.decision(phase(FailoverPhase::Planned, 2));
        v.decision(phase(FailoverPhase::Planned, 2));
        assert_eq!(v.timeline().count(), 2);
        assert_eq!(v.failover("f1").unwrap().phase(), FailoverPhase::Planned);
        // A late older phase does not turn the failover back.
        v.decision(phase(FailoverPhase::Requested, 1));
        assert_eq!(v.failover("f1").unwrap().phase(), FailoverPhase::Planned);
        assert!(v.failover("nope").is_none());
    }

    #[test]
    fn a_region_card_shows_its_readiness_and_the_deep_health_others_scored_it_with() {
        use rg_proto::v1::RegionCandidate;
        let candidate = |region: &str, score: f64, factor: f64| RegionCandidate {
            region: region.into(),
            health_score: score,
            checks: if factor < 0.0 {
                Vec::new()
            } else {
                vec![ResourceCheck {
                    resource: "tg web".into(),
                    factor,
                    detail: format!("{factor}"),
                    ..Default::default()
                }]
            },
            ..Default::default()
        };
        let readiness = |region: &str, at: i64, candidates: Vec<RegionCandidate>| Readiness {
            region: region.into(),
            ready: true,
            checked_at_unix_ms: at,
            candidates,
            ..Default::default()
        };
        let mut v = view();
        // us-east-1's check scored us-west-2; us-west-2's own (newer) lists
        // it unscored as the failing region, which must not win.
        v.readiness(readiness(
            "us-east-1",
            10,
            vec![candidate("us-west-2", 0.5, 0.5)],
        ));
        v.readiness(readiness(
            "us-west-2",
            20,
            vec![candidate("us-west-2", 1.0, -1.0)],
        ));
        // An older check never replaces a newer one.
        v.readiness(readiness("us-west-2", 5, Vec::new()));
        let (snapshot, _) = v.snapshot(1_000);
        let card = snapshot
            .regions
            .iter()
            .find(|c| c.region == "us-west-2")
            .expect("a card from readiness alone");
        assert_eq!(card.health_score, 0.5);
        assert_eq!(card.checks.len(), 1);
        assert_eq!(
            card.readiness.as_ref().map(|r| r.checked_at_unix_ms),
            Some(20)
        );
        let use1 = snapshot
            .regions
            .iter()
            .find(|c| c.region == "us-east-1")
            .unwrap();
        assert_eq!(use1.health_score, -1.0, "nobody scored us-east-1");
    }
}
