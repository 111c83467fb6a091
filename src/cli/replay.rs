//! `regionguard replay`: score recorded health checks offline with the
//! detector's anomaly model (the code the service runs), for tuning.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rg_detector::anomaly::Mode;
use rg_detector::features::Feature;
use rg_detector::isolation_forest::Contamination;
use rg_detector::replay::{Batching, Format, ReplayOptions};

use super::Globals;

/// Scores each row of a CSV of health checks (or of a numeric feature
/// matrix) and writes score and flag per row. Model settings default to the
/// `[detector.anomaly]` section of the configuration.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Input CSV (`-` for stdin). Checks: timestamp, region, service,
    /// endpoint, success, response_time_ms (extra columns ignored).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// Output CSV (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// batch (fit on each batch) or baseline (fit on recent history).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// checks (health checks) or features (every column but --ignore is a
    /// numeric feature; the file is one batch).
    #[arg(long, default_value = "checks", value_name = "FORMAT")]
    format: String,
    /// Batch window of checks, e.g. 10s, or `all` for one batch.
    #[arg(long, default_value = "10s", value_name = "WINDOW")]
    batch: String,
    /// Features of checks, comma-separated: success, response_time, hour,
    /// norm_latency.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    features: Vec<String>,
    /// Columns that are not features (format features), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    ignore: Vec<String>,
    /// `auto` or a share in (0, 0.5] (batch mode's threshold).
    #[arg(long, value_name = "C")]
    contamination: Option<String>,
    /// Random seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Trees.
    #[arg(long)]
    trees: Option<usize>,
    /// Score on one thread only.
    #[arg(long)]
    single_thread: bool,
}

pub(crate) fn run(globals: Globals, args: ReplayArgs) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let options = match options(&config.detector.anomaly, &args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    let input: Box<dyn Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match File::open(&args.input) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("Error: cannot read {}: {e}", args.input.display());
                return ExitCode::from(2);
            }
        }
    };
    let output: Box<dyn Write> = match &args.output {
        Some(path) => match File::create(path) {
            Ok(f) => Box::new(BufWriter::new(f)),
            Err(e) => {
                eprintln!("Error: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut reported = 0usize;
    let result = rg_detector::replay::replay(input, output, &options, |line, reason| {
        reported += 1;
        if reported <= 100 {
            eprintln!("line {line}: skipped: {reason}");
        } else if reported == 101 {
            eprintln!("(more skipped rows are counted, not listed)");
        }
    });
    match result {
        Ok(s) => {
            eprintln!(
                "replay: {} rows scored in {} batches ({} alerting), {} flagged, {} skipped",
                s.rows, s.batches, s.alerting_batches, s.flagged, s.skipped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(2)
        }
    }
}

fn options(
    section: &rg_detector::config::AnomalySection,
    args: &ReplayArgs,
) -> Result<ReplayOptions, String> {
    let mut anomaly = section.model();
    if let Some(m) = &args.mode {
        anomaly.mode =
            Mode::parse(m).ok_or_else(|| format!("--mode {m:?}: use batch or baseline"))?;
    }
    let format = match args.format.as_str() {
        "checks" => Format::Checks,
        "features" => Format::Features,
        other => return Err(format!("--format {other:?}: use checks or features")),
    };
    if format == Format::Features && args.mode.is_none() {
        anomaly.mode = Mode::Batch;
    }
    let batching = match args.batch.as_str() {
        "all" => Batching::All,
        w => Batching::Window(
            humantime::parse_duration(w)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("--batch {w:?}: use a duration such as 10s, or all"))?,
        ),
    };
    if !args.features.is_empty() {
        anomaly.features = args
            .features
            .iter()
            .map(|f| Feature::parse(f).ok_or_else(|| format!("--features: {f:?} is not one of success, response_time, hour, norm_latency")))
            .collect::<Result<_, _>>()?;
    }
    if let Some(c) = &args.contamination {
        anomaly.contamination = match c.as_str() {
            "auto" => Contamination::Auto,
            share => match share.parse::<f64>() {
                Ok(s) if s > 0.0 && s <= 0.5 => Contamination::Share(s),
                _ => {
                    return Err(format!(
                        "--contamination {c:?}: use auto or a share in (0, 0.5]"
                    ))
                }
            },
        };
    }
    if let Some(s) = args.seed {
        anomaly.seed = s;
    }
    if let Some(t) = args.trees {
        if t == 0 {
            return Err("--trees must be at least 1".into());
        }
        anomaly.trees = t;
    }
    anomaly.parallel = !args.single_thread;
    Ok(ReplayOptions {
        anomaly,
        format,
        batching,
        ignore: args.ignore.clone(),
    })
}
