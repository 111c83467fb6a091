//! Offline scoring of recorded data (`regionguard replay`), through the same
//! [`AnomalyDetector`] the service runs.
//!
//! Two input formats (CSV with a header row):
//!
//! - `checks` (default): health checks with columns `timestamp`, `region`,
//!   `service`, `endpoint`, `success`, `response_time_ms` (and optionally
//!   `vantage`); other columns are ignored. `timestamp` is unix seconds,
//!   unix milliseconds (values above 10^11) or RFC 3339. Rows are grouped
//!   into batches by time window (`--batch 10s`, one probe interval) or
//!   taken as one batch (`--batch all`), in file order, and each batch is
//!   assessed as the service assesses a round.
//! - `features`: every column is a numeric feature except those named with
//!   `--ignore` (e.g. a label); the whole file is one batch scored in batch
//!   mode. This is how a data set that is not health checks (e.g.
//!   scikit-learn's breast cancer) goes through the same forest.
//!
//! A bad row is reported with its line number and skipped; it never stops
//! the replay. The output has one line per scored row: its input line, the
//! score (scikit-learn's `score_samples` convention: lower is more
//! abnormal), whether it was flagged, the batch and whether the batch
//! alerted.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, UNIX_EPOCH};

use ndarray::Array2;

use crate::anomaly::{AnomalyConfig, AnomalyDetector, Basis, Mode, Verdict};
use crate::features::Check;

/// The input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Health checks.
    Checks,
    /// A numeric feature matrix.
    Features,
}

/// How check rows form batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Consecutive rows in the same time window.
    Window(Duration),
    /// The whole file.
    All,
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The model.
    pub anomaly: AnomalyConfig,
    /// Input format.
    pub format: Format,
    /// Batching of checks.
    pub batching: Batching,
    /// Columns that are not features (format `features`).
    pub ignore: Vec<String>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    /// Rows scored.
    pub rows: usize,
    /// Rows skipped as bad.
    pub skipped: usize,
    /// Batches assessed.
    pub batches: usize,
    /// Batches that alerted.
    pub alerting_batches: usize,
    /// Rows flagged.
    pub flagged: usize,
}

/// The input cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The header lacks a required column.
    #[error("the input has no {0:?} column (checks need timestamp, region, service, endpoint, success, response_time_ms)")]
    MissingColumn(&'static str),
    /// No feature column is left.
    #[error("the input has no numeric feature column")]
    NoFeatures,
    /// An option does not fit the format.
    #[error("{0}")]
    Options(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(String),
}

impl From<csv::Error> for ReplayError {
    fn from(e: csv::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// Replays `input` into `output` (CSV), calling `skipped(line, reason)` for
/// each bad row.
pub fn replay(
    input: impl Read,
    output: impl Write,
    options: &ReplayOptions,
    mut skipped: impl FnMut(u64, &str),
) -> Result<ReplaySummary, ReplayError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let mut writer = csv::Writer::from_writer(output);
    let summary = match options.format {
        Format::Checks => replay_checks(&mut reader, &header, &mut writer, options, &mut skipped)?,
        Format::Features => {
            replay_features(&mut reader, &header, &mut writer, options, &mut skipped)?
        }
    };
    writer.flush().map_err(|e| ReplayError::Io(e.to_string()))?;
    Ok(summary)
}

fn column(header: &[String], name: &'static str) -> Result<usize, ReplayError> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or(ReplayError::MissingColumn(name))
}

struct Columns {
    timestamp: usize,
    region: usize,
    service: usize,
    endpoint: usize,
    success: usize,
    response_time: usize,
    vantage: Option<usize>,
}

fn replay_checks<R: Read, W: Write>(
    reader: &mut csv::Reader<R>,
    header: &[String],
    writer: &mut csv::Writer<W>,
    options: &ReplayOptions,
    skipped: &mut impl FnMut(u64, &str),
) -> Result<ReplaySummary, ReplayError> {
    let cols = Columns {
        timestamp: column(header, "timestamp")?,
        region: column(header, "region")?,
        service: column(header, "service")?,
        endpoint: column(header, "endpoint")?,
        success: column(header, "success")?,
        response_time: column(header, "response_time_ms")?,
        vantage: header.iter().position(|h| h == "vantage"),
    };
    writer.write_record([
        "line",
        "timestamp_ms",
        "region",
        "service",
        "endpoint",
        "score",
        "flagged",
        "basis",
        "batch",
        "batch_alert",
        "reasons",
    ])?;
    let mut detector = AnomalyDetector::new(options.anomaly.clone());
    let mut summary = ReplaySummary::default();
    let mut batch: Vec<(u64, Check)> = Vec::new();
    let mut batch_key: Option<i64> = None;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                skipped(line, &e.to_string());
                summary.skipped += 1;
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let check = match parse_check(&record, &cols) {
            Ok(c) => c,
            Err(reason) => {
                skipped(line, &reason);
                summary.skipped += 1;
                continue;
            }
        };
        let key = match options.batching {
            Batching::All => 0,
            Batching::Window(w) => {
                // Milliseconds beyond i64 saturate: `as i64` truncated them
                // (2^64 ms became 0, a division by zero; Duration::MAX
                // became -1). Found by fuzz_tests.
                let w = i64::try_from(w.as_millis()).unwrap_or(i64::MAX).max(1);
                check.timestamp_ms.div_euclid(w)
            }
        };
        if batch_key.is_some_and(|k| k != key) {
            flush(&mut detector, &mut batch, writer, &mut summary)?;
        }
        batch_key = Some(key);
        batch.push((line, check));
    }
    flush(&mut detector, &mut batch, writer, &mut summary)?;
    Ok(summary)
}

fn flush<W: Write>(
    detector: &mut AnomalyDetector,
    batch: &mut Vec<(u64, Check)>,
    writer: &mut csv::Writer<W>,
    summary: &mut ReplaySummary,
) -> Result<(), ReplayError> {
    if batch.is_empty() {
        return Ok(());
    }
    let checks: Vec<Check> = batch.iter().map(|(_, c)| c.clone()).collect();
    let verdict = detector.assess(&checks);
    let index = summary.batches;
    summary.batches += 1;
    summary.alerting_batches += usize::from(verdict.alert);
    summary.flagged += verdict.flagged.len();
    summary.rows += checks.len();
    for (i, (line, c)) in batch.iter().enumerate() {
        let finding = verdict.flagged.iter().find(|f| f.index == i);
        writer.write_record([
            line.to_string(),
            c.timestamp_ms.to_string(),
            c.region.clone(),
            c.service.clone(),
            c.endpoint.clone(),
            format!("{:.6}", verdict.scores.get(i).copied().unwrap_or(0.0)),
            u8::from(finding.is_some()).to_string(),
            basis_name(&verdict).to_owned(),
            index.to_string(),
            u8::from(verdict.alert).to_string(),
            finding.map(|f| f.reasons.join("; ")).unwrap_or_default(),
        ])?;
    }
    batch.clear();
    Ok(())
}

fn basis_name(v: &Verdict) -> &'static str {
    match v.basis {
        Basis::Batch => "batch",
        Basis::Baseline => "baseline",
        Basis::WarmingUp => "warming_up",
    }
}

