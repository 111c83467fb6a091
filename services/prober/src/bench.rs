//! A load generator over the prober's own code path: lookups made with the
//! same engine, classified, encoded and handed to the same buffer as in a
//! round, back to back (or at a fixed rate) instead of on a schedule. Used
//! by `regionguard bench probe` to measure probes per second, lookup
//! latency, CPU time and memory, side by side with dnsperf.

use std::time::Duration;

use futures::StreamExt;
use rg_proto::domain::{LookupError, Status};
use tokio::time::Instant;

use crate::round::Prober;

/// One lookup as the bench sees it: status, error kind, lookup time.
type Sample = (Status, Option<LookupError>, Duration);

/// How to load the resolver.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// How long to run.
    pub duration: Duration,
    /// Lookups started per second; `None` = as fast as the concurrency
    /// allows.
    pub rate: Option<f64>,
    /// Lookups in flight at once.
    pub concurrency: usize,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Lookups completed.
    pub lookups: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Lookups per second.
    pub probes_per_second: f64,
    /// Lookups that got an answer (any rcode) rather than a timeout or I/O
    /// error.
    pub answered: u64,
    /// Healthy / warning / critical counts.
    pub healthy: u64,
    /// Warning count.
    pub warning: u64,
    /// Critical count.
    pub critical: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Mean lookup time of answered lookups, milliseconds.
    pub mean_latency_ms: f64,
    /// Median, milliseconds.
    pub p50_latency_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_latency_ms: f64,
    /// CPU time (user + system) the process used during the run, seconds.
    pub cpu_s: f64,
    /// CPU time over wall time: 1.0 = one core fully busy.
    pub cpu_cores: f64,
    /// Resident memory at the end, KiB (Linux; 0 elsewhere).
    pub rss_kib: u64,
    /// Peak resident memory, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib: u64,
}

/// Runs lookups over all targets and resolvers, cycling, for
/// `options.duration`.
pub async fn run(prober: &Prober, options: BenchOptions) -> BenchReport {
    let (targets, paths) = prober.shape();
    let pairs = targets * paths;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = started + options.duration;
    let period = options
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    // The n-th lookup: which pair, and (at a fixed rate) when it starts.
    let schedule = futures::stream::unfold(0u64, move |n| async move {
        let at = match period {
            Some(p) => started + p.mul_f64(n as f64),
            None => Instant::now(),
        };
        if at >= deadline {
            return None;
        }
        if period.is_some() {
            tokio::time::sleep_until(at).await;
        }
        Some((n, n + 1))
    });
    let samples: Vec<Sample> = schedule
        .map(|n| {
            let i = (n % pairs as u64) as usize;
            async move { prober.probe_timed(i / paths, i % paths, n).await }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed();
    let cpu = process_cpu_seconds() - cpu_before;
    summarize(&samples, elapsed, cpu)
}

fn summarize(
    samples: &[(Status, Option<LookupError>, Duration)],
    elapsed: Duration,
    cpu_s: f64,
) -> BenchReport {
    let count = |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count() as u64;
    let mut answered: Vec<Duration> = samples
        .iter()
        .filter(|(_, e, _)| !matches!(e, Some(LookupError::Timeout | LookupError::Io)))
        .map(|(_, _, d)| *d)
        .collect();
    answered.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let quantile = |q: f64| {
        if answered.is_empty() {
            0.0
        } else {
            ms(answered[((answered.len() - 1) as f64 * q).round() as usize])
        }
    };
    let mean = if answered.is_empty() {
        0.0
    } else {
        answered.iter().map(|d| ms(*d)).sum::<f64>() / answered.len() as f64
    };
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let (rss_kib, peak_rss_kib) = process_memory_kib();
    BenchReport {
        lookups: samples.len() as u64,
        elapsed_s: secs,
        probes_per_second: samples.len() as f64 / secs,
        answered: answered.len() as u64,
        healthy: count(&|s| s.0 == Status::Healthy),
        warning: count(&|s| s.0 == Status::Warning),
        critical: count(&|s| s.0 == Status::Critical),
        timeouts: count(&|s| s.1 == Some(LookupError::Timeout)),
        mean_latency_ms: mean,
        p50_latency_ms: quantile(0.5),
        p99_latency_ms: quantile(0.99),
        cpu_s,
        cpu_cores: cpu_s / secs,
        rss_kib,
        peak_rss_kib,
    }
}

/// User + system CPU time of this process so far, from /proc/self/stat
/// (clock ticks of 1/100 s, the fixed USER_HZ of Linux's /proc). 0 where
/// there is no /proc.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) in parentheses.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident and peak resident memory in KiB, from /proc/self/status.
pub fn process_memory_kib() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_counts() {
        let ms = Duration::from_millis;
        let samples = vec![
            (Status::Healthy, None, ms(1)),
            (Status::Healthy, None, ms(2)),
            (Status::Warning, None, ms(150)),
            (Status::Critical, Some(LookupError::Timeout), ms(2000)),
        ];
        let r = summarize(&samples, Duration::from_secs(2), 0.5);
        assert_eq!(
            (r.lookups, r.answered, r.healthy, r.warning, r.critical, r.timeouts),
            (4, 3, 2, 1, 1, 1)
        );
        assert_eq!(r.probes_per_second, 2.0);
        assert!((r.mean_latency_ms - 51.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.p50_latency_ms, 2.0);
        assert_eq!(r.cpu_cores, 0.25);
    }

    #[test]
    #[allow(clippy::disallowed_types)]
    fn this_process_has_cpu_time_and_memory() {
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_seconds() > 0.0);
            assert!(process_memory_kib().0 > 0);
        }
    }
}
