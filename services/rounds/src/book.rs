//! Observations grouped by region and round, handed out when complete.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rg_proto::domain::{Observation, Priority, ServiceName, Status};
use tokio::time::Instant;

use crate::quorum::{agree, Agreement, Quorum};

/// A complete round of one region.
#[derive(Debug)]
pub struct Round<T> {
    /// Region.
    pub region: String,
    /// Round id.
    pub round: u64,
    /// Its observations, in arrival order.
    pub events: Vec<Observation>,
    /// The acks of the messages they came in.
    pub acks: Vec<T>,
}

/// One endpoint in a round: its observations and what the vantages agree on.
#[derive(Debug, Clone)]
pub struct EndpointRound<'a> {
    /// The endpoint.
    pub endpoint: &'a str,
    /// Its service.
    pub service: &'a ServiceName,
    /// Its priority (critical if any observation says so).
    pub priority: Priority,
    /// Its observations.
    pub events: Vec<&'a Observation>,
    /// One vote per vantage: the worst status it saw.
    pub votes: BTreeMap<String, Status>,
    /// The votes combined.
    pub agreement: Agreement,
}

impl<T> Round<T> {
    /// When the round began: its earliest observation, unix ms (`fallback`
    /// for an empty round).
    pub fn start_ms(&self, fallback: i64) -> i64 {
        self.events
            .iter()
            .map(|e| e.observed_at_unix_ms)
            .min()
            .unwrap_or(fallback)
    }

    /// Each endpoint's votes and agreement, by endpoint name.
    pub fn endpoints(&self, quorum: Quorum) -> Vec<EndpointRound<'_>> {
        let mut by_endpoint: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
        for e in &self.events {
            by_endpoint.entry(e.endpoint.as_str()).or_default().push(e);
        }
        by_endpoint
            .into_iter()
            .filter_map(|(endpoint, events)| {
                let first = *events.first()?;
                let votes = vantage_votes(&events);
                let priority = if events.iter().any(|e| e.priority == Priority::Critical) {
                    Priority::Critical
                } else {
                    Priority::Default
                };
                let agreement = agree(&votes, quorum);
                Some(EndpointRound {
                    endpoint,
                    service: &first.service,
                    priority,
                    events,
                    votes,
                    agreement,
                })
            })
            .collect()
    }
}

/// Each vantage's vote on one endpoint in one round. Without a
/// confirmation burst: the worst status it saw. With one: what most of the
/// burst's re-probes saw (a tie goes to the worse), so one lost answer
/// that the re-probes do not repeat is not a failure, and a failure they
/// repeat is.
pub fn vantage_votes(events: &[&Observation]) -> BTreeMap<String, Status> {
    let mut regular: BTreeMap<&str, Status> = BTreeMap::new();
    let mut confirmed: BTreeMap<&str, Vec<Status>> = BTreeMap::new();
    for e in events {
        if e.confirmation {
            confirmed
                .entry(e.vantage.as_str())
                .or_default()
                .push(e.status);
        } else {
            let v = regular.entry(e.vantage.as_str()).or_insert(e.status);
            *v = (*v).max(e.status);
        }
    }
    let mut votes: BTreeMap<String, Status> = regular
        .into_iter()
        .map(|(v, s)| (v.to_owned(), s))
        .collect();
    for (vantage, statuses) in confirmed {
        let mut counts: BTreeMap<Status, usize> = BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_default() += 1;
        }
        // Most seen; among equals the worse (BTreeMap order: worst last).
        let most = counts
            .iter()
            .max_by_key(|(s, n)| (**n, **s))
            .map(|(s, _)| *s);
        if let Some(s) = most {
            votes.insert(vantage.to_owned(), s);
        }
    }
    votes
}

/// What [`RoundBook::add`] did with an observation.
#[derive(Debug)]
pub enum Added<T> {
    /// Held in its round.
    Held,
    /// Its round was already handed out: ack it, it is not used.
    Late(T),
}

