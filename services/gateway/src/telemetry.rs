//! The gateway's metrics. Labels: kind, interface, reason.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use crate::hub::ActionError;

/// Snapshots built.
pub const SNAPSHOTS: &str = "regionguard_gateway_snapshots_total";
/// Time to build one snapshot (view to JSON), seconds.
pub const BUILD_SECONDS: &str = "regionguard_gateway_snapshot_build_seconds";
/// Snapshots that could not be stored on the bus (the interfaces still got them).
pub const PUBLISH_FAILURES: &str = "regionguard_gateway_snapshot_publish_failures_total";
/// Endpoints in the latest snapshot, and stale ones left out.
pub const ENDPOINTS: &str = "regionguard_gateway_endpoints";
/// Connected watchers, by interface (websocket, grpc).
pub const WATCHERS: &str = "regionguard_gateway_watchers";
/// Snapshots a slow watcher skipped (it got a newer one instead), by interface.
pub const SKIPPED: &str = "regionguard_gateway_snapshots_skipped_total";
/// Watchers disconnected for being too slow, by interface.
pub const DROPPED: &str = "regionguard_gateway_watchers_dropped_total";
/// Health events taken, and invalid ones skipped, by kind.
pub const EVENTS: &str = "regionguard_gateway_events_total";
/// State-changing calls refused, by reason.
pub const REFUSED: &str = "regionguard_gateway_calls_refused_total";

/// Registers descriptions.
pub fn describe() {
    describe_counter!(SNAPSHOTS, Unit::Count, "dashboard snapshots built");
    describe_histogram!(BUILD_SECONDS, Unit::Seconds, "time to build one snapshot");
    describe_counter!(
        PUBLISH_FAILURES,
        Unit::Count,
        "snapshots not stored on the bus"
    );
    describe_gauge!(
        ENDPOINTS,
        Unit::Count,
        "endpoints in the latest snapshot (state=fresh) and left out as stale (state=stale)"
    );
    describe_gauge!(WATCHERS, Unit::Count, "connected snapshot watchers");
    describe_counter!(SKIPPED, Unit::Count, "snapshots a slow watcher skipped");
    describe_counter!(
        DROPPED,
        Unit::Count,
        "watchers disconnected for being too slow"
    );
    describe_counter!(
        EVENTS,
        Unit::Count,
        "messages taken from the streams, by kind"
    );
    describe_counter!(REFUSED, Unit::Count, "state-changing calls refused");
}

pub(crate) fn snapshot(seconds: f64, fresh: u32, stale: u32) {
    counter!(SNAPSHOTS).increment(1);
    histogram!(BUILD_SECONDS).record(seconds);
    gauge!(ENDPOINTS, "state" => "fresh").set(f64::from(fresh));
    gauge!(ENDPOINTS, "state" => "stale").set(f64::from(stale));
}

pub(crate) fn publish_failed(error: &str) {
    counter!(PUBLISH_FAILURES).increment(1);
    tracing::warn!(%error, "snapshot not stored on the bus; clients still got it");
}

pub(crate) fn event(kind: &'static str) {
    counter!(EVENTS, "kind" => kind).increment(1);
}

pub(crate) fn invalid_event(error: &str) {
    counter!(EVENTS, "kind" => "invalid_health").increment(1);
    tracing::debug!(%error, "invalid health event skipped");
}

/// A watcher connected; the guard counts it down when dropped.
pub(crate) struct Watcher(&'static str);

impl Watcher {
    pub(crate) fn connected(interface: &'static str) -> Self {
        gauge!(WATCHERS, "interface" => interface).increment(1.0);
        Self(interface)
    }

    pub(crate) fn skipped(&self, n: u64) {
        counter!(SKIPPED, "interface" => self.0).increment(n);
    }

    pub(crate) fn dropped(&self, why: &str) {
        counter!(DROPPED, "interface" => self.0).increment(1);
        tracing::info!(interface = self.0, %why, "slow watcher disconnected");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        gauge!(WATCHERS, "interface" => self.0).decrement(1.0);
    }
}

pub(crate) fn refused(e: &ActionError) {
    let reason = match e {
        ActionError::Unauthenticated => "unauthenticated",
        ActionError::Disabled => "read_only",
        _ => "other",
    };
    counter!(REFUSED, "reason" => reason).increment(1);
    tracing::warn!(%reason, "state-changing call refused");
}
