//! Retrying with a growing delay that stops on shutdown: the one retry
//! loop of every service (publishing, saving state, reconnecting, reading
//! a stream again).
//!
//! ```
//! # async fn demo(shutdown: tokio_util::sync::CancellationToken) {
//! use rg_bus::backoff::Backoff;
//! let mut backoff = Backoff::standard();
//! let mut tries = 0;
//! while tries < 3 {
//!     tries += 1; // try something; on failure:
//!     if !backoff.wait(&shutdown).await {
//!         return; // shutting down
//!     }
//! }
//! # }
//! ```

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The delay before the next try: doubles after each wait, up to a maximum.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles after each wait, never beyond `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// 200 ms doubling up to 5 s: what regionguard's retry loops use
    /// unless a setting says otherwise.
    pub fn standard() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// How long the next [`wait`](Self::wait) sleeps (for the log line
    /// that says a retry is coming).
    pub fn delay(&self) -> Duration {
        self.next
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the current delay, then doubles it. `false` when `shutdown`
    /// came first: the caller stops retrying.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Sleeps the current delay, then doubles it (for loops that are
    /// stopped from outside, e.g. by a `select!`).
    pub async fn sleep(&mut self) {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_maximum_and_resets() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let mut slept = Vec::new();
        for _ in 0..4 {
            let before = tokio::time::Instant::now();
            assert!(b.wait(&shutdown).await);
            slept.push(before.elapsed().as_millis());
        }
        assert_eq!(slept, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_once_on_shutdown() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stop.cancel();
        });
        let before = tokio::time::Instant::now();
        assert!(!b.wait(&shutdown).await);
        assert!(before.elapsed() < Duration::from_secs(1));
    }
}
