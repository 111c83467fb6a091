//! The prober's metrics, and the notable occurrences that both log and
//! count. Labels: region, service, status, error kind; never an endpoint.

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use rg_proto::domain::{LookupError, Region, ServiceName, Status};

/// Lookups made, by region, service, status and error kind.
pub const LOOKUPS: &str = "regionguard_prober_lookups_total";
/// Lookup round-trip time, by region and service.
pub const LOOKUP_DURATION: &str = "regionguard_prober_lookup_duration_seconds";
/// Rounds completed.
pub const ROUNDS: &str = "regionguard_prober_rounds_total";
/// Rounds skipped because the previous one was still running.
pub const ROUNDS_SKIPPED: &str = "regionguard_prober_rounds_skipped_total";
/// Time from a round's start to its last lookup's end.
pub const ROUND_DURATION: &str = "regionguard_prober_round_duration_seconds";
/// Events waiting to be published (buffered while NATS is away).
pub const EVENTS_BUFFERED: &str = "regionguard_prober_events_buffered";
/// Events published and acknowledged by JetStream.
pub const EVENTS_PUBLISHED: &str = "regionguard_prober_events_published_total";
/// Events dropped: buffer full (oldest first), or unpublishable.
pub const EVENTS_DROPPED: &str = "regionguard_prober_events_dropped_total";
/// Datagrams that matched no lookup in flight (late, or not ours).
pub const STRAY_ANSWERS: &str = "regionguard_prober_stray_answers_total";

/// Confirmation bursts run (own failures and peers' requests).
pub const BURSTS: &str = "regionguard_prober_confirmation_bursts_total";
/// Requests to peers dropped (the confirm channel was full or closed).
pub const CONFIRM_DROPPED: &str = "regionguard_prober_confirm_requests_dropped_total";
/// Requests from peers handled.
pub const CONFIRM_FROM_PEERS: &str = "regionguard_prober_confirm_requests_received_total";

/// Lookups whose status the adaptive rule changed from the fixed rule's,
/// by region, service and change (`warned`: fixed said healthy; `cleared`:
/// fixed said warning).
pub const ADAPTIVE_OVERRIDES: &str = "regionguard_prober_adaptive_overrides_total";

/// Registers descriptions (idempotent).
pub fn describe() {
    describe_counter!(
        ADAPTIVE_OVERRIDES,
        Unit::Count,
        "lookups the endpoint's own latency history classified differently from the fixed thresholds"
    );
    describe_counter!(BURSTS, Unit::Count, "confirmation bursts run");
    describe_counter!(
        CONFIRM_DROPPED,
        Unit::Count,
        "confirmation requests to peers dropped (not connected, or too many)"
    );
    describe_counter!(
        CONFIRM_FROM_PEERS,
        Unit::Count,
        "confirmation requests from the region's other vantage points"
    );
    describe_counter!(
        LOOKUPS,
        Unit::Count,
        "DNS lookups by region, service, status and error kind"
    );
    describe_histogram!(LOOKUP_DURATION, Unit::Seconds, "DNS lookup round-trip time");
    describe_counter!(ROUNDS, Unit::Count, "probe rounds completed");
    describe_counter!(
        ROUNDS_SKIPPED,
        Unit::Count,
        "probe rounds skipped: the previous round was still running"
    );
    describe_histogram!(
        ROUND_DURATION,
        Unit::Seconds,
        "time to complete one probe round"
    );
    describe_gauge!(
        EVENTS_BUFFERED,
        Unit::Count,
        "health events waiting for a PubAck"
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        Unit::Count,
        "health events stored by JetStream"
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "health events dropped, by reason"
    );
    describe_counter!(
        STRAY_ANSWERS,
        Unit::Count,
        "DNS datagrams that matched no lookup in flight"
    );
}

/// One lookup done.
pub(crate) fn lookup(
    region: &Region,
    service: &ServiceName,
    status: Status,
    error: Option<LookupError>,
    took: Duration,
) {
    let error = error.map_or("none", LookupError::as_str);
    counter!(
        LOOKUPS,
        "region" => region.to_string(),
        "service" => service.to_string(),
        "status" => status.as_str(),
        "error" => error
    )
    .increment(1);
    histogram!(LOOKUP_DURATION, "region" => region.to_string(), "service" => service.to_string())
        .record(took.as_secs_f64());
}

/// A datagram nobody waited for.
pub(crate) fn stray_answer(reason: &'static str) {
    counter!(STRAY_ANSWERS, "reason" => reason).increment(1);
}

/// A confirmation burst started.
pub(crate) fn burst() {
    counter!(BURSTS).increment(1);
}

/// A request to the peers could not be queued.
pub(crate) fn confirm_request_dropped() {
    counter!(CONFIRM_DROPPED).increment(1);
}

/// A peer asked for confirmation.
pub(crate) fn confirm_from_peer() {
    counter!(CONFIRM_FROM_PEERS).increment(1);
}

/// A round finished.
pub(crate) fn round_done(round_id: u64, lookups: usize, critical: usize, took: Duration) {
    counter!(ROUNDS).increment(1);
    histogram!(ROUND_DURATION).record(took.as_secs_f64());
    tracing::debug!(round_id, lookups, critical, took = ?took, "round done");
}

/// A round was skipped: the one before it still running (`overrun`), or
/// its whole slot gone by (`missed`: suspend, clock jump).
pub(crate) fn round_skipped(round_id: u64, reason: &'static str) {
    counter!(ROUNDS_SKIPPED, "reason" => reason).increment(1);
    match reason {
        "overrun" => tracing::warn!(
            round_id,
            "previous round still running; skipping this round to keep the schedule"
        ),
        _ => tracing::warn!(
            round_id,
            "round slot went by without running (clock jump or suspend)"
        ),
    }
}

/// The buffer's length changed.
pub(crate) fn buffered(len: usize) {
    gauge!(EVENTS_BUFFERED).set(len as f64);
}

/// Events stored by JetStream.
pub(crate) fn published(n: usize) {
    counter!(EVENTS_PUBLISHED).increment(n as u64);
}

/// Events dropped, by reason (`buffer_full`, `unpublishable`,
/// `shutdown`). Counted here; the publisher logs them in summaries so an
/// outage does not log once per event.
pub(crate) fn dropped(n: usize, reason: &'static str) {
    if n > 0 {
        counter!(EVENTS_DROPPED, "reason" => reason).increment(n as u64);
    }
}

/// The adaptive rule classified a lookup `to` where the fixed thresholds
/// said `from`.
pub fn adaptive_override(region: &Region, service: &ServiceName, from: Status, to: Status) {
    let change = if to == Status::Warning {
        "warned"
    } else {
        "cleared"
    };
    tracing::trace!(%region, %service, %from, %to, "adaptive warning rule applied");
    counter!(ADAPTIVE_OVERRIDES, "region" => region.to_string(), "service" => service.to_string(), "change" => change).increment(1);
}
