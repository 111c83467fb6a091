//! Whether a failover goes ahead: the rules of mode, cooldown, velocity and
//! the lock, as pure functions of what the journal holds and the time.
//! The service reads the journal, asks here, and acts on the answer; the
//! rules are tested here on a clock the tests move.
//!
//! The order a request goes through:
//! 1. [`on_request`]: seen before (a redelivery)? observe mode? a failover
//!    away from the same region started within `cooldown`? Else plan it.
//! 2. [`after_plan`]: in `auto` mode, run it at once unless it is a
//!    failback without `failback_auto`, has an irreversible step without
//!    `allow_irreversible`, or `max_automated_per_hour`
//!    automated failovers started in the last hour; otherwise it waits for
//!    an approval.
//! 3. [`on_approval`]: only a planned failover, only in `approve` or `auto`;
//!    [`on_rejection`]: a planned failover is rejected, and never runs.
//! 4. [`lock`]: one failover at a time across replicas; a lock whose lease
//!    expired is taken over.

use std::time::Duration;

use crate::config::{Config, Mode};
use crate::journal::State;

/// The window of the velocity limit.
pub const VELOCITY_WINDOW: Duration = Duration::from_secs(3600);

/// The settings the rules read.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The service's mode.
    pub mode: Mode,
    /// No second failover away from a region within this.
    pub cooldown: Duration,
    /// Automated failovers allowed per hour; beyond, approval is needed.
    pub max_automated_per_hour: u32,
    /// Whether `auto` mode runs failbacks without approval.
    pub failback_auto: bool,
    /// Whether `auto` mode runs a plan with an irreversible step without
    /// approval.
    pub allow_irreversible: bool,
}

impl From<&Config> for Policy {
    fn from(c: &Config) -> Self {
        Self {
            mode: c.mode,
            cooldown: c.cooldown,
            max_automated_per_hour: c.max_automated_per_hour,
            failback_auto: c.failback_auto,
            allow_irreversible: c.allow_irreversible,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnRequest {
    /// The journal has it: a redelivery, handled before.
    AlreadyHandled,
    /// Observe mode: journal it, plan nothing.
    Observe,
    /// Refused, with the reason published on the failed phase.
    Refuse(String),
    /// Make the plan.
    Plan,
}

/// Decides on a request away from `from_region`. `journaled`: the journal
/// already holds this request; `last_started_ms`: when the last failover
/// away from `from_region` started.
pub fn on_request(
    policy: &Policy,
    now_ms: i64,
    journaled: bool,
    from_region: &str,
    last_started_ms: Option<i64>,
) -> OnRequest {
    if journaled {
        return OnRequest::AlreadyHandled;
    }
    if policy.mode == Mode::Observe {
        return OnRequest::Observe;
    }
    if let Some(at) = last_started_ms {
        let ago = now_ms - at;
        if ago < policy.cooldown.as_millis() as i64 {
            return OnRequest::Refuse(format!(
                "cooldown: a failover from {from_region} started {} s ago (cooldown {:?})",
                ago.max(0) / 1000,
                policy.cooldown
            ));
        }
    }
    OnRequest::Plan
}

/// What to do with a plan just published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPlan {
    /// Run it now (automated).
    Execute,
    /// Wait for an operator's approval, for this reason.
    AwaitApproval(Hold),
}

/// Why a plan waits for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `plan` mode: nothing is ever executed (an approval is ignored too).
    PlanMode,
    /// `approve` mode: every plan waits.
    ApproveMode,
    /// `auto` mode, but failbacks wait (`failback_auto = false`).
    Failback,
    /// `auto` mode, but this many automated failovers started within the
    /// last hour.
    VelocityLimit(u32),
    /// `auto` mode, but the plan has an irreversible step (a database
    /// promotion) and `allow_irreversible = false`.
    Irreversible,
}

/// Decides whether a planned failover runs at once. `irreversible`: the
/// plan has a step that cannot be undone; `automated_starts_ms`: when the
/// automated failovers recorded started.
pub fn after_plan(
    policy: &Policy,
    now_ms: i64,
    failback: bool,
    irreversible: bool,
    automated_starts_ms: &[i64],
) -> AfterPlan {
    match policy.mode {
        Mode::Observe | Mode::Plan => AfterPlan::AwaitApproval(Hold::PlanMode),
        Mode::Approve => AfterPlan::AwaitApproval(Hold::ApproveMode),
        Mode::Auto if failback && !policy.failback_auto => AfterPlan::AwaitApproval(Hold::Failback),
        Mode::Auto if irreversible && !policy.allow_irreversible => {
            AfterPlan::AwaitApproval(Hold::Irreversible)
        }
        Mode::Auto => {
            let recent = automated_within(automated_starts_ms, now_ms);
            if recent >= policy.max_automated_per_hour {
                AfterPlan::AwaitApproval(Hold::VelocityLimit(recent))
            } else {
                AfterPlan::Execute
            }
        }
    }
}

/// How many of `starts_ms` fall in the velocity window before `now_ms`.
pub fn automated_within(starts_ms: &[i64], now_ms: i64) -> u32 {
    let since = now_ms - VELOCITY_WINDOW.as_millis() as i64;
    starts_ms.iter().filter(|t| **t > since).count() as u32
}

/// What to do with an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnApproval {
    /// Execute the planned failover.
    Execute,
    /// Ignore it, for this reason (logged).
    Ignore(String),
}

