//! `regionguard bench forest`: fit plus score of the Isolation Forest on a
//! numeric CSV, timed, for the comparison with scikit-learn in
//! `scripts/bench_forest.py`.

use std::io::Read;

use linfa::traits::Fit;
use linfa::DatasetBase;
use ndarray::Array2;
use tokio::time::Instant;

use crate::isolation_forest::IsolationForestParams;

/// What one run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ForestReport {
    /// Rows.
    pub rows: usize,
    /// Features.
    pub features: usize,
    /// Fitting, seconds.
    pub fit_s: f64,
    /// Scoring every row, seconds.
    pub score_s: f64,
    /// Both.
    pub total_s: f64,
    /// Whether scoring used every core.
    pub parallel: bool,
    /// Peak resident memory of the process, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib: u64,
    /// Mean score (a checksum that the work was done).
    pub mean_score: f64,
}

/// Reads a CSV of numbers with a header row; columns named in `ignore`
/// are skipped.
pub fn read_matrix(input: impl Read, ignore: &[String]) -> Result<Array2<f64>, String> {
    let mut reader = csv::Reader::from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_owned)
        .collect();
    let used: Vec<usize> = (0..header.len())
        .filter(|i| !ignore.contains(&header[*i]))
        .collect();
    let mut values = Vec::new();
    let mut rows = 0;
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|e| e.to_string())?;
        for &i in &used {
            let v: f64 = record
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("row {}: column {:?} is not a number", n + 2, header[i]))?;
            values.push(v);
        }
        rows += 1;
    }
    Array2::from_shape_vec((rows, used.len()), values).map_err(|e| e.to_string())
}

/// Fits a default forest (100 trees, 256 rows each) on `x` and scores
/// every row of it.
pub fn forest(x: &Array2<f64>, parallel: bool, seed: u64) -> Result<ForestReport, String> {
    let params = IsolationForestParams::default()
        .seed(seed)
        .parallel(parallel);
    let dataset = DatasetBase::from(x.clone());
    let start = Instant::now();
    let model = params.fit(&dataset).map_err(|e| e.to_string())?;
    let fitted = Instant::now();
    let scores = model.score_samples(x);
    let done = Instant::now();
    let peak_rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    Ok(ForestReport {
        rows: x.nrows(),
        features: x.ncols(),
        fit_s: (fitted - start).as_secs_f64(),
        score_s: (done - fitted).as_secs_f64(),
        total_s: (done - start).as_secs_f64(),
        parallel,
        peak_rss_kib,
        mean_score: scores.mean().unwrap_or(0.0),
    })
}
