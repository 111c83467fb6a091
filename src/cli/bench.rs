//! `regionguard bench probe`: how fast one prober can probe a resolver,
//! through the prober's own code (lookup, classify, encode, buffer), with
//! its lookup latency, CPU time and memory. `scripts/bench.sh` runs it side
//! by side with dnsperf against the same servers.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use rg_prober::bench::{BenchOptions, BenchReport};
use rg_prober::publish::EventBuffer;
use tokio_util::sync::CancellationToken;

use super::Globals;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Probe one resolver flat out (or at --rate) and report probes per
    /// second, lookup latency, CPU and memory.
    Probe(ProbeArgs),
    /// Fit the Isolation Forest on a numeric CSV and score every row; report
    /// the time of each and the peak memory (see scripts/bench_forest.py).
    Forest(ForestArgs),
    /// Build dashboard snapshots from a view of many endpoints and report
    /// the build time beside prost decoding the same round.
    Snapshot(super::bench_gateway::SnapshotArgs),
    /// Hold many WebSocket clients on a running gateway and report what
    /// each received (see scripts/bench_gateway.sh).
    Ws(super::bench_gateway::WsArgs),
    /// Against a running system (`regionguard up`): inject a fault again
    /// and again and time the critical health event, the threshold alert,
    /// the cascade alert and the failover request; count lost health
    /// events; each service's CPU and peak memory; raw JetStream beside it
    /// (see scripts/bench_pipeline.sh).
    Pipeline(super::bench_pipeline::PipelineArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ForestArgs {
    /// Numeric CSV with a header row.
    #[arg(long, value_name = "FILE")]
    input: std::path::PathBuf,
    /// Columns to leave out (e.g. a label), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    ignore: Vec<String>,
    /// Score on the calling thread only (default: every core).
    #[arg(long)]
    single_thread: bool,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The resolver to load, ip:port (e.g. the simulator, or unbound).
    #[arg(long, value_name = "ADDR")]
    resolver: String,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    duration: Duration,
    /// Lookups started per second (default: as fast as --concurrency allows).
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Lookups in flight at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    concurrency: usize,
    /// About how many distinct endpoint names to cycle through.
    #[arg(long, default_value_t = 7, value_name = "N")]
    endpoints: u32,
    /// Region of the generated names.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// UDP sockets towards the resolver.
    #[arg(long, default_value_t = 4, value_name = "N")]
    sockets: usize,
    /// Lookup timeout.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Also publish every event to the configured NATS (as a prober does);
    /// without it, events are encoded and buffered, then discarded.
    #[arg(long)]
    publish: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(globals: Globals, command: BenchCommand) -> ExitCode {
    let args = match command {
        BenchCommand::Probe(args) => args,
        BenchCommand::Forest(args) => return forest(args),
        BenchCommand::Snapshot(args) => return super::bench_gateway::snapshot(args),
        BenchCommand::Ws(args) => return super::bench_gateway::ws(args).await,
        BenchCommand::Pipeline(args) => return super::bench_pipeline::run(globals, args).await,
    };
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let services = config.prober.services.len().max(1) as u32;
    let prober_config = rg_prober::Config {
        region: Some(args.region.clone()),
        vantage: Some(format!("bench-{}", std::process::id())),
        resolvers: vec![args.resolver.clone()],
        extra_endpoints_per_service: args.endpoints.div_ceil(services).saturating_sub(1),
        timeout: args.timeout,
        interval: args.timeout + Duration::from_secs(1),
        concurrency: args.concurrency,
        sockets_per_resolver: args.sockets,
        ..config.prober.clone()
    };
    let mut problems = rg_bus::Problems::default();
    problems.section("bench", &prober_config);
    if !problems.is_empty() {
        for p in problems.list() {
            eprintln!("Error: {}: {}", p.key, p.message);
        }
        return ExitCode::from(2);
    }
    let plan = match prober_config.plan(rg_prober::config::system_resolvers) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    // Without --publish a tiny buffer: every push still pays for the queue,
    // and the oldest event falls out.
    let capacity = if args.publish {
        plan.buffer_capacity
    } else {
        1
    };
    let buffer = Arc::new(EventBuffer::new(capacity));
    let prober = match rg_prober::Prober::new(plan, &config.nats.subjects(), buffer.clone()).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = CancellationToken::new();
    let drain = CancellationToken::new();
    let publisher = args.publish.then(|| {
        tokio::spawn(rg_prober::publish::run(
            buffer.clone(),
            config.nats.clone(),
            "regionguard-bench".into(),
            stop.clone(),
            drain.clone(),
            Duration::from_secs(30),
        ))
    });
    let (targets, _) = prober.shape();
    eprintln!(
        "bench: {} lookups in flight over {targets} names via {} for {:?}{}{}",
        args.concurrency,
        args.resolver,
        args.duration,
        args.rate.map(|r| format!(" at {r}/s")).unwrap_or_default(),
        if args.publish {
            ", publishing to NATS"
        } else {
            ""
        }
    );
    let report = rg_prober::bench::run(
        &prober,
        BenchOptions {
            duration: args.duration,
            rate: args.rate,
            concurrency: args.concurrency,
        },
    )
    .await;
    if let Some(publisher) = publisher {
        drain.cancel();
        match publisher.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("Error: publishing: {e}"),
            Err(e) => eprintln!("Error: publisher task: {e}"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    ExitCode::SUCCESS
}

fn print_report(r: &BenchReport) {
    println!("lookups            {}", r.lookups);
    println!("probes per second  {:.0}", r.probes_per_second);
    println!(
        "answered           {} (timeouts {})",
        r.answered, r.timeouts
    );
    println!(
        "status             {} healthy, {} warning, {} critical",
        r.healthy, r.warning, r.critical
    );
    println!(
        "lookup time        mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
        r.mean_latency_ms, r.p50_latency_ms, r.p99_latency_ms
    );
    println!(
        "cpu                {:.2} s ({:.2} cores)",
        r.cpu_s, r.cpu_cores
    );
    println!(
        "memory             {} KiB resident, {} KiB peak",
        r.rss_kib, r.peak_rss_kib
    );
}

fn forest(args: ForestArgs) -> ExitCode {
    let file = match std::fs::File::open(&args.input) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("Error: cannot read {}: {e}", args.input.display());
            return ExitCode::from(2);
        }
    };
    let x = match rg_detector::bench::read_matrix(file, &args.ignore) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("Error: {}: {e}", args.input.display());
            return ExitCode::from(2);
        }
    };
    match rg_detector::bench::forest(&x, !args.single_thread, args.seed) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
