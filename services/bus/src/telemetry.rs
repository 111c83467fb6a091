//! Logging: human-readable or JSON lines, filtered by `RG_LOG`
//! (`tracing_subscriber::EnvFilter` syntax, default `info`).

use tracing_subscriber::{fmt, EnvFilter};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event (default).
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (human or json)")),
        }
    }
}

/// The filter without `RG_LOG`: regionguard at `info`; the libraries it
/// builds on only when they warn (hickory-server would log every query,
/// async-nats repeats what regionguard already logs about the connection).
pub const DEFAULT_FILTER: &str =
    "info,async_nats=warn,hickory_server=warn,hickory_proto=warn,hickory_net=warn";

/// Libraries kept at `warn` whatever `RG_LOG` says, unless it names them:
/// `RG_LOG=debug` is about regionguard, not about every DNS query
/// hickory-server answers (it logs each at `info`).
const QUIET_LIBRARIES: [&str; 4] = [
    "async_nats",
    "hickory_server",
    "hickory_proto",
    "hickory_net",
];

/// `RG_LOG` as given, with [`QUIET_LIBRARIES`] it does not name kept at
/// `warn`.
///
/// ```
/// use rg_bus::telemetry::filter_spec;
/// assert_eq!(filter_spec("debug"), "debug,async_nats=warn,hickory_server=warn,hickory_proto=warn,hickory_net=warn");
/// assert!(filter_spec("info,hickory_server=info").ends_with("hickory_server=info,async_nats=warn,hickory_proto=warn,hickory_net=warn"));
/// ```
pub fn filter_spec(rg_log: &str) -> String {
    let mut spec = rg_log.trim().to_owned();
    for lib in QUIET_LIBRARIES {
        if !spec.contains(lib) {
            spec.push_str(&format!(",{lib}=warn"));
        }
    }
    spec
}

/// Installs the global subscriber, writing to stderr. A second call (tests
/// running several services in one process) keeps the first subscriber.
pub fn init(format: LogFormat) {
    init_with_default(format, DEFAULT_FILTER);
}

/// As [`init`], with another filter when `RG_LOG` is not set (command-line
/// tools use `warn`: their output is what the user asked for, not logs).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = match std::env::var("RG_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(filter_spec(&spec)),
        _ => EnvFilter::new(default_filter),
    };
    // Colours only on a terminal: `regionguard up` pipes its services'
    // output, and log files should not hold escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    // An error here only means a subscriber is already installed.
    let _ignored = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
