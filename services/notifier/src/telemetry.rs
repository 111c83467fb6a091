//! The notifier's metrics. Labels: sink (its configured name), kind.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

use crate::config::SinkKind;

/// Notices a sink took.
pub const DELIVERED: &str = "regionguard_notifier_delivered_total";
/// Attempts that failed and were retried.
pub const RETRIES: &str = "regionguard_notifier_retries_total";
/// Notices a sink never took (published on `<p>.alerts.notify.failed`).
pub const GAVE_UP: &str = "regionguard_notifier_gave_up_total";
/// Notices skipped because the sink took them before a restart.
pub const ALREADY_SENT: &str = "regionguard_notifier_already_sent_total";
/// Notices waiting in a sink's queue.
pub const QUEUED: &str = "regionguard_notifier_queued";

/// Registers descriptions.
pub fn describe() {
    describe_counter!(DELIVERED, Unit::Count, "notices a sink took");
    describe_counter!(RETRIES, Unit::Count, "failed attempts, retried");
    describe_counter!(
        GAVE_UP,
        Unit::Count,
        "notices a sink never took (published on <p>.alerts.notify.failed)"
    );
    describe_counter!(
        ALREADY_SENT,
        Unit::Count,
        "notices not sent again: the sink took them before a restart"
    );
    describe_gauge!(QUEUED, Unit::Count, "notices waiting in a sink's queue");
}

pub(crate) fn delivered(sink: &str, kind: SinkKind, _attempts: u32) {
    counter!(DELIVERED, "sink" => sink.to_owned(), "kind" => kind.as_str()).increment(1);
}

pub(crate) fn failed_attempt(sink: &str, kind: SinkKind) {
    counter!(RETRIES, "sink" => sink.to_owned(), "kind" => kind.as_str()).increment(1);
}

pub(crate) fn gave_up(sink: &str, kind: SinkKind) {
    counter!(GAVE_UP, "sink" => sink.to_owned(), "kind" => kind.as_str()).increment(1);
}

pub(crate) fn already_sent(sink: &str) {
    counter!(ALREADY_SENT, "sink" => sink.to_owned()).increment(1);
}

pub(crate) fn queued(sink: &str, n: usize) {
    gauge!(QUEUED, "sink" => sink.to_owned()).set(n as f64);
}
