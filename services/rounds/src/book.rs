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
    /// Why it was handed out when it was.
    pub decided_by: DecidedBy,
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

/// Why a round was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// Every lookup of the round arrived, and every re-probe they called
    /// for: nothing more is on its way.
    Complete,
    /// A majority of vantages confirmed a failure, and what was still
    /// outstanding did not come within `confirmed_wait`.
    ConfirmedWait,
    /// The next round had been arriving for `settle`.
    Settled,
    /// `round_timeout` after its first event.
    Timeout,
    /// A later round of its region was handed out.
    Overtaken,
}

impl DecidedBy {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::ConfirmedWait => "confirmed_wait",
            Self::Settled => "settled",
            Self::Timeout => "timeout",
            Self::Overtaken => "overtaken",
        }
    }

    /// Whether it was decided on a deadline, with events possibly still on
    /// their way (which then come late).
    pub fn by_deadline(self) -> bool {
        self != Self::Complete
    }
}

/// When rounds are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTiming {
    /// A round not complete by itself is handed out this long after the
    /// next round began arriving.
    pub settle: Duration,
    /// ... or this long after its own first event, whichever comes first.
    pub round_timeout: Duration,
    /// Once a majority of vantages confirmed a failure, what is still
    /// outstanding (slower lookups, other re-probes) is waited for this
    /// long at most. Longer than the probers' `timeout` plus
    /// `(confirm.count - 1) x confirm.spacing`.
    pub confirmed_wait: Duration,
}

impl Default for RoundTiming {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(2),
            round_timeout: Duration::from_secs(60),
            confirmed_wait: Duration::from_secs(5),
        }
    }
}

/// One (vantage, resolver) of an endpoint in a round: what it reported and
/// what it still owes.
#[derive(Debug, Default)]
struct PathTally {
    /// Its scheduled lookup: status and the burst it runs when asked.
    regular: Option<(Status, u32)>,
    /// Re-probes arrived.
    confirmations: u32,
    /// The size of the burst they belong to.
    burst_size: u32,
}

/// One endpoint in a round: its paths and who asked the others to confirm.
#[derive(Debug, Default)]
struct EndpointTally {
    paths: HashMap<(String, String), PathTally>,
    /// Vantages that asked the region's others to confirm.
    askers: Vec<String>,
    /// Per vantage: (re-probes not healthy, re-probes), for the majority rule.
    votes: HashMap<String, (u32, u32)>,
}

impl EndpointTally {
    /// Re-probes still owed by path `(vantage, resolver)`: a burst for a
    /// scheduled lookup that was not healthy, or that another vantage asked
    /// about; and the rest of a burst that has begun.
    fn owed(&self, (vantage, _): &(String, String), p: &PathTally) -> u32 {
        let asked_by_other = self.askers.iter().any(|a| a != vantage);
        let need = match p.regular {
            Some((status, burst)) if status != Status::Healthy || asked_by_other => burst,
            _ => 0,
        };
        let need = if p.confirmations > 0 {
            need.max(p.burst_size)
        } else {
            need
        };
        need.saturating_sub(p.confirmations)
    }

    fn owed_total(&self) -> u64 {
        self.paths
            .iter()
            .map(|(k, p)| u64::from(self.owed(k, p)))
            .sum()
    }
}

struct Held<T> {
    first_seen: Instant,
    events: Vec<Observation>,
    acks: Vec<T>,
    endpoints: HashMap<String, EndpointTally>,
    /// Re-probes owed, over every endpoint (kept up to date as events come).
    owed: u64,
    /// When a strict majority of the region's vantages confirmed a failure
    /// of some endpoint: from then on the round waits at most
    /// `confirmed_wait` for what is outstanding.
    confirmed_at: Option<Instant>,
    /// Regular (not confirmation) events held, per vantage.
    regular: HashMap<String, u32>,
}

/// A vantage point of a region, as its events describe it.
#[derive(Debug, Clone, Copy)]
struct Vantage {
    /// Scheduled lookups it makes every round (0: unknown).
    lookups: u32,
    /// The first and the newest round it reported in (late events count).
    first_round: u64,
    last_round: u64,
}

