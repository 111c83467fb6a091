//! Bad-input fuzzing of the replay reader (proptest): arbitrary bytes, and
//! CSV files of rows built good or bad on purpose (NaN, infinities, negative
//! and huge numbers, empty fields, quotes, missing and extra columns,
//! non-UTF-8 bytes, garbage lines), in both formats, both modes and
//! several batch windows.
//!
//! Whatever the input, [`replay`] returns a summary or an error, never
//! panics, never hangs (each case runs under a deadline on its own thread),
//! reports every bad row with its line and keeps every good one. The case
//! counts keep this to a few seconds in a debug build; for a longer run
//! set `PROPTEST_CASES`, e.g. `PROPTEST_CASES=100000 cargo test -p
//! rg-detector fuzz`.

use std::collections::BTreeSet;

use proptest::prelude::*;
use rg_testkit::fuzz::{config as fuzz_config, within};

use super::*;

/// How long one case may take on a loaded CI machine in a debug build.
/// A case (up to 48 rows, forests of 8 trees) takes a few milliseconds:
/// this only catches hangs.
const CASE_LIMIT: Duration = Duration::from_secs(2);

/// Runs `f` on a thread of its own and fails when it takes longer than
/// [`CASE_LIMIT`]; a panic in `f` is passed on as it is.
fn within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(CASE_LIMIT, f)
}

const HEADER: &str = "timestamp,region,service,endpoint,success,response_time_ms";

/// Windows of `--batch`, from the smallest to ones whose milliseconds do
/// not fit an `i64` (2^64 ms exactly, and the largest duration).
const WINDOWS: &[Duration] = &[
    Duration::from_millis(1),
    Duration::from_secs(10),
    Duration::from_secs(24 * 3600),
    Duration::new(18_446_744_073_709_551, 616_000_000),
    Duration::MAX,
];

/// Small, fast models: enough trees and history for every code path
/// (baseline mode leaves warm-up after 8 rows).
fn options(format: Format, mode: Mode, batching: Batching) -> ReplayOptions {
    ReplayOptions {
        anomaly: AnomalyConfig {
            mode,
            trees: 8,
            max_samples: 64,
            history_rows: 256,
            min_history_rows: 8,
            learn_delay: 1,
            parallel: false,
            ..Default::default()
        },
        format,
        batching,
        ignore: vec!["label".into()],
    }
}

fn any_options(format: Format) -> impl Strategy<Value = ReplayOptions> {
    let batching = prop_oneof![
        Just(Batching::All),
        prop::sample::select(WINDOWS).prop_map(Batching::Window),
    ];
    let mode = prop_oneof![Just(Mode::Batch), Just(Mode::Baseline)];
    (mode, batching).prop_map(move |(mode, batching)| options(format, mode, batching))
}

/// What a replay did.
#[derive(Debug)]
struct Outcome {
    result: Result<ReplaySummary, String>,
    /// `(line, reason)` of each skipped row.
    skipped: Vec<(u64, String)>,
    /// Input line of each scored row, in output order.
    kept: Vec<u64>,
}

/// Replays `input` under the deadline and checks what holds for any
/// input: the output is CSV with one record per scored row, each skipped
/// row has a reason, and the counts agree.
fn run(input: Vec<u8>, options: ReplayOptions) -> Outcome {
    within_limit(move || {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let result = replay(input.as_slice(), &mut out, &options, |line, reason| {
            skipped.push((line, reason.to_owned()));
        });
        let mut kept = Vec::new();
        if let Ok(summary) = &result {
            assert_eq!(summary.skipped, skipped.len());
            assert!(summary.flagged <= summary.rows, "{summary:?}");
            assert!(summary.alerting_batches <= summary.batches, "{summary:?}");
            assert!(summary.batches <= summary.rows, "{summary:?}");
            for (_, reason) in &skipped {
                assert!(!reason.is_empty());
            }
            let mut reader = csv::Reader::from_reader(out.as_slice());
            assert_eq!(
                reader.headers().expect("an output header").get(0),
                Some("line")
            );
            for record in reader.records() {
                let record = record.expect("the output is CSV");
                let line = record[0].parse::<u64>().expect("a line number");
                let score = record[if options.format == Format::Checks {
                    5
                } else {
                    1
                }]
                .parse::<f64>()
                .expect("a score");
                assert!(score.is_finite(), "{record:?}");
                kept.push(line);
            }
            assert_eq!(kept.len(), summary.rows);
            // Rows come out in file order.
            assert!(kept.windows(2).all(|w| w[0] < w[1]), "{kept:?}");
        }
        Outcome {
            result: result.map_err(|e| e.to_string()),
            skipped,
            kept,
        }
    })
}

