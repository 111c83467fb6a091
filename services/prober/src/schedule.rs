//! When rounds run. Rounds start on wall-clock multiples of the interval
//! (round id = start in unix ms / interval in ms), so the probers of a
//! region share round ids and consumers can form a quorum per round. The
//! first round runs at once (a new prober reports without waiting up to an
//! interval), numbered by the slot it falls in, unless that slot ends within
//! a timeout: then it waits for the next.
//!
//! A round still running when the next is due makes that next one skip
//! (counted and logged); rounds never pile up. With the timeout shorter than
//! the interval (enforced by config), a round whose lookups time out still
//! ends before the next is due.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::lookup::unix_ms;
use crate::round::Prober;
use crate::telemetry;

/// The slot `now` falls in, and when the next slot starts (unix ms).
pub fn slot(now_unix_ms: i64, interval: Duration) -> (u64, i64) {
    let interval_ms = interval.as_millis().max(1) as i64;
    let now = now_unix_ms.max(0);
    let id = now / interval_ms;
    (id as u64, (id + 1) * interval_ms)
}

/// Runs rounds on schedule until `shutdown`, then waits for the round in
/// hand to finish (its lookups end within the timeout) so that its events
/// reach the buffer.
pub async fn run(prober: Arc<Prober>, shutdown: CancellationToken) {
    let interval = prober.plan().interval;
    let interval_ms = interval.as_millis().max(1) as i64;
    let now = unix_ms();
    let (mut round_id, next_start) = slot(now, interval);
    let timeout_ms = prober.plan().timeout.as_millis() as i64;
    if next_start - now < timeout_ms {
        // Too close to the next slot for a round to end within this one:
        // start with the next, so that the first round cannot overrun.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis((next_start - now) as u64)) => {}
        }
        round_id += 1;
    }
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if current.as_ref().is_some_and(|h| !h.is_finished()) {
            telemetry::round_skipped(round_id, "overrun");
        } else {
            let p = prober.clone();
            current = Some(tokio::spawn(async move {
                p.round(round_id).await;
            }));
        }
        let now = unix_ms();
        let (now_slot, _) = slot(now, interval);
        let mut next_id = round_id + 1;
        if now_slot > next_id {
            // Whole slots went by (the machine was suspended, or the clock
            // jumped ahead): carry on with the current one.
            for missed in next_id..now_slot {
                telemetry::round_skipped(missed, "missed");
            }
            next_id = now_slot;
        }
        // A round already due (we are late by less than an interval) starts
        // at once. If the clock stepped back, never wait more than one
        // interval, and never reuse an id.
        let wait_ms = (next_id as i64 * interval_ms - now).clamp(0, interval_ms) as u64;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
        round_id = next_id;
    }
    if let Some(handle) = current {
        if !handle.is_finished() {
            tracing::info!("finishing the round in progress before stopping");
        }
        if let Err(e) = handle.await {
            tracing::error!(error = %e, "probe round task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_start_on_multiples_of_the_interval() {
        let ten = Duration::from_secs(10);
        assert_eq!(
            slot(1_700_000_000_000, ten),
            (170_000_000, 1_700_000_010_000)
        );
        assert_eq!(
            slot(1_700_000_009_999, ten),
            (170_000_000, 1_700_000_010_000)
        );
        assert_eq!(
            slot(1_700_000_010_000, ten),
            (170_000_001, 1_700_000_020_000)
        );
        // Two probers of a region, started apart, share the round id.
        assert_eq!(
            slot(1_700_000_001_234, ten).0,
            slot(1_700_000_008_765, ten).0
        );
        assert_eq!(slot(5, Duration::ZERO), (5, 6));
    }
}