/// Decides on an approval of a failover whose journal state is `state`
/// (`None`: never planned here).
pub fn on_approval(policy: &Policy, state: Option<State>) -> OnApproval {
    match state {
        None => OnApproval::Ignore("approval of a failover this service never planned".into()),
        Some(State::Planned) => match policy.mode {
            Mode::Approve | Mode::Auto => OnApproval::Execute,
            Mode::Observe | Mode::Plan => OnApproval::Ignore(format!(
                "approved, but this service runs in {} mode: nothing is executed",
                policy.mode.name()
            )),
        },
        Some(other) => OnApproval::Ignore(format!(
            "approval of a failover that is not waiting for one (it is {})",
            other.name()
        )),
    }
}

/// Whether a rejection is recorded: only of a planned failover (one that
/// already runs or ended is past an answer). `Err`: why it is ignored.
pub fn on_rejection(state: Option<State>) -> Result<(), String> {
    match state {
        Some(State::Planned) => Ok(()),
        None => Err("rejection of a failover this service never planned".into()),
        Some(other) => Err(format!(
            "rejection of a failover that is not waiting for an answer (it is {})",
            other.name()
        )),
    }
}

/// The holder of the failover lock, as the journal stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The replica holding it.
    pub holder: String,
    /// The failover it runs.
    pub failover: String,
    /// When its lease runs out.
    pub expires_at_ms: i64,
}

/// Whether a replica may take the lock for a failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Free (or already this failover's, e.g. a replica recovering it):
    /// take it by compare-and-set at this revision (0: create).
    Take(u64),
    /// Its holder stopped renewing: take it over at this revision.
    TakeOver(u64, Holder),
    /// A live holder runs another failover.
    Busy(Holder),
}

