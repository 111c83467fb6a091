//! `regionguard bench pipeline`: what the running system does with a fault,
//! end to end, measured from outside it.
//!
//! Against a system started with `regionguard up` (or compose), it injects
//! the same fault into the simulator again and again, each time at a random
//! moment within the probe interval, and times, from the injection and from
//! the first failed lookup, the first critical health event on the bus, the
//! threshold alert, the cascade alert and the failover request; it clears
//! the fault and waits for the alerts to resolve before the next one.
//! Then it reads every health event stored during the run back from the
//! stream and counts, per vantage point, the sequence numbers that never
//! arrived (lost) or arrived twice; reads each service's CPU time and peak
//! memory from /proc (the children of `--up-pid`); and, in the same run,
//! publishes and consumes messages of the health events' size through
//! JetStream with nothing else in the way, so the pipeline's cost is a
//! ratio. `scripts/bench_pipeline.sh` runs it all.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use futures::StreamExt;
use prost::Message;
use rg_proto::v1::{
    fault_request::Action, Alert, AlertSource, AlertState, FailoverDecision, FaultRequest,
    FaultSpec, HealthEvent, Severity, Status,
};
use serde::Serialize;
use tokio::time::Instant;

use super::Globals;

#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// Faults to inject, one after the other.
    #[arg(long, default_value_t = 30, value_name = "N")]
    injections: u32,
    /// Region of the fault.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Service of the fault.
    #[arg(long, default_value = "dynamodb")]
    service: String,
    /// Fault kind (empty-answer, nxdomain, servfail, refused, timeout).
    #[arg(long, default_value = "empty-answer")]
    kind: String,
    /// How long to wait for each stage (and for recovery) before counting
    /// it as missed.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    stage_timeout: std::time::Duration,
    /// The `regionguard up` whose children (the services) to measure: CPU
    /// time and peak memory from /proc.
    #[arg(long, value_name = "PID")]
    up_pid: Option<u32>,
    /// Messages for the raw JetStream peer (0 leaves it out).
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    raw_messages: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// When each stage of one injection was seen, ms after the injection.
#[derive(Debug, Clone, Default, Serialize)]
struct Injection {
    /// The first failed lookup was sent (its `observed_at`).
    failed_lookup_ms: Option<f64>,
    /// The first critical health event of the faulty service arrived.
    critical_event_ms: Option<f64>,
    /// The threshold alert arrived.
    threshold_alert_ms: Option<f64>,
    /// The cascade alert (critical) arrived.
    cascade_alert_ms: Option<f64>,
    /// The failover request arrived.
    failover_request_ms: Option<f64>,
    /// Every alert about it had resolved after the fault was cleared.
    recovered: bool,
}

/// Percentiles of one stage.
#[derive(Debug, Clone, Serialize)]
struct Stage {
    name: &'static str,
    seen: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The same, from the first failed lookup instead of the injection.
    after_lookup_p50_ms: f64,
    after_lookup_p95_ms: f64,
    after_lookup_p99_ms: f64,
}

/// Health events read back from the stream.
#[derive(Debug, Clone, Default, Serialize)]
struct Loss {
    events: u64,
    vantages: usize,
    lost: u64,
    duplicates: u64,
    mean_event_bytes: f64,
    events_per_second: f64,
}

/// One service process.
#[derive(Debug, Clone, Serialize)]
struct ProcessCost {
    pid: u32,
    name: String,
    cpu_seconds: f64,
    cpu_share: f64,
    peak_rss_mib: f64,
}

/// The raw JetStream peer.
#[derive(Debug, Clone, Default, Serialize)]
struct Raw {
    messages: u64,
    bytes: usize,
    publish_per_second: f64,
    consume_per_second: f64,
    client_cpu_seconds: f64,
    server_cpu_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    interval_ms: u64,
    injections: Vec<Injection>,
    stages: Vec<Stage>,
    loss: Loss,
    processes: Vec<ProcessCost>,
    measured_seconds: f64,
    raw: Option<Raw>,
}

pub(crate) async fn run(globals: Globals, args: PipelineArgs) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let kind = match rg_simulator::faults::parse_fault_kind(&args.kind) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("Error: --kind: {e}");
            return ExitCode::from(2);
        }
    };
    match measure(&config, &args, kind).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                print_report(&report, &args);
            }
            let missed = report
                .injections
                .iter()
                .any(|i| i.critical_event_ms.is_none() || !i.recovered);
            if report.loss.lost > 0 || missed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the subscriptions saw, as it arrived.
