//! What every property-based fuzz test of the project shares: bounded case
//! counts that `PROPTEST_CASES` can raise, and a deadline per case.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use proptest::test_runner::Config;

/// `cases` cases, unless `PROPTEST_CASES` asks for another number (e.g.
/// `PROPTEST_CASES=100000 cargo test -p rg-proto fuzz` runs longer), with
/// shrinking capped at 30 s (a hanging case costs its deadline per step).
pub fn config(cases: u32) -> Config {
    let default = Config::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        max_shrink_time: if default.max_shrink_time == 0 {
            30_000
        } else {
            default.max_shrink_time
        },
        ..default
    }
}

/// Runs `f` on a thread of its own and panics when it takes longer than
/// `limit` (a hang fails the case instead of stalling the suite); a panic
/// in `f` is passed on as it is.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        // The receiver is gone only when the deadline has passed already.
        tx.send(f()).ok();
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(RecvTimeoutError::Timeout) => panic!("case still running after {limit:?}"),
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_that_hangs_fails_and_a_panic_is_passed_on() {
        let hang = std::panic::catch_unwind(|| {
            within(Duration::from_millis(20), || {
                std::thread::sleep(Duration::from_millis(200));
            });
        });
        assert!(hang.is_err());
        let panicked =
            std::panic::catch_unwind(|| within(Duration::from_secs(5), || panic!("boom")));
        assert!(panicked.is_err());
        assert_eq!(within(Duration::from_secs(5), || 7), 7);
    }
}