struct Held<T> {
    first_seen: Instant,
    events: Vec<Observation>,
    acks: Vec<T>,
    /// Per endpoint, per vantage: (re-probes not healthy, re-probes).
    confirmations: HashMap<String, HashMap<String, (u32, u32)>>,
    /// A strict majority of the region's vantages confirmed a failure of
    /// some endpoint: the round is decided now, not when it settles.
    confirmed: bool,
    /// Regular (not confirmation) events held.
    regular: usize,
    /// Some regular event was not healthy (its confirmations may follow).
    unhealthy: bool,
}

/// Rounds being collected.
pub struct RoundBook<T> {
    settle: Duration,
    round_timeout: Duration,
    rounds: BTreeMap<(String, u64), Held<T>>,
    /// Per region: the newest round seen and when it was first seen.
    newest: HashMap<String, (u64, Instant)>,
    /// Per region: the newest round handed out.
    done: HashMap<String, u64>,
    /// Per region: vantages that reported in the last round decided in
    /// full (the electorate of an early decision).
    vantages: HashMap<String, usize>,
    /// Per region: regular events of the last round decided in full.
    full_size: HashMap<String, usize>,
}

/// Failed re-probes with which a vantage confirms a failure.
const CONFIRMING: u32 = 2;

impl<T> RoundBook<T> {
    /// A book that completes a round `settle` after the next one starts
    /// arriving, or `round_timeout` after its own first event.
    pub fn new(settle: Duration, round_timeout: Duration) -> Self {
        Self {
            settle,
            round_timeout,
            rounds: BTreeMap::new(),
            newest: HashMap::new(),
            done: HashMap::new(),
            vantages: HashMap::new(),
            full_size: HashMap::new(),
        }
    }

    /// Rounds held, and observations in them.
    pub fn held(&self) -> (usize, usize) {
        (
            self.rounds.len(),
            self.rounds.values().map(|r| r.events.len()).sum(),
        )
    }

    /// Takes an observation and the ack of its message.
    pub fn add(&mut self, obs: Observation, ack: T, now: Instant) -> Added<T> {
        let region = obs.region.to_string();
        if self.done.get(&region).is_some_and(|d| obs.round_id <= *d) {
            return Added::Late(ack);
        }
        let newest = self
            .newest
            .entry(region.clone())
            .or_insert((obs.round_id, now));
        if obs.round_id > newest.0 {
            *newest = (obs.round_id, now);
        }
        let expected = self.vantages.get(&region).copied();
        let held = self
            .rounds
            .entry((region, obs.round_id))
            .or_insert_with(|| Held {
                first_seen: now,
                events: Vec::new(),
                acks: Vec::new(),
                confirmations: HashMap::new(),
                confirmed: false,
                regular: 0,
                unhealthy: false,
            });
        if !obs.confirmation {
            held.regular += 1;
            held.unhealthy |= obs.status != Status::Healthy;
        }
        if obs.confirmation && !held.confirmed {
            let tally = held.confirmations.entry(obs.endpoint.clone()).or_default();
            let (bad, all) = tally.entry(obs.vantage.clone()).or_default();
            *all += 1;
            if obs.status != Status::Healthy {
                *bad += 1;
            }
            // A vantage confirms a failure with two failed re-probes out of
            // at most three; the decision cannot change once a strict
            // majority of the vantages of the region's last round did.
            let confirming = tally
                .values()
                .filter(|(bad, all)| *bad >= CONFIRMING && *bad * 2 > *all)
                .count();
            if expected.is_some_and(|n| confirming * 2 > n) {
                held.confirmed = true;
            }
        }
        held.events.push(obs);
        held.acks.push(ack);
        Added::Held
    }