enum Seen {
    Health(HealthEvent),
    Alert(Alert),
    Request(FailoverDecision),
}

async fn measure(
    config: &super::Config,
    args: &PipelineArgs,
    kind: rg_proto::v1::FaultKind,
) -> anyhow::Result<Report> {
    use anyhow::Context as _;
    let nats = &config.nats;
    let subjects = nats.subjects();
    let interval = config.prober.interval;
    let client = rg_bus::connect::connect_once(nats, "regionguard-bench-pipeline")
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(client.clone());
    let started_at = SystemTime::now();
    let started = Instant::now();
    let cpu_before = args.up_pid.map(children_cpu).unwrap_or_default();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Seen)>();
    for (subject, which) in [
        (subjects.health(&args.region, &args.service), 0u8),
        (subjects.alerts_all(), 1),
        (subjects.failover("requested"), 2),
    ] {
        let mut sub = client.subscribe(subject).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                let seen = match which {
                    0 => HealthEvent::decode(m.payload.as_ref())
                        .ok()
                        .map(Seen::Health),
                    1 => Alert::decode(m.payload.as_ref()).ok().map(Seen::Alert),
                    _ => FailoverDecision::decode(m.payload.as_ref())
                        .ok()
                        .map(Seen::Request),
                };
                if let Some(seen) = seen {
                    if tx.send((at, seen)).is_err() {
                        return;
                    }
                }
            }
        });
    }
    client.flush().await?;

    let mut injections = Vec::new();
    for n in 0..args.injections {
        // A random moment within the interval, so that injections fall
        // anywhere relative to the rounds.
        let phase = interval.mul_f64(rand_unit());
        wait_quiet(&mut rx, phase).await;
        let spec = FaultSpec {
            region: args.region.clone(),
            service: args.service.clone(),
            kind: kind as i32,
            ..Default::default()
        };
        let injected = Instant::now();
        let injected_unix_ms = rg_bus::unix_now_ms();
        let reply = fault(nats, &subjects, Action::Inject(spec)).await?;
        let id = reply
            .changed
            .first()
            .map(|f| f.id.clone())
            .context("the simulator injected nothing")?;
        let mut one = Injection::default();
        let mut open_alerts: HashMap<String, ()> = HashMap::new();
        let ms = |at: Instant| (at - injected).as_secs_f64() * 1000.0;
        let deadline = injected + args.stage_timeout;
        while one.failover_request_ms.is_none()
            || one.cascade_alert_ms.is_none()
            || one.threshold_alert_ms.is_none()
        {
            let Ok(Some((at, seen))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            match seen {
                Seen::Health(e)
                    if one.critical_event_ms.is_none()
                        && e.status() == Status::Critical
                        && e.observed_at_unix_ms >= injected_unix_ms =>
                {
                    one.critical_event_ms = Some(ms(at));
                    one.failed_lookup_ms = Some((e.observed_at_unix_ms - injected_unix_ms) as f64);
                }
                Seen::Alert(a) if a.region == args.region && a.state() == AlertState::Firing => {
                    open_alerts.insert(a.id.clone(), ());
                    match a.source() {
                        AlertSource::Threshold
                            if a.service == args.service && one.threshold_alert_ms.is_none() =>
                        {
                            one.threshold_alert_ms = Some(ms(at));
                        }
                        AlertSource::Cascade
                            if a.severity() == Severity::Critical
                                && one.cascade_alert_ms.is_none() =>
                        {
                            one.cascade_alert_ms = Some(ms(at));
                        }
                        _ => {}
                    }
                }
                Seen::Alert(a) if a.state() == AlertState::Resolved => {
                    open_alerts.remove(&a.id);
                }
                Seen::Request(d) if d.from_region == args.region => {
                    one.failover_request_ms.get_or_insert(ms(at));
                }
                _ => {}
            }
        }
        fault(
            nats,
            &subjects,
            Action::Clear(FaultSpec {
                id,
                ..Default::default()
            }),
        )
        .await?;
        // Recovered when every alert it raised has resolved.
        let deadline = Instant::now() + args.stage_timeout;
        while !open_alerts.is_empty() {
            let Ok(Some((_, seen))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            match seen {
                // A region recovering steps down through severities, each
                // its own alert.
                Seen::Alert(a) if a.region == args.region && a.state() == AlertState::Firing => {
                    open_alerts.insert(a.id.clone(), ());
                }
                Seen::Alert(a) if a.state() == AlertState::Resolved => {
                    open_alerts.remove(&a.id);
                }
                _ => {}
            }
        }
        one.recovered = open_alerts.is_empty();
        eprintln!(
            "bench pipeline: injection {}/{}: critical event {}, threshold alert {}, cascade alert {}, request {}{}",
            n + 1,
            args.injections,
            show(one.critical_event_ms),
            show(one.threshold_alert_ms),
            show(one.cascade_alert_ms),
            show(one.failover_request_ms),
            if one.recovered { "" } else { " (not recovered)" }
        );
        injections.push(one);
    }
    let measured = started.elapsed();
    let cpu_after = args.up_pid.map(children_cpu).unwrap_or_default();
    let processes = costs(&cpu_before, &cpu_after, measured);

    eprintln!("bench pipeline: reading the run's health events back from the stream");
    let loss = read_back(&js, &subjects, started_at, measured).await?;
    let raw = if args.raw_messages > 0 {
        let size = loss.mean_event_bytes.round().max(1.0) as usize;
        eprintln!(
            "bench pipeline: raw JetStream, {} messages of {size} bytes",
            args.raw_messages
        );
        let server = args.up_pid.and_then(find_nats_server);
        Some(raw_peer(&js, &client, nats, args.raw_messages, size, server).await?)
    } else {
        None
    };
    Ok(Report {
        interval_ms: interval.as_millis() as u64,
        stages: stages(&injections),
        injections,
        loss,
        processes,
        measured_seconds: measured.as_secs_f64(),
        raw,
    })
}

/// Waits `phase`, draining what arrives meanwhile.
async fn wait_quiet(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, Seen)>,
    phase: Duration,
) {
    let end = Instant::now() + phase;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, rx.recv()).await {}
}