// === rows built good or bad on purpose ===

/// One field's text, and whether the reader must accept it.
type Field = (String, bool);

fn pick(good: &[&str], bad: &[&str]) -> impl Strategy<Value = Field> {
    let good: Vec<Field> = good.iter().map(|s| ((*s).to_owned(), true)).collect();
    let bad: Vec<Field> = bad.iter().map(|s| ((*s).to_owned(), false)).collect();
    prop_oneof![
        3 => prop::sample::select(good),
        1 => prop::sample::select(bad),
    ]
}

fn timestamp() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => pick(
            &[
                "1760000000",
                "1760000000123",
                "1760000000.5",
                "2025-10-20T07:00:00Z",
                "2025-10-20 07:00:00",
                "9999-12-31T23:59:59Z",
                "0",
                "-0",
                "1e300",
                " 1760000000 ",
            ],
            &[
                "",
                "   ",
                "NaN",
                "inf",
                "-inf",
                "-1",
                "1e400",
                "not-a-time",
                "1969-12-31T23:59:59Z",
                "2025-13-01T00:00:00Z",
                "2025-10-20T07:00:00+99:00",
            ],
        ),
        // Any number: a time exactly when it is finite and not negative.
        1 => any::<f64>().prop_map(|v| (v.to_string(), v.is_finite() && v >= 0.0)),
        1 => any::<i64>().prop_map(|v| (v.to_string(), v >= 0)),
    ]
}

fn success() -> impl Strategy<Value = Field> {
    pick(
        &["1", "0", "true", "FALSE", "Yes", "ok", "failed", "no"],
        &["", "maybe", "2", "tru", "1.0"],
    )
}

fn response_time() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => pick(
            &["0", "12.5", "-0", "1e308", "0.000001", " 7 ", "1E3"],
            &["", "NaN", "nan", "inf", "-inf", "-4", "1e400", "abc", "0x10", "1,5"],
        ),
        // Any number: accepted exactly when it is finite and not negative.
        1 => any::<f64>().prop_map(|v| (v.to_string(), v.is_finite() && v >= 0.0)),
    ]
}

fn name() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => pick(
            &[
                "us-east-1",
                "dynamodb.us-east-1.amazonaws.com",
                "a,b",
                "say \"hi\"",
                "é",
                "  padded  ",
                "\u{0}",
            ],
            &["", "  "],
        ),
        // Text without line breaks (the csv writer quotes what needs it).
        1 => "[^\r\n]{0,12}".prop_map(|s| {
            let good = !s.trim().is_empty();
            (s, good)
        }),
    ]
}

/// A checks row: one field per column of the header (in its order).
#[derive(Debug, Clone)]
struct Row {
    fields: Vec<Field>,
    /// Trailing fields removed (a short row).
    cut: usize,
    /// Fields appended (ignored) to a row that is not short.
    extra: usize,
    /// A byte that is not UTF-8 inserted into the first field.
    not_utf8: bool,
}