fn parse_check(record: &csv::StringRecord, cols: &Columns) -> Result<Check, String> {
    let field = |i: usize, name: &str| {
        record
            .get(i)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{name} is empty"))
    };
    let timestamp_ms = parse_timestamp(field(cols.timestamp, "timestamp")?)?;
    let success = match field(cols.success, "success")?
        .to_ascii_lowercase()
        .as_str()
    {
        "1" | "true" | "yes" | "ok" => true,
        "0" | "false" | "no" | "failed" => false,
        other => return Err(format!("success {other:?} is not 1/0 or true/false")),
    };
    let raw = field(cols.response_time, "response_time_ms")?;
    let response_time_ms: f64 = raw
        .parse()
        .map_err(|_| format!("response_time_ms {raw:?} is not a number"))?;
    if !response_time_ms.is_finite() || response_time_ms < 0.0 {
        return Err(format!(
            "response_time_ms {raw:?} is not a finite, non-negative number"
        ));
    }
    Ok(Check {
        timestamp_ms,
        region: field(cols.region, "region")?.to_owned(),
        service: field(cols.service, "service")?.to_owned(),
        endpoint: field(cols.endpoint, "endpoint")?.to_owned(),
        vantage: cols
            .vantage
            .and_then(|i| record.get(i))
            .unwrap_or_default()
            .to_owned(),
        success,
        response_time_ms,
    })
}

/// Unix seconds, unix ms (above 10^11), or RFC 3339.
fn parse_timestamp(s: &str) -> Result<i64, String> {
    if let Ok(v) = s.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("timestamp {s:?} is not a time"));
        }
        return Ok(if v >= 1e11 {
            v as i64
        } else {
            (v * 1000.0) as i64
        });
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("timestamp {s:?}: {e}"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("timestamp {s:?} is before 1970"))
}