async fn fault(
    nats: &rg_bus::NatsConfig,
    subjects: &rg_bus::Subjects,
    action: Action,
) -> anyhow::Result<rg_proto::v1::FaultReply> {
    let reply = super::fault::send(
        nats,
        &subjects.sim_faults(),
        &FaultRequest {
            action: Some(action),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    if !reply.error.is_empty() {
        anyhow::bail!("the simulator refused: {}", reply.error);
    }
    Ok(reply)
}

fn show(ms: Option<f64>) -> String {
    ms.map_or("missed".into(), |v| format!("{v:.0} ms"))
}

fn rand_unit() -> f64 {
    // Nanoseconds of the clock are random enough to spread the phases.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn stages(injections: &[Injection]) -> Vec<Stage> {
    type Pick = fn(&Injection) -> Option<f64>;
    let pick: [(&'static str, Pick); 4] = [
        ("critical health event", |i| i.critical_event_ms),
        ("threshold alert", |i| i.threshold_alert_ms),
        ("cascade alert", |i| i.cascade_alert_ms),
        ("failover request", |i| i.failover_request_ms),
    ];
    pick.iter()
        .map(|(name, f)| {
            let mut v: Vec<f64> = injections.iter().filter_map(f).collect();
            v.sort_by(f64::total_cmp);
            let mut after: Vec<f64> = injections
                .iter()
                .filter_map(|i| Some(f(i)? - i.failed_lookup_ms?))
                .collect();
            after.sort_by(f64::total_cmp);
            Stage {
                name,
                seen: v.len(),
                p50_ms: percentile(&v, 0.50),
                p95_ms: percentile(&v, 0.95),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied().unwrap_or(f64::NAN),
                after_lookup_p50_ms: percentile(&after, 0.50),
                after_lookup_p95_ms: percentile(&after, 0.95),
                after_lookup_p99_ms: percentile(&after, 0.99),
            }
        })
        .collect()
}

/// Reads RG_HEALTH from `since` to its end and counts, per vantage, the
/// sequence numbers missing between the first and last seen, and those
/// seen twice.
async fn read_back(
    js: &async_nats::jetstream::Context,
    subjects: &rg_bus::Subjects,
    since: SystemTime,
    measured: Duration,
) -> anyhow::Result<Loss> {
    let stop = tokio_util::sync::CancellationToken::new();
    let mut rx = rg_bus::tail::spawn::<HealthEvent>(
        js.clone(),
        subjects.stream(rg_bus::Stream::Health),
        subjects.health_all(),
        rg_bus::tail::From::Time(since),
        "bench",
        stop.clone(),
    );
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    let mut bytes = 0u64;
    let mut events = 0u64;
    while let Some(event) = rx.recv().await {
        match event {
            rg_bus::tail::Event::Message(m) if m.history => {
                events += 1;
                bytes += m.message.encoded_len() as u64;
                seqs.entry(m.message.vantage.clone())
                    .or_default()
                    .push(m.message.sequence);
            }
            rg_bus::tail::Event::Message(_) => {}
            rg_bus::tail::Event::CaughtUp => break,
        }
    }
    stop.cancel();
    let (mut lost, mut duplicates) = (0u64, 0u64);
    for v in seqs.values_mut() {
        v.sort_unstable();
        let before = v.len() as u64;
        v.dedup();
        duplicates += before - v.len() as u64;
        if let (Some(first), Some(last)) = (v.first(), v.last()) {
            lost += (last - first + 1) - v.len() as u64;
        }
    }
    Ok(Loss {
        events,
        vantages: seqs.len(),
        lost,
        duplicates,
        mean_event_bytes: if events > 0 {
            bytes as f64 / events as f64
        } else {
            0.0
        },
        events_per_second: events as f64 / measured.as_secs_f64().max(1e-9),
    })
}

// === /proc ===

/// Ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// (name, utime + stime in seconds, peak RSS in KiB) of a process.
fn proc_info(pid: u32) -> Option<(String, f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some((describe(&args), (utime + stime) / TICKS, hwm))
}

/// A short name: the regionguard subcommand (with a prober's region), or
/// the program's name.
fn describe(args: &[String]) -> String {
    const SERVICES: [&str; 8] = [
        "prober",
        "simulator",
        "detector",
        "cascade",
        "gateway",
        "failover",
        "notifier",
        "supervise",
    ];
    let program = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("?");
    let Some(sub) = args
        .get(1)
        .map(String::as_str)
        .filter(|s| SERVICES.contains(s))
    else {
        return program.to_owned();
    };
    match args.iter().position(|a| a == "--region") {
        Some(i) if sub == "prober" => {
            format!("prober {}", args.get(i + 1).map_or("?", String::as_str))
        }
        _ => sub.to_owned(),
    }
}

/// Every descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..)?.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

fn children_cpu(root: u32) -> BTreeMap<u32, (String, f64, u64)> {
    descendants(root)
        .into_iter()
        .filter_map(|pid| Some((pid, proc_info(pid)?)))
        .filter(|(_, (name, _, _))| name != "supervise")
        .collect()
}

fn find_nats_server(root: u32) -> Option<u32> {
    children_cpu(root)
        .into_iter()
        .find(|(_, (name, _, _))| name == "nats-server")
        .map(|(pid, _)| pid)
}

fn costs(
    before: &BTreeMap<u32, (String, f64, u64)>,
    after: &BTreeMap<u32, (String, f64, u64)>,
    measured: Duration,
) -> Vec<ProcessCost> {
    after
        .iter()
        .map(|(pid, (name, cpu, hwm))| {
            let start = before.get(pid).map_or(0.0, |b| b.1);
            ProcessCost {
                pid: *pid,
                name: name.clone(),
                cpu_seconds: cpu - start,
                cpu_share: (cpu - start) / measured.as_secs_f64().max(1e-9),
                peak_rss_mib: *hwm as f64 / 1024.0,
            }
        })
        .collect()
}

// === raw JetStream ===

/// Publishes `n` messages of `size` bytes into a stream of their own (file
/// storage, like RG_HEALTH), in batches of 512 awaited PubAcks with message
/// ids (as the prober does), then consumes them with a durable pull
/// consumer acking each (as the services do).
async fn raw_peer(
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
    nats: &rg_bus::NatsConfig,
    n: u64,
    size: usize,
    server_pid: Option<u32>,
) -> anyhow::Result<Raw> {
    use async_nats::jetstream::{consumer, stream};
    let name = format!("{}_BENCH_RAW", nats.prefix.to_uppercase());
    let subject = format!("{}.bench.raw", nats.prefix);
    let _ignored = js.delete_stream(&name).await;
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("creating the raw stream: {e}"))?;
    let payload = bytes::Bytes::from(vec![0x5au8; size]);
    let own_before = proc_info(std::process::id()).map_or(0.0, |p| p.1);
    let server_before = server_pid.and_then(proc_info).map(|p| p.1);

    let started = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let batch = (n - sent).min(512);
        let mut acks = Vec::with_capacity(batch as usize);
        for k in 0..batch {
            let publish = async_nats::jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(format!("raw:{}", sent + k));
            acks.push(
                js.send_publish(subject.clone(), publish)
                    .await
                    .map_err(|e| anyhow::anyhow!("raw publish: {e}"))?,
            );
        }
        for ack in acks {
            ack.await.map_err(|e| anyhow::anyhow!("raw PubAck: {e}"))?;
        }
        sent += batch;
    }
    let published = started.elapsed();

    let stream = js.get_stream(&name).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("raw consumer: {e}"))?;
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(512)
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("raw consume: {e}"))?;
    let mut got = 0u64;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(m))) => {
                m.ack().await.map_err(|e| anyhow::anyhow!("raw ack: {e}"))?;
                got += 1;
            }
            Ok(Some(Err(e))) => anyhow::bail!("raw consume: {e}"),
            _ => anyhow::bail!("raw consume stalled after {got} of {n}"),
        }
    }
    client.flush().await?;
    let consumed = started.elapsed();
    let own_after = proc_info(std::process::id()).map_or(0.0, |p| p.1);
    let server_after = server_pid.and_then(proc_info).map(|p| p.1);
    let _ignored = js.delete_stream(&name).await;
    Ok(Raw {
        messages: n,
        bytes: size,
        publish_per_second: n as f64 / published.as_secs_f64(),
        consume_per_second: n as f64 / consumed.as_secs_f64(),
        client_cpu_seconds: own_after - own_before,
        server_cpu_seconds: server_before.zip(server_after).map(|(b, a)| a - b),
    })
}

