//! The failover manager's metrics. Labels: phase, kind (a step's kind as
//! in the plan, e.g. `route53_record`), outcome, region.

use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use rg_proto::v1::{FailoverPhase, StepKind};

/// Phases published (the audit trail), by phase.
pub const PHASES: &str = "regionguard_failover_phases_total";
/// Phases that could not be stored before shutdown (the journal has them).
pub const UNPUBLISHED: &str = "regionguard_failover_phases_unpublished_total";
/// Steps run, by kind and outcome (done, failed, rolled_back, rollback_failed).
pub const STEPS: &str = "regionguard_failover_steps_total";
/// How long a step took, by kind.
pub const STEP_SECONDS: &str = "regionguard_failover_step_duration_seconds";
/// AWS API calls made.
pub const AWS_CALLS: &str = "regionguard_failover_aws_calls_total";
/// Operators' rejections handled, by outcome (`recorded`, `ignored`).
pub const REJECTIONS: &str = "regionguard_failover_rejections_total";
/// Executions that found another failover holding the lock (retried).
pub const LOCK_BUSY: &str = "regionguard_failover_lock_busy_total";
/// A routing switch's answer: 1 take traffic, 0 drain.
pub const SWITCH: &str = "regionguard_failover_switch";
/// Journal writes that failed after retries, by what was not recorded.
pub const JOURNAL_WRITE_FAILURES: &str = "regionguard_failover_journal_write_failures_total";
/// Errors that stopped a plan, a step or a rollback, by kind (`throttled`,
/// `not_found`, `denied`, `aws_other` for AWS calls; `journal`, `plan`,
/// `not_verified`, `dns`, `changed`, ... otherwise).
pub const ERRORS: &str = "regionguard_failover_errors_total";

/// Readiness of each declared region: 1 a failover away from it would
/// work, 0 it would fail.
pub const READY: &str = "regionguard_failover_ready";
/// Readiness problems found by the last check, by region.
pub const READINESS_PROBLEMS: &str = "regionguard_failover_readiness_problems";

/// Health-view re-reads before a decision (the view's reader was not known
/// current), by outcome (`ok`, `failed`).
pub const VIEW_REREADS: &str = "regionguard_failover_view_rereads_total";

/// Registers descriptions.
pub fn describe() {
    describe_counter!(
        VIEW_REREADS,
        Unit::Count,
        "health-view re-reads from the stream before a decision, by outcome"
    );
    describe_counter!(PHASES, Unit::Count, "failover phases published, by phase");
    describe_counter!(
        REJECTIONS,
        Unit::Count,
        "operators' rejections of planned failovers: recorded (it will not run) or ignored (not waiting for an answer)"
    );
    describe_counter!(
        UNPUBLISHED,
        Unit::Count,
        "failover phases not stored before shutdown (the journal keeps the state)"
    );
    describe_counter!(
        STEPS,
        Unit::Count,
        "failover steps run, by kind and outcome"
    );
    describe_histogram!(STEP_SECONDS, Unit::Seconds, "how long a failover step took");
    describe_counter!(AWS_CALLS, Unit::Count, "AWS API calls made");
    describe_counter!(
        LOCK_BUSY,
        Unit::Count,
        "executions that found another failover holding the lock"
    );
    describe_gauge!(SWITCH, "routing switch: 1 take traffic, 0 drain");
    describe_counter!(
        JOURNAL_WRITE_FAILURES,
        Unit::Count,
        "failover journal writes that failed after retries, by what was not recorded"
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "errors that stopped a failover plan, step or rollback, by kind"
    );
    describe_gauge!(
        READY,
        "1 when a failover away from the region would work, 0 when it would fail"
    );
    describe_gauge!(
        READINESS_PROBLEMS,
        "problems the last readiness check found, by region"
    );
}

pub(crate) fn readiness(region: &str, ready: bool, problems: usize) {
    gauge!(READY, "region" => region.to_owned()).set(if ready { 1.0 } else { 0.0 });
    gauge!(READINESS_PROBLEMS, "region" => region.to_owned()).set(problems as f64);
}

/// `what`: the state not recorded, or `started` (the cooldown's and
/// velocity limit's record).
pub(crate) fn journal_write_failed(what: &'static str) {
    counter!(JOURNAL_WRITE_FAILURES, "what" => what).increment(1);
}

pub(crate) fn error(e: &crate::error::FailoverError) {
    counter!(ERRORS, "kind" => e.kind()).increment(1);
}

pub(crate) fn phase(phase: FailoverPhase) {
    counter!(PHASES, "phase" => phase.token()).increment(1);
}

pub(crate) fn rejection(recorded: bool) {
    let outcome = if recorded { "recorded" } else { "ignored" };
    counter!(REJECTIONS, "outcome" => outcome).increment(1);
}

pub(crate) fn unpublished() {
    counter!(UNPUBLISHED).increment(1);
}

pub(crate) fn step(kind: StepKind, outcome: &'static str, took: Duration) {
    let kind = kind
        .as_str_name()
        .trim_start_matches("STEP_KIND_")
        .to_lowercase();
    histogram!(STEP_SECONDS, "kind" => kind.clone()).record(took.as_secs_f64());
    counter!(STEPS, "kind" => kind, "outcome" => outcome).increment(1);
}

pub(crate) fn aws_call() {
    counter!(AWS_CALLS).increment(1);
}

pub(crate) fn lock_busy() {
    counter!(LOCK_BUSY).increment(1);
}

pub(crate) fn switch(region: &str, take_traffic: bool) {
    gauge!(SWITCH, "region" => region.to_owned()).set(if take_traffic { 1.0 } else { 0.0 });
}

/// The health view was re-read before a decision.
pub(crate) fn view_reread(ok: bool) {
    counter!(VIEW_REREADS, "outcome" => if ok { "ok" } else { "failed" }).increment(1);
}