    /// When the round after `round` of `region` began arriving, if it has.
    /// Measured from the next round, not the newest: with a probe interval
    /// shorter than `settle`, a newer round begins before the last one
    /// settles, and measuring from the newest would never settle.
    fn next_round_since(&self, region: &str, round: u64) -> Option<Instant> {
        let from = (region.to_owned(), round.saturating_add(1));
        let to = (region.to_owned(), u64::MAX);
        self.rounds
            .range(from..=to)
            .next()
            .map(|(_, r)| r.first_seen)
            .or_else(|| {
                // The next round is not held (its events all came late):
                // the newest round seen stands in for it.
                self.newest
                    .get(region)
                    .filter(|(newest, _)| *newest > round)
                    .map(|(_, since)| *since)
            })
    }

    /// Every lookup of the round arrived (as many regular events as the
    /// last full round had) and every one was healthy: nothing can come
    /// that changes it, so it is decided at once. A round with a failure
    /// waits for its confirmations (or their majority, above).
    fn complete_and_healthy(&self, region: &str, r: &Held<T>) -> bool {
        !r.unhealthy
            && self
                .full_size
                .get(region)
                .is_some_and(|n| *n > 0 && r.regular >= *n)
    }

    /// When the next round completes (for the caller's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.rounds
            .iter()
            .map(|((region, round), r)| {
                let by_timeout = r.first_seen + self.round_timeout;
                if r.confirmed || self.complete_and_healthy(region, r) {
                    return r.first_seen;
                }
                match self.next_round_since(region, *round) {
                    Some(since) => by_timeout.min(since + self.settle),
                    None => by_timeout,
                }
            })
            .min()
    }

    /// Every round complete at `now`, oldest first per region (a round is
    /// only handed out after every earlier round of its region, so a late
    /// event is always recognized as late).
    pub fn take_due(&mut self, now: Instant) -> Vec<Round<T>> {
        let due: Vec<(String, u64)> = self
            .rounds
            .iter()
            .filter(|((region, round), r)| {
                let later_settled = self
                    .next_round_since(region, *round)
                    .is_some_and(|since| now.saturating_duration_since(since) >= self.settle);
                r.confirmed
                    || self.complete_and_healthy(region, r)
                    || later_settled
                    || now.saturating_duration_since(r.first_seen) >= self.round_timeout
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in due {
            let earlier: Vec<(String, u64)> = self
                .rounds
                .range((key.0.clone(), 0)..=(key.0.clone(), key.1))
                .map(|(k, _)| k.clone())
                .collect();
            for k in earlier {
                if let Some(r) = self.rounds.remove(&k) {
                    out.push(self.hand_out(k, r));
                }
            }
        }
        out
    }

    /// Every held round, now (for tools and tests).
    pub fn take_all(&mut self) -> Vec<Round<T>> {
        let rounds = std::mem::take(&mut self.rounds);
        rounds
            .into_iter()
            .map(|(k, r)| self.hand_out(k, r))
            .collect()
    }

    fn hand_out(&mut self, (region, round): (String, u64), held: Held<T>) -> Round<T> {
        let done = self.done.entry(region.clone()).or_insert(round);
        *done = (*done).max(round);
        if held.confirmed {
            tracing::debug!(%region, round, "round decided early: a majority of vantages confirmed a failure");
        }
        let vantages: std::collections::HashSet<&str> =
            held.events.iter().map(|e| e.vantage.as_str()).collect();
        // A round decided early may lack some vantages' events: it does
        // not change the electorate.
        if !vantages.is_empty() && !held.confirmed {
            self.vantages.insert(region.clone(), vantages.len());
            self.full_size.insert(region.clone(), held.regular);
        }
        Round {
            region,
            round,
            events: held.events,
            acks: held.acks,
        }
    }
}

#[cfg(test)]
mod tests {
    use rg_proto::domain::{LookupError, Region};

    use super::*;

    fn obs(region: &str, vantage: &str, round: u64, status: Status) -> Observation {
        Observation {
            region: Region::parse(region).unwrap(),
            service: ServiceName::parse("dynamodb").unwrap(),
            endpoint: format!("dynamodb.{region}.amazonaws.com"),
            vantage: vantage.into(),
            round_id: round,
            observed_at_unix_ms: round as i64 * 10_000,
            resolver: "r".into(),
            error: (status == Status::Critical).then_some(LookupError::EmptyAnswer),
            response_time: Duration::from_millis(3),
            status,
            priority: Priority::Critical,
            confirmation: false,
            sequence: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_completes_once_the_next_has_settled_and_stragglers_are_late() {
        let mut book = RoundBook::new(Duration::from_millis(100), Duration::from_secs(60));
        let t0 = Instant::now();
        book.add(obs("us-east-1", "a", 5, Status::Critical), 1, t0);
        book.add(obs("us-east-1", "b", 5, Status::Critical), 2, t0);
        book.add(obs("us-east-1", "c", 5, Status::Healthy), 3, t0);
        book.add(obs("eu-west-1", "a", 5, Status::Healthy), 4, t0);
        assert!(book.take_due(t0).is_empty());
        let t1 = t0 + Duration::from_secs(10);
        book.add(obs("us-east-1", "a", 6, Status::Healthy), 5, t1);
        assert!(book.take_due(t1).is_empty(), "not settled yet");
        assert_eq!(book.next_due(), Some(t1 + Duration::from_millis(100)));
        let rounds = book.take_due(t1 + Duration::from_millis(100));
        assert_eq!(rounds.len(), 1, "only us-east-1 has a later round");
        let r = &rounds[0];
        assert_eq!(
            (r.region.as_str(), r.round, r.acks.clone()),
            ("us-east-1", 5, vec![1, 2, 3])
        );
        let endpoints = r.endpoints(Quorum::Majority);
        assert_eq!(
            endpoints[0].agreement,
            Agreement::Agreed {
                status: Status::Critical,
                agreeing: 2,
                reporting: 3
            }
        );
        assert!(matches!(
            book.add(obs("us-east-1", "c", 5, Status::Healthy), 9, t1),
            Added::Late(9)
        ));
        // eu-west-1 completes by timeout.
        let late = book.take_due(t0 + Duration::from_secs(60));
        assert_eq!(
            late.iter().map(|r| r.region.as_str()).collect::<Vec<_>>(),
            ["eu-west-1"]
        );
        assert_eq!(book.held(), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_settle_when_the_probe_interval_is_shorter_than_settle() {
        // Interval 1 s, settle 2 s: a new round begins every second, so
        // the newest round never stays newest for 2 s.
        let mut book = RoundBook::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        let mut decided = Vec::new();
        for i in 0..6u64 {
            let t = t0 + Duration::from_secs(i);
            // Not healthy: a complete healthy round would be decided at
            // once (tested below); this one waits to settle.
            book.add(obs("us-east-1", "a", 100 + i, Status::Warning), i, t);
            decided.extend(book.take_due(t).into_iter().map(|r| r.round));
        }
        // Round 100 is due 2 s after round 101 began (t0 + 3 s), and so on.
        assert_eq!(decided, [100, 101, 102]);
        assert_eq!(book.next_due(), Some(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn a_vantage_votes_what_its_confirmation_burst_saw() {
        let mut lost = obs("us-east-1", "a", 5, Status::Critical);
        lost.endpoint = "x".into();
        let confirm = |status| {
            let mut o = obs("us-east-1", "a", 5, status);
            o.endpoint = "x".into();
            o.confirmation = true;
            o
        };
        // One lost answer, three good re-probes: healthy.
        let (c1, c2, c3) = (
            confirm(Status::Healthy),
            confirm(Status::Healthy),
            confirm(Status::Healthy),
        );
        let votes = vantage_votes(&[&lost, &c1, &c2, &c3]);
        assert_eq!(votes["a"], Status::Healthy);
        // A failure the re-probes repeat: critical.
        let (d1, d2, d3) = (
            confirm(Status::Critical),
            confirm(Status::Critical),
            confirm(Status::Healthy),
        );
        assert_eq!(
            vantage_votes(&[&lost, &d1, &d2, &d3])["a"],
            Status::Critical
        );
        // A tie goes to the worse; no burst: the worst regular status.
        assert_eq!(vantage_votes(&[&lost, &c1, &d1])["a"], Status::Critical);
        let ok = obs("us-east-1", "a", 5, Status::Healthy);
        assert_eq!(vantage_votes(&[&ok, &lost])["a"], Status::Critical);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_confirmed_by_a_majority_decides_the_round_at_once() {
        let mut book = RoundBook::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        // Round 1, decided in full: three vantages report.
        for v in ["a", "b", "c"] {
            book.add(obs("us-east-1", v, 1, Status::Healthy), 0, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        book.add(obs("us-east-1", "a", 2, Status::Critical), 1, t1);
        assert_eq!(book.take_due(t1 + Duration::from_secs(2)).len(), 1);
        let confirm = |v: &str, round, status| {
            let mut o = obs("us-east-1", v, round, status);
            o.confirmation = true;
            o
        };
        // a confirms (2 of 2 failed); one vantage of three is not enough.
        book.add(confirm("a", 2, Status::Critical), 2, t1);
        book.add(confirm("a", 2, Status::Critical), 3, t1);
        assert!(book.take_due(t1 + Duration::from_secs(3)).is_empty());
        // b's single failed re-probe does not confirm yet; its second does.
        book.add(confirm("b", 2, Status::Critical), 4, t1);
        assert!(book.take_due(t1 + Duration::from_secs(3)).is_empty());
        book.add(confirm("b", 2, Status::Critical), 5, t1);
        let early = book.take_due(t1 + Duration::from_secs(3));
        assert_eq!(early.len(), 1, "2 of 3 confirmed: decided now");
        assert_eq!(early[0].round, 2);
        // A lost answer whose re-probes are healthy decides nothing early.
        let t2 = t1 + Duration::from_secs(10);
        book.add(obs("us-east-1", "a", 3, Status::Critical), 6, t2);
        for v in ["a", "b", "c"] {
            book.add(confirm(v, 3, Status::Healthy), 7, t2);
            book.add(confirm(v, 3, Status::Healthy), 8, t2);
        }
        assert!(book.take_due(t2 + Duration::from_secs(1)).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_healthy_round_is_decided_at_once_and_one_with_a_failure_waits() {
        let mut book = RoundBook::new(Duration::from_secs(2), Duration::from_secs(60));
        let t0 = Instant::now();
        for v in ["a", "b"] {
            book.add(obs("us-east-1", v, 1, Status::Healthy), 0, t0);
        }
        // The first round has nothing to compare with: it settles.
        assert!(book.take_due(t0).is_empty());
        let t1 = t0 + Duration::from_secs(10);
        book.add(obs("us-east-1", "a", 2, Status::Healthy), 1, t1);
        assert_eq!(book.take_due(t1 + Duration::from_secs(2)).len(), 1);
        // Round 2 has 1 of its 2 lookups: not complete.
        assert!(book.take_due(t1).is_empty());
        book.add(obs("us-east-1", "b", 2, Status::Healthy), 2, t1);
        assert_eq!(book.next_due(), Some(t1));
        let now = book.take_due(t1);
        assert_eq!(now.len(), 1, "complete and healthy: decided at once");
        // A complete round with a failure waits for confirmations.
        let t2 = t1 + Duration::from_secs(10);
        book.add(obs("us-east-1", "a", 3, Status::Healthy), 3, t2);
        book.add(obs("us-east-1", "b", 3, Status::Critical), 4, t2);
        assert!(book.take_due(t2).is_empty());
    }
}