/// Decides on the lock for `failover` given what the lock key holds
/// (`None`: nothing; `Some((None, rev))`: an unreadable value).
pub fn lock(held: Option<(Option<Holder>, u64)>, failover: &str, now_ms: i64) -> Lock {
    match held {
        None => Lock::Take(0),
        Some((None, rev)) => Lock::Take(rev),
        Some((Some(h), rev)) if h.expires_at_ms <= now_ms => Lock::TakeOver(rev, h),
        Some((Some(h), _)) if h.failover != failover => Lock::Busy(h),
        Some((Some(_), rev)) => Lock::Take(rev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A clock the tests move by hand.
    struct Clock(i64);
    impl Clock {
        fn advance(&mut self, ms: i64) -> i64 {
            self.0 += ms;
            self.0
        }
    }

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            cooldown: Duration::from_secs(600),
            max_automated_per_hour: 2,
            failback_auto: false,
            allow_irreversible: false,
        }
    }

    #[test]
    fn a_redelivered_request_is_not_handled_twice() {
        let p = policy(Mode::Auto);
        assert_eq!(
            on_request(&p, 0, true, "us-east-1", None),
            OnRequest::AlreadyHandled
        );
        assert_eq!(on_request(&p, 0, false, "us-east-1", None), OnRequest::Plan);
    }

    #[test]
    fn observe_mode_plans_nothing() {
        assert_eq!(
            on_request(&policy(Mode::Observe), 0, false, "us-east-1", None),
            OnRequest::Observe
        );
        for mode in [Mode::Plan, Mode::Approve, Mode::Auto] {
            assert_eq!(
                on_request(&policy(mode), 0, false, "us-east-1", None),
                OnRequest::Plan
            );
        }
    }

    #[test]
    fn the_cooldown_refuses_a_second_failover_from_the_same_region_until_it_passes() {
        let p = policy(Mode::Auto);
        let mut clock = Clock(1_700_000_000_000);
        let started = clock.0;
        let now = clock.advance(3 * MIN);
        match on_request(&p, now, false, "us-east-1", Some(started)) {
            OnRequest::Refuse(why) => {
                assert!(
                    why.starts_with("cooldown: a failover from us-east-1 started 180 s ago"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let now = clock.advance(7 * MIN - 1);
        assert!(matches!(
            on_request(&p, now, false, "us-east-1", Some(started)),
            OnRequest::Refuse(_)
        ));
        let now = clock.advance(1);
        assert_eq!(
            on_request(&p, now, false, "us-east-1", Some(started)),
            OnRequest::Plan
        );
    }

    #[test]
    fn only_auto_mode_executes_without_approval() {
        assert_eq!(
            after_plan(&policy(Mode::Plan), 0, false, false, &[]),
            AfterPlan::AwaitApproval(Hold::PlanMode)
        );
        assert_eq!(
            after_plan(&policy(Mode::Approve), 0, false, false, &[]),
            AfterPlan::AwaitApproval(Hold::ApproveMode)
        );
        assert_eq!(
            after_plan(&policy(Mode::Auto), 0, false, false, &[]),
            AfterPlan::Execute
        );
    }

    #[test]
    fn an_automated_failback_waits_unless_failback_auto() {
        let mut p = policy(Mode::Auto);
        assert_eq!(
            after_plan(&p, 0, true, false, &[]),
            AfterPlan::AwaitApproval(Hold::Failback)
        );
        p.failback_auto = true;
        assert_eq!(after_plan(&p, 0, true, false, &[]), AfterPlan::Execute);
    }

    #[test]
    fn auto_mode_holds_a_plan_with_an_irreversible_step_unless_allowed() {
        let mut p = policy(Mode::Auto);
        assert_eq!(
            after_plan(&p, 0, false, true, &[]),
            AfterPlan::AwaitApproval(Hold::Irreversible)
        );
        p.allow_irreversible = true;
        assert_eq!(after_plan(&p, 0, false, true, &[]), AfterPlan::Execute);
        // Approve mode waits anyway.
        p.mode = Mode::Approve;
        assert_eq!(
            after_plan(&p, 0, false, true, &[]),
            AfterPlan::AwaitApproval(Hold::ApproveMode)
        );
    }

    #[test]
    fn the_velocity_limit_holds_for_an_hour_after_the_limit_is_reached() {
        let p = policy(Mode::Auto);
        let mut clock = Clock(1_700_000_000_000);
        let first = clock.0;
        let second = clock.advance(10 * MIN);
        let now = clock.advance(MIN);
        assert_eq!(
            after_plan(&p, now, false, false, &[first, second]),
            AfterPlan::AwaitApproval(Hold::VelocityLimit(2))
        );
        // The first leaves the window an hour after it started.
        let now = clock.advance(49 * MIN);
        assert_eq!(
            after_plan(&p, now, false, false, &[first, second]),
            AfterPlan::Execute,
            "one automated failover within the hour is below the limit of 2"
        );
        assert_eq!(automated_within(&[first, second], now), 1);
    }

    #[test]
    fn an_approval_runs_only_a_planned_failover_in_approve_or_auto_mode() {
        for mode in [Mode::Approve, Mode::Auto] {
            assert_eq!(
                on_approval(&policy(mode), Some(State::Planned)),
                OnApproval::Execute
            );
        }
        for mode in [Mode::Plan, Mode::Observe] {
            assert!(matches!(
                on_approval(&policy(mode), Some(State::Planned)),
                OnApproval::Ignore(why) if why.contains("mode: nothing is executed")
            ));
        }
        for state in [
            State::Executing,
            State::Completed,
            State::RolledBack,
            State::Failed,
            State::Refused,
            State::FailedBack,
            State::Rejected,
        ] {
            assert!(
                matches!(
                    on_approval(&policy(Mode::Approve), Some(state)),
                    OnApproval::Ignore(_)
                ),
                "{state:?}"
            );
            assert!(
                on_rejection(Some(state))
                    .unwrap_err()
                    .contains(&format!("(it is {})", state.name())),
                "{state:?}"
            );
        }
        assert!(matches!(
            on_approval(&policy(Mode::Approve), None),
            OnApproval::Ignore(_)
        ));
        assert_eq!(on_rejection(Some(State::Planned)), Ok(()));
        assert!(on_rejection(None).is_err());
    }

    #[test]
    fn the_lock_is_taken_when_free_or_expired_and_refused_while_another_holds_it() {
        let mut clock = Clock(1_700_000_000_000);
        let held = |failover: &str, expires| Holder {
            holder: "replica-a".into(),
            failover: failover.into(),
            expires_at_ms: expires,
        };
        let lease_end = clock.0 + 2 * MIN;
        assert_eq!(lock(None, "fo-2", clock.0), Lock::Take(0));
        assert_eq!(
            lock(Some((None, 7)), "fo-2", clock.0),
            Lock::Take(7),
            "an unreadable value"
        );
        assert_eq!(
            lock(Some((Some(held("fo-1", lease_end)), 7)), "fo-2", clock.0),
            Lock::Busy(held("fo-1", lease_end))
        );
        assert_eq!(
            lock(Some((Some(held("fo-2", lease_end)), 7)), "fo-2", clock.0),
            Lock::Take(7),
            "the same failover (a replica recovering it)"
        );
        let now = clock.advance(2 * MIN);
        assert_eq!(
            lock(Some((Some(held("fo-1", lease_end)), 7)), "fo-2", now),
            Lock::TakeOver(7, held("fo-1", lease_end))
        );
    }
}