/// A header: the required columns in some order, maybe `vantage` and a
/// `label` (ignored), and the fields of rows that follow it.
fn checks_file() -> impl Strategy<Value = (Vec<&'static str>, Vec<Row>, Vec<(usize, String)>)> {
    let columns = Just(vec![
        "timestamp",
        "region",
        "service",
        "endpoint",
        "success",
        "response_time_ms",
    ])
    .prop_shuffle();
    let optional = (any::<bool>(), any::<bool>());
    (columns, optional).prop_flat_map(|(mut columns, (vantage, label))| {
        if vantage {
            columns.push("vantage");
        }
        if label {
            columns.insert(0, "label");
        }
        let field_of = |c: &str| -> BoxedStrategy<Field> {
            match c {
                "timestamp" => timestamp().boxed(),
                "success" => success().boxed(),
                "response_time_ms" => response_time().boxed(),
                "region" | "service" | "endpoint" => name().boxed(),
                // Optional columns: anything goes, empty included.
                _ => "[^\r\n\"]{0,8}".prop_map(|s| (s, true)).boxed(),
            }
        };
        let fields: Vec<BoxedStrategy<Field>> = columns.iter().map(|c| field_of(c)).collect();
        let row = (
            fields,
            prop_oneof![6 => Just(0usize), 1 => 1..4usize],
            prop_oneof![6 => Just(0usize), 1 => 1..3usize],
            prop::bool::weighted(0.05),
        )
            .prop_map(|(fields, cut, extra, not_utf8)| Row {
                fields,
                cut,
                extra,
                not_utf8,
            });
        // Lines without quotes inserted between rows (a quote would open a
        // field that runs to the end of the file).
        let garbage =
            prop::collection::vec((any::<prop::sample::Index>(), "[^\r\n\"]{1,30}"), 0..3)
                .prop_map(|v| v.into_iter().map(|(i, s)| (i.index(64), s)).collect());
        (Just(columns), prop::collection::vec(row, 0..40), garbage)
    })
}

/// Whether the reader must accept a row.
fn row_is_good(columns: &[&str], row: &Row) -> bool {
    let present = columns.len().saturating_sub(row.cut);
    !row.not_utf8
        && columns
            .iter()
            .zip(&row.fields)
            .enumerate()
            .all(|(i, (c, (_, good)))| {
                let required = !matches!(*c, "vantage" | "label");
                !required || (i < present && *good)
            })
}

/// Writes the file; returns it with the line of each row.
fn write_checks(
    columns: &[&str],
    rows: &[Row],
    garbage: &[(usize, String)],
) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    out.extend_from_slice(columns.join(",").as_bytes());
    out.push(b'\n');
    let mut line = 1;
    let mut lines = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for (_, text) in garbage.iter().filter(|(at, _)| *at == i) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
            line += 1;
        }
        let keep = row.fields.len().saturating_sub(row.cut);
        let mut fields: Vec<Vec<u8>> = row.fields[..keep]
            .iter()
            .map(|(s, _)| s.as_bytes().to_vec())
            .collect();
        if row.not_utf8 {
            if let Some(first) = fields.first_mut() {
                first.push(0xff);
            }
        }
        if row.cut == 0 {
            // (Extra fields after a short row would fill its missing ones.)
            fields.extend((0..row.extra).map(|i| format!("extra{i}").into_bytes()));
        }
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        if fields.is_empty() {
            // An empty record would be a blank line, which is no row.
            fields.push(b"x".to_vec());
        }
        w.write_record(&fields).expect("writes to memory");
        out.extend_from_slice(&w.into_inner().expect("flushes to memory"));
        line += 1;
        lines.push(line);
    }
    (out, lines)
}

/// A features file: numeric columns, maybe a `label`, rows of numbers or
/// not.
fn features_file() -> impl Strategy<Value = (usize, bool, Vec<Vec<Field>>)> {
    (1..5usize, any::<bool>()).prop_flat_map(|(n, label)| {
        let value = prop_oneof![
            4 => any::<f64>().prop_map(|v| (v.to_string(), v.is_finite())),
            2 => (-1e3..1e3f64).prop_map(|v| (v.to_string(), true)),
            1 => pick(&["0", "-0", "1e308", " 2 "], &["", "NaN", "inf", "x", "1e400"]),
        ];
        let width = n + usize::from(label);
        let row = prop::collection::vec(value, (width - 1).max(1)..width + 2);
        (Just(n), Just(label), prop::collection::vec(row, 0..40))
    })
}

