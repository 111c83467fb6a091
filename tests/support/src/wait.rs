use std::fmt::Debug;
use std::future::Future;
use std::sync::Once;
use std::time::Duration;

use tokio::time::Instant;

/// What [`wait_until`] saw last.
#[derive(Debug)]
pub enum Waited<T> {
    /// The condition holds, with the value it produced.
    Done(T),
    /// Not yet; the state observed, shown if the deadline passes.
    NotYet(String),
}

/// Polls `check` (with backoff from 10 ms to 250 ms) until it returns
/// [`Waited::Done`], or panics after `deadline` with `what` and the last
/// state observed.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Waited<T>>,
    T: Debug,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        match check().await {
            Waited::Done(v) => return v,
            Waited::NotYet(state) => {
                if start.elapsed() >= deadline {
                    panic!("timed out after {deadline:?} waiting for {what}; last state: {state}");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

static LOGGING: Once = Once::new();

/// Installs a test subscriber once; logs show only with `TEST_LOG=1`
/// (filter with `RG_LOG`, default `info`).
pub fn init_logging() {
    LOGGING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let filter = tracing_subscriber::EnvFilter::try_from_env("RG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _already = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
    });
}