impl Vantage {
    /// Whether round `round` should hold its lookups: it had begun
    /// reporting by then and has reported since the round before. A
    /// vantage that stops (a prober killed) is waited for in one round
    /// (decided on a deadline), then no more; one that comes back under
    /// the same id is expected again from its next round on.
    fn expected_in(&self, round: u64) -> bool {
        self.first_round <= round && self.last_round.saturating_add(1) >= round
    }
}

/// Rounds being collected.
pub struct RoundBook<T> {
    timing: RoundTiming,
    rounds: BTreeMap<(String, u64), Held<T>>,
    /// Per region: the newest round seen and when it was first seen.
    newest: HashMap<String, (u64, Instant)>,
    /// Per region: the newest round handed out.
    done: HashMap<String, u64>,
    /// Per region: the first round seen (it may have begun before the book
    /// did, so it is never complete by count).
    first: HashMap<String, u64>,
    /// Per region, per vantage: what its events say of it.
    vantages: HashMap<String, HashMap<String, Vantage>>,
}

/// Failed re-probes with which a vantage confirms a failure.
const CONFIRMING: u32 = 2;

impl<T> RoundBook<T> {
    /// A book handing out rounds as `timing` says.
    pub fn new(timing: RoundTiming) -> Self {
        Self {
            timing,
            rounds: BTreeMap::new(),
            newest: HashMap::new(),
            done: HashMap::new(),
            first: HashMap::new(),
            vantages: HashMap::new(),
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
        // Every event, late ones too, tells which vantages report and how
        // much: a prober restarted under the same id is expected again.
        let vantage = self
            .vantages
            .entry(region.clone())
            .or_default()
            .entry(obs.vantage.clone())
            .or_insert(Vantage {
                lookups: obs.round_lookups,
                first_round: obs.round_id,
                last_round: obs.round_id,
            });
        vantage.first_round = vantage.first_round.min(obs.round_id);
        if obs.round_id >= vantage.last_round {
            vantage.last_round = obs.round_id;
            if !obs.confirmation {
                vantage.lookups = obs.round_lookups;
            }
        }
        if self.done.get(&region).is_some_and(|d| obs.round_id <= *d) {
            return Added::Late(ack);
        }
        self.first.entry(region.clone()).or_insert(obs.round_id);
        let newest = self
            .newest
            .entry(region.clone())
            .or_insert((obs.round_id, now));
        if obs.round_id > newest.0 {
            *newest = (obs.round_id, now);
        }
        let electorate = self
            .vantages
            .get(&region)
            .map(|vs| vs.values().filter(|v| v.expected_in(obs.round_id)).count());
        let held = self
            .rounds
            .entry((region, obs.round_id))
            .or_insert_with(|| Held {
                first_seen: now,
                events: Vec::new(),
                acks: Vec::new(),
                endpoints: HashMap::new(),
                owed: 0,
                confirmed_at: None,
                regular: HashMap::new(),
            });
        let tally = held.endpoints.entry(obs.endpoint.clone()).or_default();
        let before = tally.owed_total();
        let path = tally
            .paths
            .entry((obs.vantage.clone(), obs.resolver.clone()))
            .or_default();
        if obs.confirmation {
            path.confirmations += 1;
            path.burst_size = path.burst_size.max(obs.burst_size);
        } else {
            *held.regular.entry(obs.vantage.clone()).or_default() += 1;
            let (status, burst) = path.regular.get_or_insert((obs.status, obs.burst_size));
            *status = (*status).max(obs.status);
            *burst = (*burst).max(obs.burst_size);
            if obs.peers_asked
                && obs.status != Status::Healthy
                && !tally.askers.contains(&obs.vantage)
            {
                tally.askers.push(obs.vantage.clone());
            }
        }
        if obs.confirmation && held.confirmed_at.is_none() {
            let (bad, all) = tally.votes.entry(obs.vantage.clone()).or_default();
            *all += 1;
            if obs.status != Status::Healthy {
                *bad += 1;
            }
            // A vantage confirms a failure with two failed re-probes out of
            // at most three; the decision cannot change once a strict
            // majority of the vantages expected in this round did.
            let confirming = tally
                .votes
                .values()
                .filter(|(bad, all)| *bad >= CONFIRMING && *bad * 2 > *all)
                .count();
            if electorate.is_some_and(|n| confirming * 2 > n) {
                held.confirmed_at = Some(now);
            }
        }
        let after = tally.owed_total();
        // `before` is part of `held.owed`.
        held.owed = (held.owed + after).saturating_sub(before);
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

    /// Nothing more is on its way: every vantage expected in the round
    /// sent all its scheduled lookups (as many as its events say it makes a
    /// round), and every re-probe those lookups called for arrived. The
    /// first round of a region the book sees may have begun before it did:
    /// it is never complete by count.
    fn complete(&self, region: &str, round: u64, r: &Held<T>) -> bool {
        if r.owed > 0 || self.first.get(region).is_none_or(|f| round <= *f) {
            return false;
        }
        let Some(vantages) = self.vantages.get(region) else {
            return false;
        };
        let mut expected = vantages
            .iter()
            .filter(|(_, v)| v.expected_in(round))
            .peekable();
        expected.peek().is_some()
            && expected.all(|(name, v)| {
                v.lookups > 0 && r.regular.get(name).copied().unwrap_or(0) >= v.lookups
            })
    }

    /// When round `round` of `region` is due, and why, if it ever is
    /// without more events (the earliest deadline; `Complete` at its first
    /// event when it is complete now).
    fn due(&self, region: &str, round: u64, r: &Held<T>) -> (Instant, DecidedBy) {
        if self.complete(region, round, r) {
            return (r.first_seen, DecidedBy::Complete);
        }
        let mut due = (r.first_seen + self.timing.round_timeout, DecidedBy::Timeout);
        if let Some(at) = r.confirmed_at {
            let wait = (at + self.timing.confirmed_wait, DecidedBy::ConfirmedWait);
            if wait.0 < due.0 {
                due = wait;
            }
        }
        if let Some(since) = self.next_round_since(region, round) {
            let settled = (since + self.timing.settle, DecidedBy::Settled);
            if settled.0 < due.0 {
                due = settled;
            }
        }
        due
    }

    /// When the next round completes (for the caller's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.rounds
            .iter()
            .map(|((region, round), r)| self.due(region, *round, r).0)
            .min()
    }

    /// Every round complete at `now`, oldest first per region (a round is
    /// only handed out after every earlier round of its region, so a late
    /// event is always recognized as late).
    pub fn take_due(&mut self, now: Instant) -> Vec<Round<T>> {
        let due: Vec<((String, u64), DecidedBy)> = self
            .rounds
            .iter()
            .filter_map(|((region, round), r)| {
                let (at, why) = self.due(region, *round, r);
                (at <= now).then(|| ((region.clone(), *round), why))
            })
            .collect();
        let mut out = Vec::new();
        for (key, why) in due {
            let earlier: Vec<(String, u64)> = self
                .rounds
                .range((key.0.clone(), 0)..=(key.0.clone(), key.1))
                .map(|(k, _)| k.clone())
                .collect();
            for k in earlier {
                let why = if k == key { why } else { DecidedBy::Overtaken };
                if let Some(r) = self.rounds.remove(&k) {
                    out.push(self.hand_out(k, r, why));
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
            .map(|(k, r)| self.hand_out(k, r, DecidedBy::Timeout))
            .collect()
    }

    fn hand_out(
        &mut self,
        (region, round): (String, u64),
        held: Held<T>,
        why: DecidedBy,
    ) -> Round<T> {
        let done = self.done.entry(region.clone()).or_insert(round);
        *done = (*done).max(round);
        if why.by_deadline() {
            let regular: u32 = held.regular.values().sum();
            tracing::debug!(%region, round, decided_by = why.as_str(), owed = held.owed, regular, "round decided on a deadline");
        }
        Round {
            region,
            round,
            events: held.events,
            acks: held.acks,
            decided_by: why,
        }
    }
}

#[cfg(test)]
mod tests {
    use rg_proto::domain::LookupError;

    use super::*;

    const DDB: &str = "dynamodb.us-east-1.amazonaws.com";
    const ELB: &str = "elasticloadbalancing.us-east-1.amazonaws.com";

    fn obs(region: &str, vantage: &str, round: u64, status: Status) -> Observation {
        let o = Observation::example(&format!("dynamodb.{region}.amazonaws.com"))
            .with_vantage(vantage)
            .with_round(round);
        if status == Status::Critical {
            o.with_error(LookupError::EmptyAnswer)
        } else {
            o.with_status(status)
        }
    }

    fn book(settle: Duration) -> RoundBook<u32> {
        RoundBook::new(RoundTiming {
            settle,
            round_timeout: Duration::from_secs(60),
            confirmed_wait: Duration::from_secs(5),
        })
    }

    /// Round 1 of us-east-1, healthy and decided in full by `vantages`
    /// (one lookup each of every endpoint of `endpoints`): the book then
    /// knows the round's size and electorate.
    fn decided_round_one(
        book: &mut RoundBook<u32>,
        vantages: &[&str],
        endpoints: &[&str],
        t0: Instant,
    ) {
        for v in vantages {
            for e in endpoints {
                let o = Observation::example(e)
                    .with_vantage(v)
                    .with_round_lookups(endpoints.len() as u32)
                    .confirming(3, false);
                book.add(o, 0, t0);
            }
        }
        let decided = book.take_due(t0 + Duration::from_secs(60));
        assert_eq!(decided.len(), 1);
        assert_eq!(decided[0].decided_by, DecidedBy::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_completes_once_the_next_has_settled_and_stragglers_are_late() {
        let mut book = book(Duration::from_millis(100));
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
            (r.region.as_str(), r.round, r.acks.clone(), r.decided_by),
            ("us-east-1", 5, vec![1, 2, 3], DecidedBy::Settled)
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
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        let mut decided = Vec::new();
        for i in 0..6u64 {
            let t = t0 + Duration::from_secs(i);
            // A warning whose re-probes never come: each round waits to
            // settle.
            let o = obs("us-east-1", "a", 100 + i, Status::Warning).confirming(3, false);
            book.add(o, i as u32, t);
            decided.extend(book.take_due(t).into_iter().map(|r| r.round));
        }
        // Round 100 is due 2 s after round 101 began (t0 + 3 s), and so on.
        assert_eq!(decided, [100, 101, 102]);
        assert_eq!(book.next_due(), Some(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn a_vantage_votes_what_its_confirmation_burst_saw() {
        let lost = Observation::example(DDB).with_error(LookupError::Timeout);
        let confirm = |status| {
            Observation::example(DDB)
                .with_status(status)
                .as_confirmation(3)
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
        let ok = Observation::example(DDB);
        assert_eq!(vantage_votes(&[&ok, &lost])["a"], Status::Critical);
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_healthy_round_is_decided_at_once_and_one_with_a_failure_waits_for_its_re_probes(
    ) {
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        decided_round_one(&mut book, &["a", "b"], &[DDB], t0);
        let t1 = t0 + Duration::from_secs(70);
        let at = |v: &str| {
            Observation::example(DDB)
                .with_vantage(v)
                .with_round(2)
                .confirming(3, false)
        };
        book.add(at("a"), 1, t1);
        assert!(book.take_due(t1).is_empty(), "1 of its 2 lookups");
        book.add(at("b"), 2, t1);
        assert_eq!(book.next_due(), Some(t1));
        let now = book.take_due(t1);
        assert_eq!(now.len(), 1, "complete and healthy: decided at once");
        assert_eq!(now[0].decided_by, DecidedBy::Complete);
        // A complete round with a failure waits for the re-probes it calls
        // for: b's own burst, and a's (b asked the others).
        let t2 = t1 + Duration::from_secs(10);
        let at = |v: &str| Observation::example(DDB).with_vantage(v).with_round(3);
        book.add(at("a").confirming(3, false), 3, t2);
        book.add(
            at("b")
                .with_error(LookupError::Servfail)
                .confirming(3, true),
            4,
            t2,
        );
        assert!(book.take_due(t2).is_empty());
        for k in 0..3 {
            book.add(
                at("b").with_error(LookupError::Servfail).as_confirmation(3),
                5 + k,
                t2,
            );
        }
        assert!(book.take_due(t2).is_empty(), "a's burst is still to come");
        for k in 0..3 {
            assert!(book.take_due(t2).is_empty());
            book.add(at("a").as_confirmation(3), 8 + k, t2);
        }
        let decided = book.take_due(t2);
        assert_eq!(decided.len(), 1);
        assert_eq!(
            (decided[0].decided_by, decided[0].events.len()),
            (DecidedBy::Complete, 8)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_failure_does_not_cut_off_a_slow_one() {
        // ELB fails at once at both vantages and is confirmed; DynamoDB's
        // lookups time out, and their re-probes with them. The round waits
        // for DynamoDB, and both are judged in it; nothing is late.
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        decided_round_one(&mut book, &["a", "b"], &[DDB, ELB], t0);
        let t = t0 + Duration::from_secs(70);
        let ms = Duration::from_millis;
        let elb = |v: &str| {
            Observation::example(ELB)
                .with_vantage(v)
                .with_round(2)
                .with_round_lookups(2)
                .with_error(LookupError::Servfail)
        };
        let ddb = |v: &str| {
            Observation::example(DDB)
                .with_vantage(v)
                .with_round(2)
                .with_round_lookups(2)
                .with_error(LookupError::Timeout)
                .with_millis(1000)
        };
        let mut ack = 0;
        let mut add = |book: &mut RoundBook<u32>, o: Observation, at: Instant| {
            ack += 1;
            assert!(matches!(book.add(o, ack, at), Added::Held));
        };
        for v in ["a", "b"] {
            add(&mut book, elb(v).confirming(3, true), t + ms(5));
        }
        for k in 0..3 {
            for v in ["a", "b"] {
                add(&mut book, elb(v).as_confirmation(3), t + ms(10 + 100 * k));
            }
        }
        // ELB is confirmed by both vantages: without the wait, this is
        // where the round was decided and DynamoDB's events came late.
        assert!(book.take_due(t + ms(400)).is_empty());
        // Confirmed at 110 ms (two failed re-probes at each vantage).
        assert_eq!(book.next_due(), Some(t + ms(110) + Duration::from_secs(5)));
        for k in 0..3 {
            for v in ["a", "b"] {
                add(&mut book, ddb(v).as_confirmation(3), t + ms(1100 + 100 * k));
            }
            if k == 0 {
                for v in ["a", "b"] {
                    add(&mut book, ddb(v).confirming(3, true), t + ms(1100));
                }
            }
            if k < 2 {
                assert!(book.take_due(t + ms(1100 + 100 * k)).is_empty());
            }
        }
        let decided = book.take_due(t + ms(1300));
        assert_eq!(decided.len(), 1);
        let r = &decided[0];
        assert_eq!((r.decided_by, r.events.len()), (DecidedBy::Complete, 16));
        let agreed: Vec<(&str, Agreement)> = r
            .endpoints(Quorum::Majority)
            .iter()
            .map(|e| (e.endpoint, e.agreement))
            .collect();
        let critical = Agreement::Agreed {
            status: Status::Critical,
            agreeing: 2,
            reporting: 2,
        };
        assert_eq!(agreed, [(DDB, critical), (ELB, critical)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirmed_failure_waits_for_what_is_outstanding_at_most_confirmed_wait() {
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        decided_round_one(&mut book, &["a", "b", "c"], &[DDB], t0);
        let t1 = t0 + Duration::from_secs(70);
        let at = |v: &str| {
            Observation::example(DDB)
                .with_vantage(v)
                .with_round(2)
                .with_error(LookupError::EmptyAnswer)
        };
        // a and b confirm; c's lookup never comes (its prober is stuck).
        for v in ["a", "b"] {
            book.add(at(v).confirming(3, true), 1, t1);
            for _ in 0..2 {
                book.add(at(v).as_confirmation(3), 2, t1);
            }
        }
        assert!(book.take_due(t1 + Duration::from_millis(4999)).is_empty());
        let decided = book.take_due(t1 + Duration::from_secs(5));
        assert_eq!(decided.len(), 1);
        assert_eq!(decided[0].decided_by, DecidedBy::ConfirmedWait);
        // What comes after a deadline is late.
        assert!(matches!(
            book.add(at("c"), 3, t1 + Duration::from_secs(6)),
            Added::Late(3)
        ));
        // c's late lookup shows it is alive: a later round still waits for
        // all three vantages' lookups.
        let t2 = t1 + Duration::from_secs(10);
        for v in ["a", "b"] {
            book.add(
                Observation::example(DDB).with_vantage(v).with_round(3),
                4,
                t2,
            );
        }
        assert!(book.take_due(t2).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_prober_killed_and_restarted_under_the_same_id_is_waited_for_again() {
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        decided_round_one(&mut book, &["a", "b", "c"], &[DDB, ELB], t0);
        let lookup = |endpoint: &str, v: &str, round: u64| {
            Observation::example(endpoint)
                .with_vantage(v)
                .with_round(round)
                .with_round_lookups(2)
                .confirming(3, false)
        };
        let at = |round: u64| t0 + Duration::from_secs(60 + 10 * round);
        // Round 2: c was killed. Its lookups are waited for, until round 3
        // has been arriving for `settle`.
        for v in ["a", "b"] {
            for e in [DDB, ELB] {
                book.add(lookup(e, v, 2), 0, at(2));
            }
        }
        assert!(book.take_due(at(2) + Duration::from_secs(5)).is_empty());
        for v in ["a", "b"] {
            book.add(lookup(ELB, v, 3), 0, at(3));
        }
        let r2 = book.take_due(at(3) + Duration::from_secs(2));
        assert_eq!((r2.len(), r2[0].decided_by), (1, DecidedBy::Settled));
        // Round 3: c is no longer waited for.
        for v in ["a", "b"] {
            book.add(lookup(DDB, v, 3), 0, at(3));
        }
        let r3 = book.take_due(at(3) + Duration::from_secs(2));
        assert_eq!((r3.len(), r3[0].decided_by), (1, DecidedBy::Complete));
        // c restarts under the same id. From its first event on it is
        // expected again: round 4 is not complete without it, and in round
        // 5 a DynamoDB lookup of c's that times out is waited for, not cut
        // off by a's and b's fast answers.
        for v in ["a", "b", "c"] {
            book.add(lookup(ELB, v, 4), 0, at(4));
        }
        for v in ["a", "b"] {
            book.add(lookup(DDB, v, 4), 0, at(4));
        }
        assert!(
            book.take_due(at(4)).is_empty(),
            "c's DynamoDB lookup is outstanding"
        );
        book.add(lookup(DDB, "c", 4), 0, at(4));
        assert_eq!(book.take_due(at(4))[0].decided_by, DecidedBy::Complete);
        for v in ["a", "b", "c"] {
            book.add(lookup(ELB, v, 5), 0, at(5));
        }
        for v in ["a", "b"] {
            book.add(lookup(DDB, v, 5), 0, at(5));
        }
        assert!(book.take_due(at(5) + Duration::from_millis(900)).is_empty());
        let slow = lookup(DDB, "c", 5)
            .with_error(LookupError::Timeout)
            .with_millis(1000);
        assert!(matches!(
            book.add(slow, 9, at(5) + Duration::from_secs(1)),
            Added::Held
        ));
        // Its re-probes follow (it did not ask the others).
        assert!(book.take_due(at(5) + Duration::from_secs(1)).is_empty());
        for _ in 0..3 {
            let again = lookup(DDB, "c", 5)
                .with_error(LookupError::Timeout)
                .as_confirmation(3);
            book.add(again, 10, at(5) + Duration::from_secs(2));
        }
        let r5 = book.take_due(at(5) + Duration::from_secs(2));
        assert_eq!(
            (r5[0].decided_by, r5[0].events.len()),
            (DecidedBy::Complete, 9)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_prober_that_adds_a_resolver_is_waited_for_with_all_its_lookups() {
        let mut book = book(Duration::from_secs(2));
        let t0 = Instant::now();
        decided_round_one(&mut book, &["a"], &[DDB], t0);
        let t = t0 + Duration::from_secs(70);
        // a now asks two resolvers: two lookups a round, the second slow.
        let via = |r: &str| {
            Observation::example(DDB)
                .with_round(2)
                .with_resolver(r)
                .with_round_lookups(2)
        };
        book.add(via("r1"), 0, t);
        assert!(book.take_due(t).is_empty(), "its second lookup is to come");
        book.add(via("r2"), 1, t + Duration::from_millis(300));
        assert_eq!(
            book.take_due(t + Duration::from_millis(300))[0]
                .events
                .len(),
            2
        );
    }

    mod arrival_orders {
        use proptest::prelude::*;

        use super::*;

        /// A round as the probers make it: per endpoint, per vantage, per
        /// resolver a scheduled lookup; a burst for every lookup that was
        /// not healthy and, when that vantage asked the others, a burst
        /// through every resolver of every other vantage.
        fn round_events(
            vantages: usize,
            resolvers: usize,
            statuses: &[Vec<Vec<u8>>],
            burst: u32,
            ask: bool,
        ) -> Vec<Observation> {
            let endpoints = ["dynamodb", "ec2", "elasticloadbalancing", "s3"];
            let mut out = Vec::new();
            for (e, per_vantage) in statuses.iter().enumerate() {
                let name = format!("{}.us-east-1.amazonaws.com", endpoints[e]);
                let status = |v: usize, r: usize| match per_vantage[v][r] % 3 {
                    0 => Status::Healthy,
                    1 => Status::Warning,
                    _ => Status::Critical,
                };
                let askers: Vec<usize> = (0..vantages)
                    .filter(|&v| {
                        burst > 0 && ask && (0..resolvers).any(|r| status(v, r) != Status::Healthy)
                    })
                    .collect();
                for v in 0..vantages {
                    let asked = askers.iter().any(|a| *a != v);
                    for r in 0..resolvers {
                        let s = status(v, r);
                        let base = Observation::example(&name)
                            .with_round_lookups((statuses.len() * resolvers) as u32)
                            .with_vantage(&format!("v{v}"))
                            .with_resolver(&format!("r{r}"))
                            .with_round(2);
                        let base = if s == Status::Critical {
                            base.with_error(LookupError::Timeout)
                        } else {
                            base.with_status(s)
                        };
                        out.push(
                            base.clone()
                                .confirming(burst, s != Status::Healthy && askers.contains(&v)),
                        );
                        if burst > 0 && (s != Status::Healthy || asked) {
                            for _ in 0..burst {
                                out.push(base.clone().as_confirmation(burst));
                            }
                        }
                    }
                }
            }
            out
        }

        /// A round's events in an arrival order: either any order at all,
        /// or grouped as networks delay them (each endpoint's scheduled
        /// lookups at one vantage, and its re-probes there, arrive together,
        /// groups delayed by up to 3 s, so that whole groups come last).
        fn scenario() -> impl Strategy<Value = (Vec<Observation>, Vec<u64>)> {
            (
                1usize..=4,
                1usize..=2,
                1usize..=4,
                prop_oneof![Just(0u32), Just(2), Just(3)],
                any::<bool>(),
            )
                .prop_flat_map(|(vantages, resolvers, endpoints, burst, ask)| {
                    let statuses = proptest::collection::vec(
                        proptest::collection::vec(
                            proptest::collection::vec(0u8..6, resolvers),
                            vantages,
                        ),
                        endpoints,
                    );
                    statuses.prop_flat_map(move |statuses| {
                        let events = round_events(vantages, resolvers, &statuses, burst, ask);
                        let n = events.len();
                        let shuffled = (
                            Just(events.clone()).prop_shuffle(),
                            proptest::collection::vec(0u64..300, n),
                        );
                        let grouped = (
                            proptest::collection::vec(0u64..3000, 64),
                            proptest::collection::vec(0u64..50, n),
                        )
                            .prop_map(move |(delays, jitter)| {
                                let group = |e: &Observation| {
                                    let v: usize = e.vantage[1..].parse().unwrap_or(0);
                                    let ep = ["dynamodb", "ec2", "elasticloadbalancing", "s3"]
                                        .iter()
                                        .position(|s| e.service.as_str() == *s)
                                        .unwrap_or(0);
                                    (ep * 4 + v) * 2 + usize::from(e.confirmation)
                                };
                                let mut timed: Vec<(u64, Observation)> = events
                                    .iter()
                                    .zip(&jitter)
                                    .map(|(e, j)| (delays[group(e)] + j, e.clone()))
                                    .collect();
                                timed.sort_by_key(|(at, _)| *at);
                                let mut last = 0;
                                let gaps = timed
                                    .iter()
                                    .map(|(at, _)| {
                                        let g = at - last;
                                        last = *at;
                                        g
                                    })
                                    .collect();
                                (timed.into_iter().map(|(_, e)| e).collect(), gaps)
                            });
                        prop_oneof![shuffled, grouped]
                    })
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Whatever order a round's events arrive in, the round is
            /// decided when its last event arrives, never before, with all
            /// of them; nothing is late; and every endpoint's agreement is
            /// the one the whole round gives.
            #[test]
            fn a_round_is_decided_with_all_its_events_in_any_arrival_order(
                (events, gaps) in scenario()
            ) {
                let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
                rt.block_on(async move {
                    let mut book: RoundBook<u32> = RoundBook::new(RoundTiming {
                        settle: Duration::from_secs(2),
                        round_timeout: Duration::from_secs(600),
                        confirmed_wait: Duration::from_secs(300),
                    });
                    let t0 = Instant::now();
                    // Round 1: every lookup of the round 2 shape, healthy.
                    for e in events.iter().filter(|e| !e.confirmation) {
                        book.add(e.clone().with_round(1).with_status(Status::Healthy), 0, t0);
                    }
                    prop_assert_eq!(book.take_due(t0 + Duration::from_secs(600)).len(), 1);

                    let mut expected = Round { region: "us-east-1".into(), round: 2, events: events.clone(), acks: Vec::<u32>::new(), decided_by: DecidedBy::Complete };
                    expected.events.sort_by(|a, b| (&a.endpoint, &a.vantage).cmp(&(&b.endpoint, &b.vantage)));
                    let want: Vec<(String, Agreement)> = expected.endpoints(Quorum::Majority).iter().map(|e| (e.endpoint.to_owned(), e.agreement)).collect();

                    let mut now = t0 + Duration::from_secs(700);
                    let last = events.len() - 1;
                    for (i, (e, gap)) in events.into_iter().zip(gaps).enumerate() {
                        now += Duration::from_millis(gap);
                        let added = book.add(e, i as u32, now);
                        prop_assert!(matches!(added, Added::Held), "event {} came late", i);
                        let decided = book.take_due(now);
                        if i < last {
                            prop_assert!(decided.is_empty(), "decided after {} of {} events", i + 1, last + 1);
                        } else {
                            prop_assert_eq!(decided.len(), 1);
                            let r = &decided[0];
                            prop_assert_eq!(r.decided_by, DecidedBy::Complete);
                            prop_assert_eq!(r.events.len(), last + 1);
                            let got: Vec<(String, Agreement)> = r.endpoints(Quorum::Majority).iter().map(|e| (e.endpoint.to_owned(), e.agreement)).collect();
                            prop_assert_eq!(&got, &want);
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }
}