/// Found by `checks_files_keep_good_rows_and_report_bad_ones`: a window of
/// 2^64 ms used to be cast to 0 ms and divide by zero.
#[test]
fn a_window_too_long_for_milliseconds_is_one_batch() {
    let input = format!("{HEADER}\n1760000000,r,s,e,1,5\n1760000010,r,s,e,1,6\n");
    for window in WINDOWS {
        let o = run(
            input.clone().into_bytes(),
            options(Format::Checks, Mode::Batch, Batching::Window(*window)),
        );
        let summary = o.result.expect("replays");
        assert_eq!(summary.rows, 2, "{window:?}");
        if *window >= Duration::from_secs(24 * 3600) {
            assert_eq!(summary.batches, 1, "{window:?}");
        }
    }
}

proptest! {
    #![proptest_config(fuzz_config(256))]

    /// Random bytes, after a valid header or not, in either format.
    #[test]
    fn arbitrary_bytes_never_panic_the_replay(
        header in prop_oneof![Just(""), Just(HEADER), Just("a,b,label")],
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        format in prop_oneof![Just(Format::Checks), Just(Format::Features)],
        options in any_options(Format::Checks),
    ) {
        let mut input = header.as_bytes().to_vec();
        if !header.is_empty() {
            input.push(b'\n');
        }
        input.extend_from_slice(&bytes);
        let outcome = run(input, ReplayOptions { format, ..options });
        if let Err(e) = &outcome.result {
            prop_assert!(!e.is_empty());
        }
    }

    /// Every good row is scored, every bad row is reported with its line,
    /// whatever sits around them; garbage lines are reported too.
    #[test]
    fn checks_files_keep_good_rows_and_report_bad_ones(
        (columns, rows, garbage) in checks_file(),
        options in any_options(Format::Checks),
    ) {
        let (input, lines) = write_checks(&columns, &rows, &garbage);
        let outcome = run(input, options);
        let summary = outcome.result.expect("a file with every column replays");
        let good: Vec<u64> = rows
            .iter()
            .zip(&lines)
            .filter(|(row, _)| row_is_good(&columns, row))
            .map(|(_, line)| *line)
            .collect();
        prop_assert_eq!(&outcome.kept, &good);
        let reported: BTreeSet<u64> = outcome.skipped.iter().map(|(l, _)| *l).collect();
        for (row, line) in rows.iter().zip(&lines) {
            prop_assert_eq!(
                reported.contains(line),
                !row_is_good(&columns, row),
                "line {}: {:?}", line, outcome.skipped
            );
        }
        // Garbage lines are reported too (as bad rows, or as CSV errors).
        prop_assert!(summary.skipped >= rows.len() - good.len());
    }

    /// Features: a row is scored exactly when every feature column holds a
    /// finite number.
    #[test]
    fn features_files_keep_finite_rows_and_report_the_rest(
        (n, label, rows) in features_file(),
    ) {
        let mut columns: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
        if label {
            columns.push("label".into());
        }
        let mut input = columns.join(",");
        input.push('\n');
        let mut good = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let line = i as u64 + 2;
            let text: Vec<&str> = row.iter().map(|(s, _)| s.as_str()).collect();
            let text = text.join(",");
            // An empty line is no record: write one empty field as `""`.
            input.push_str(if text.is_empty() { "\"\"" } else { &text });
            input.push('\n');
            // The label (last column) is ignored; missing features are bad.
            if row.len() >= n && row[..n].iter().all(|(_, ok)| *ok) {
                good.push(line);
            }
        }
        let options = options(Format::Features, Mode::Batch, Batching::All);
        let outcome = run(input.into_bytes(), options);
        let summary = outcome.result.expect("a features file replays");
        prop_assert_eq!(&outcome.kept, &good);
        prop_assert_eq!(summary.skipped, rows.len() - good.len());
    }
}