// === report ===

fn print_report(r: &Report, args: &PipelineArgs) {
    println!(
        "{} injections of {} into {} {} at a {} ms probe interval, over {:.0} s",
        r.injections.len(),
        args.kind,
        args.region,
        args.service,
        r.interval_ms,
        r.measured_seconds
    );
    println!();
    println!("| stage | seen | p50 ms | p95 ms | p99 ms | max ms | after the failed lookup: p50 | p95 | p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &r.stages {
        println!(
            "| {} | {}/{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.name,
            s.seen,
            r.injections.len(),
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            s.after_lookup_p50_ms,
            s.after_lookup_p95_ms,
            s.after_lookup_p99_ms
        );
    }
    let recovered = r.injections.iter().filter(|i| i.recovered).count();
    println!(
        "\nrecovered after clearing: {recovered}/{}",
        r.injections.len()
    );
    let l = &r.loss;
    println!(
        "\nhealth events stored during the run: {} from {} vantages ({:.0}/s, {:.0} bytes each); lost: {}; stored twice: {}",
        l.events, l.vantages, l.events_per_second, l.mean_event_bytes, l.lost, l.duplicates
    );
    if !r.processes.is_empty() {
        println!("\n| process | CPU s | share of a core | peak RSS MiB |");
        println!("|---|---|---|---|");
        let mut total = 0.0;
        for p in &r.processes {
            total += p.cpu_seconds;
            println!(
                "| {} | {:.1} | {:.1} % | {:.1} |",
                p.name,
                p.cpu_seconds,
                p.cpu_share * 100.0,
                p.peak_rss_mib
            );
        }
        println!(
            "| all | {total:.1} | {:.1} % | |",
            total / r.measured_seconds * 100.0
        );
        if l.events > 0 {
            println!(
                "\nCPU per stored health event, whole pipeline (NATS included): {:.1} µs",
                total / l.events as f64 * 1e6
            );
        }
    }
    if let Some(raw) = &r.raw {
        println!(
            "\nraw JetStream, {} messages of {} bytes: publish {:.0}/s (PubAck awaited, 512 in flight), consume {:.0}/s (acked)",
            raw.messages, raw.bytes, raw.publish_per_second, raw.consume_per_second
        );
        if let Some(server) = raw.server_cpu_seconds {
            let per = (raw.client_cpu_seconds + server) / raw.messages as f64 * 1e6;
            println!(
                "CPU per message, raw (client + nats-server): {per:.1} µs; the pipeline's event rate is {:.2} % of raw publish capacity",
                l.events_per_second / raw.publish_per_second * 100.0
            );
        }
    }
}
