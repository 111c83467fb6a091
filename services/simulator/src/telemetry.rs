//! The simulator's metrics. Labels: fault, rcode, action.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

/// Queries answered, by fault applied and response code.
pub const QUERIES: &str = "regionguard_simulator_queries_total";
/// Faults active now.
pub const FAULTS_ACTIVE: &str = "regionguard_simulator_faults_active";
/// Fault changes, by action (inject, clear, expire, refused).
pub const FAULT_CHANGES: &str = "regionguard_simulator_fault_changes_total";

/// Registers descriptions.
pub fn describe() {
    describe_counter!(
        QUERIES,
        Unit::Count,
        "DNS queries answered, by fault applied and response code"
    );
    describe_gauge!(FAULTS_ACTIVE, "faults active now");
    describe_counter!(
        FAULT_CHANGES,
        Unit::Count,
        "fault changes, by action (inject, clear, expire, refused)"
    );
}

pub(crate) fn query(fault: &'static str, rcode: &'static str) {
    counter!(QUERIES, "fault" => fault, "rcode" => rcode).increment(1);
}

pub(crate) fn fault_changed(action: &'static str) {
    counter!(FAULT_CHANGES, "action" => action).increment(1);
}

pub(crate) fn faults_active(n: usize) {
    gauge!(FAULTS_ACTIVE).set(n as f64);
}