fn replay_features<R: Read, W: Write>(
    reader: &mut csv::Reader<R>,
    header: &[String],
    writer: &mut csv::Writer<W>,
    options: &ReplayOptions,
    skipped: &mut impl FnMut(u64, &str),
) -> Result<ReplaySummary, ReplayError> {
    if options.anomaly.mode == Mode::Baseline {
        return Err(ReplayError::Options(
            "--format features scores the whole file as one batch: use --mode batch (baseline mode needs health checks over time)".into(),
        ));
    }
    let ignore: HashSet<String> = options
        .ignore
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let used: Vec<usize> = (0..header.len())
        .filter(|i| !ignore.contains(&header[*i]))
        .collect();
    if used.is_empty() {
        return Err(ReplayError::NoFeatures);
    }
    let mut lines = Vec::new();
    let mut values = Vec::new();
    let mut summary = ReplaySummary::default();
    'rows: for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                skipped(e.position().map_or(0, |p| p.line()), &e.to_string());
                summary.skipped += 1;
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let mut row = Vec::with_capacity(used.len());
        for &i in &used {
            match record.get(i).map(str::parse::<f64>) {
                Some(Ok(v)) if v.is_finite() => row.push(v),
                _ => {
                    skipped(
                        line,
                        &format!("column {:?} is not a finite number", header[i]),
                    );
                    summary.skipped += 1;
                    continue 'rows;
                }
            }
        }
        lines.push(line);
        values.extend(row);
    }
    writer.write_record(["line", "score", "flagged", "reasons"])?;
    if lines.is_empty() {
        return Ok(summary);
    }
    let x = Array2::from_shape_vec((lines.len(), used.len()), values)
        .map_err(|e| ReplayError::Io(e.to_string()))?;
    let verdict = AnomalyDetector::new(options.anomaly.clone()).assess_matrix(&x);
    for (i, line) in lines.iter().enumerate() {
        let finding = verdict.flagged.iter().find(|f| f.index == i);
        writer.write_record([
            line.to_string(),
            format!("{:.6}", verdict.scores.get(i).copied().unwrap_or(0.0)),
            u8::from(finding.is_some()).to_string(),
            finding.map(|f| f.reasons.join("; ")).unwrap_or_default(),
        ])?;
    }
    summary.rows = lines.len();
    summary.batches = 1;
    summary.flagged = verdict.flagged.len();
    summary.alerting_batches = usize::from(verdict.alert);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: Mode, batching: Batching) -> ReplayOptions {
        ReplayOptions {
            anomaly: AnomalyConfig {
                mode,
                min_history_rows: 10,
                ..Default::default()
            },
            format: Format::Checks,
            batching,
            ignore: vec![],
        }
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_skipped() {
        let input = "timestamp,region,service,endpoint,success,response_time_ms,label\n\
            1760000000,us-east-1,ec2,ec2.us-east-1.amazonaws.com,1,12.5,0\n\
            1760000000,us-east-1,ec2,ec2.us-east-1.amazonaws.com,maybe,12.5,0\n\
            1760000000,us-east-1,ec2,ec2.us-east-1.amazonaws.com,1,NaN,0\n\
            1760000000,us-east-1,ec2,ec2.us-east-1.amazonaws.com,1,-4,0\n\
            not-a-time,us-east-1,ec2,ec2.us-east-1.amazonaws.com,1,4,0\n\
            2025-10-20T07:00:00Z,us-east-1,s3,s3.us-east-1.amazonaws.com,true,4,0\n";
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let s = replay(
            input.as_bytes(),
            &mut out,
            &options(Mode::Batch, Batching::All),
            |l, r| bad.push((l, r.to_owned())),
        )
        .unwrap();
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            [3, 4, 5, 6],
            "{bad:?}"
        );
        assert!(bad[0].1.contains("success"));
        assert_eq!((s.rows, s.skipped, s.batches), (2, 4, 1));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .starts_with("7,1760943600000,us-east-1,s3"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_column_is_named() {
        let err = replay(
            "timestamp,region\n1,x\n".as_bytes(),
            Vec::new(),
            &options(Mode::Batch, Batching::All),
            |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"service\""), "{err}");
    }

    #[test]
    fn checks_are_batched_by_time_window() {
        let mut input =
            String::from("timestamp,region,service,endpoint,success,response_time_ms\n");
        for t in 0..5 {
            for e in 0..4 {
                input.push_str(&format!(
                    "{},r,s,e{e},1,{}\n",
                    1_760_000_000 + t * 10,
                    10 + e
                ));
            }
        }
        let s = replay(
            input.as_bytes(),
            Vec::new(),
            &options(Mode::Baseline, Batching::Window(Duration::from_secs(10))),
            |_, _| {},
        )
        .unwrap();
        assert_eq!((s.rows, s.batches), (20, 5));
    }

    #[test]
    fn features_format_scores_the_whole_file() {
        let mut input = String::from("a,b,label\n");
        for i in 0..50 {
            input.push_str(&format!(
                "{},{},0\n",
                (i % 5) as f64 * 0.1,
                (i % 7) as f64 * 0.1
            ));
        }
        input.push_str("9,9,1\nx,1,0\n");
        let mut out = Vec::new();
        let mut o = options(Mode::Batch, Batching::All);
        o.format = Format::Features;
        o.ignore = vec!["label".into()];
        let mut bad = Vec::new();
        let s = replay(input.as_bytes(), &mut out, &o, |l, _| bad.push(l)).unwrap();
        assert_eq!((s.rows, s.skipped, bad.as_slice()), (51, 1, &[53][..]));
        let text = String::from_utf8(out).unwrap();
        let outlier = text.lines().find(|l| l.starts_with("52,")).unwrap();
        assert!(outlier.contains(",1,"), "{outlier}");
        o.anomaly.mode = Mode::Baseline;
        assert!(matches!(
            replay(input.as_bytes(), Vec::new(), &o, |_, _| {}),
            Err(ReplayError::Options(_))
        ));
    }
}

#[cfg(test)]
mod fuzz_tests;
