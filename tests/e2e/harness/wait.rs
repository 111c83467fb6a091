//! Waiting on conditions, never on time: decided rounds, a consumer, a
//! plan, a notice; and reading counters.

use super::*;

/// Waits (20 s) for the failover plan on `decisions`.
pub(crate) async fn wait_plan(
    decisions: &mut Feed<rg_proto::v1::FailoverDecision>,
) -> rg_proto::v1::FailoverDecision {
    decisions
        .wait_for("the plan", Duration::from_secs(20), |s, _| {
            s == "rg.decisions.failover.planned"
        })
        .await
        .1
}

/// Waits (20 s) until `receiver` took a notice mentioning `text`.
pub(crate) async fn wait_notice(receiver: &rg_testkit::Receiver, text: &str) {
    rg_testkit::wait_until(
        "a notice at the webhook",
        Duration::from_secs(20),
        || async move {
            let taken = receiver.taken();
            if taken.iter().any(|t| t.body.contains(text)) {
                rg_testkit::Waited::Done(())
            } else {
                rg_testkit::Waited::NotYet(format!("{} notices", taken.len()))
            }
        },
    )
    .await;
}

/// The sum of a counter's samples in Prometheus text, over the label sets
/// that contain every one of `labels` (e.g. `consumer="detector"`).
pub(crate) fn counter(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Rounds of a soak test: `SOAK_ROUNDS`, default 180 (1 s rounds: half an
/// hour at the default 10 s interval). Longer runs are in BENCHMARKS.md.
pub(crate) fn soak_rounds() -> u64 {
    std::env::var("SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

/// Waits until the durable consumer `consumer` of `stream` exists (its
/// service subscribed).
pub(crate) async fn wait_for_consumer(url: &str, stream: &str, consumer: &str) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    rg_testkit::wait_until(
        &format!("consumer {consumer} on {stream}"),
        Duration::from_secs(30),
        || async {
            match js.get_stream(stream).await {
                Ok(s) if s.consumer_info(consumer).await.is_ok() => rg_testkit::Waited::Done(()),
                _ => rg_testkit::Waited::NotYet("no consumer yet".into()),
            }
        },
    )
    .await;
}

/// Waits until `consumer` (a detector's or cascade service's durable
/// consumer of RG_HEALTH) has acknowledged every event of at least `n`
/// rounds of each region it reads: it acks a round's events when it has
/// decided the round, so `n` rounds are decided.
pub(crate) async fn wait_rounds_decided(url: &str, consumer: &str, n: usize) {
    wait_rounds(url, Some(consumer), n).await;
}

/// Waits until RG_HEALTH holds events of at least `n` rounds of each
/// region it has events of.
pub(crate) async fn wait_rounds_stored(url: &str, n: usize) {
    wait_rounds(url, None, n).await;
}

/// Counts the rounds per region of the health events up to `consumer`'s
/// ack floor (or the stream's end) until every region has `n`.
async fn wait_rounds(url: &str, consumer: Option<&str>, n: usize) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let stream = rg_bus::Subjects::new("rg").stream(rg_bus::Stream::Health);
    let what = match consumer {
        Some(c) => format!("{n} rounds decided by {c}"),
        None => format!("{n} rounds stored"),
    };
    let seen = std::sync::Mutex::new((0u64, BTreeMap::<String, BTreeSet<u64>>::new()));
    rg_testkit::wait_until(&what, Duration::from_secs(60), || async {
        let Ok(mut s) = js.get_stream(&stream).await else {
            return rg_testkit::Waited::NotYet("no health stream".into());
        };
        let Ok(info) = s.info().await.cloned() else {
            return rg_testkit::Waited::NotYet("no stream info".into());
        };
        let floor = match consumer {
            Some(c) => match s.consumer_info(c).await {
                Ok(ci) => ci.ack_floor.stream_sequence,
                Err(_) => return rg_testkit::Waited::NotYet(format!("no consumer {c}")),
            },
            None => info.state.last_sequence,
        };
        let (read, mut rounds) = std::mem::take(&mut *seen.lock().unwrap());
        let mut read = read.max(info.state.first_sequence.saturating_sub(1));
        while read < floor {
            read += 1;
            if let Ok(m) = s.get_raw_message(read).await {
                if let Ok(e) = HealthEvent::decode(m.payload.as_ref()) {
                    rounds.entry(e.region).or_default().insert(e.round_id);
                }
            }
        }
        let fewest = rounds.values().map(BTreeSet::len).min().unwrap_or(0);
        let state = format!(
            "up to sequence {floor}, rounds per region: {:?}",
            rounds
                .iter()
                .map(|(r, s)| (r.clone(), s.len()))
                .collect::<Vec<_>>()
        );
        *seen.lock().unwrap() = (read, rounds);
        if fewest >= n {
            rg_testkit::Waited::Done(())
        } else {
            rg_testkit::Waited::NotYet(state)
        }
    })
    .await;
}
