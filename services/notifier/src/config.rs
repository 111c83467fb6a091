//! The `[notifier]` section: where alerts and failover phases go.

use std::net::SocketAddr;
use std::time::Duration;

use rg_bus::{Problems, Validate};
use rg_proto::domain::Severity;
use serde::Deserialize;

/// The `[notifier]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Durable consumer of `<p>.alerts.>`. Default `notifier`.
    pub durable: String,
    /// Durable consumer of `<p>.decisions.failover.>`. Default
    /// `notifier-decisions`.
    pub decisions_durable: String,
    /// Failover phases sent to the sinks (as notices with source
    /// `failover`). Default `["planned", "completed", "failed",
    /// "rolled_back"]`; empty: none.
    pub failover_phases: Vec<String>,
    /// The dashboard's address, linked from every notice. Default
    /// `http://127.0.0.1:8080/`.
    pub dashboard_url: String,
    /// Key-value bucket of the alerts firing in Alertmanager (sent again
    /// after a restart); what each sink took (so a restart sends nothing
    /// twice) is in `<state_bucket>_SENT`. Default `RG_NOTIFIER`.
    pub state_bucket: String,
    /// `[[notifier.sinks]]`: where notices go. Without any, the notifier
    /// consumes and acks, sending nothing (logged at start).
    pub sinks: Vec<SinkConfig>,
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            durable: "notifier".into(),
            decisions_durable: "notifier-decisions".into(),
            failover_phases: ["planned", "completed", "failed", "rolled_back"]
                .map(String::from)
                .to_vec(),
            dashboard_url: "http://127.0.0.1:8080/".into(),
            state_bucket: "RG_NOTIFIER".into(),
            sinks: Vec::new(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Prometheus Alertmanager, API v2: `url` is its base address
    /// (`http://alertmanager:9093`); alerts go to `/api/v2/alerts`.
    Alertmanager,
    /// Any HTTP endpoint taking regionguard's JSON notice.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": ...}`).
    Slack,
    /// PagerDuty Events API v2 (`url` defaults to
    /// `https://events.pagerduty.com/v2/enqueue`; needs a routing key).
    Pagerduty,
}

impl SinkKind {
    /// Its name in config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
        }
    }
}

/// `[[notifier.sinks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// A name of your choice, unique: used in logs, metrics and state.
    pub name: String,
    /// `alertmanager`, `webhook`, `slack` or `pagerduty`.
    pub kind: SinkKind,
    /// The address. Webhook URLs are often secrets: prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of an environment variable holding the address.
    #[serde(default)]
    pub url_env: Option<String>,
    /// PagerDuty routing (integration) key. A secret: prefer
    /// `routing_key_env`.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Name of an environment variable holding the routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// Least severity sent: `info`, `low`, `medium`, `high` or `critical`.
    /// Default `info` (everything).
    #[serde(default = "default_min_severity")]
    pub min_severity: String,
    /// Sources sent: `threshold`, `anomaly`, `cascade`, `failover`.
    /// Default: all.
    #[serde(default = "default_sources")]
    pub sources: Vec<String>,
    /// A notice not taken within this long is given up (counted and
    /// published on `<p>.alerts.notify.failed`). Default `15m`.
    #[serde(default = "default_give_up_after", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// First retry delay; doubles up to `max_backoff`. Default `500ms`.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest retry delay. Default `30s`.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// One HTTP request's deadline. Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Notices waiting for this sink at most; a full queue holds back the
    /// stream (nothing is dropped). Default `1000`.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Alertmanager only: how often firing alerts are sent again (it
    /// resolves an alert it has not heard of for its `resolve_timeout`).
    /// Default `1m`.
    #[serde(default = "default_resend", with = "humantime_serde")]
    pub resend_interval: Duration,
}

fn default_min_severity() -> String {
    "info".into()
}
fn default_sources() -> Vec<String> {
    SOURCES.map(String::from).to_vec()
}
const fn default_give_up_after() -> Duration {
    Duration::from_secs(15 * 60)
}
const fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
const fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_queue() -> usize {
    1000
}
const fn default_resend() -> Duration {
    Duration::from_secs(60)
}

/// The sources a sink may take.
pub const SOURCES: [&str; 6] = [
    "threshold",
    "anomaly",
    "cascade",
    "readiness",
    "silence",
    "failover",
];
const PHASES: [&str; 8] = [
    "requested",
    "planned",
    "approved",
    "rejected",
    "step",
    "completed",
    "failed",
    "rolled_back",
];

/// PagerDuty's Events API v2 address.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

impl SinkConfig {
    /// The address, from `url`, `url_env` or (PagerDuty) the default.
    pub fn resolved_url(&self) -> Result<String, String> {
        if let Some(var) = &self.url_env {
            return std::env::var(var)
                .map_err(|_| format!("environment variable {var} (url_env) is not set"));
        }
        match (&self.url, self.kind) {
            (Some(u), _) => Ok(u.clone()),
            (None, SinkKind::Pagerduty) => Ok(PAGERDUTY_URL.into()),
            (None, _) => Err("needs url or url_env".into()),
        }
    }

    /// The PagerDuty routing key, from `routing_key` or `routing_key_env`.
    pub fn resolved_routing_key(&self) -> Result<Option<String>, String> {
        if let Some(var) = &self.routing_key_env {
            return std::env::var(var)
                .map(Some)
                .map_err(|_| format!("environment variable {var} (routing_key_env) is not set"));
        }
        Ok(self.routing_key.clone())
    }

    /// The least severe notice the sink takes.
    pub fn min_rank(&self) -> Severity {
        Severity::from_name(&self.min_severity).unwrap_or(Severity::Info)
    }
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        if self.durable.is_empty() || self.decisions_durable.is_empty() {
            p.push("durable", "durable and decisions_durable must not be empty");
        }
        if self.durable == self.decisions_durable {
            p.push("decisions_durable", "must differ from durable");
        }
        if self.state_bucket.is_empty() {
            p.push("state_bucket", "must not be empty");
        }
        for phase in &self.failover_phases {
            if !PHASES.contains(&phase.as_str()) {
                p.push(
                    "failover_phases",
                    format!("{phase:?} is not one of {}", PHASES.join(", ")),
                );
            }
        }
        if !(self.dashboard_url.starts_with("http://")
            || self.dashboard_url.starts_with("https://"))
        {
            p.push("dashboard_url", "must be an http(s) URL");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let key = |k: &str| format!("sinks[{i}].{k}");
            let valid_name = !s.name.is_empty()
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid_name {
                p.push(key("name"), "must be letters, digits, - or _");
            }
            if !names.insert(s.name.clone()) {
                p.push(key("name"), format!("{:?} is used twice", s.name));
            }
            if s.url.is_some() && s.url_env.is_some() {
                p.push(key("url"), "give url or url_env, not both");
            }
            // An environment variable may be set only where the notifier
            // runs (every service reads the same file): its absence is an
            // error when the notifier starts, not here.
            let url = match (&s.url, &s.url_env) {
                (Some(u), _) => Some(u.clone()),
                (None, Some(var)) if var.is_empty() => {
                    p.push(key("url_env"), "must name an environment variable");
                    None
                }
                (None, Some(var)) => std::env::var(var).ok(),
                (None, None) if s.kind == SinkKind::Pagerduty => None,
                (None, None) => {
                    p.push(key("url"), "needs url or url_env");
                    None
                }
            };
            // The value is not echoed: webhook URLs are secrets.
            if url.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                p.push(key("url"), "is not an http(s) URL");
            }
            let has_key = s.routing_key.as_ref().is_some_and(|k| !k.is_empty())
                || s.routing_key_env.as_ref().is_some_and(|k| !k.is_empty());
            match s.kind {
                SinkKind::Pagerduty if !has_key => p.push(
                    key("routing_key"),
                    "PagerDuty needs routing_key or routing_key_env",
                ),
                SinkKind::Pagerduty => {}
                _ if has_key => p.push(key("routing_key"), "only for kind = \"pagerduty\""),
                _ => {}
            }
            if Severity::from_name(&s.min_severity).is_none() {
                let names: Vec<_> = Severity::ALL.iter().map(|s| s.as_str()).collect();
                p.push(
                    key("min_severity"),
                    format!("is not one of {}", names.join(", ")),
                );
            }
            for source in &s.sources {
                if !SOURCES.contains(&source.as_str()) {
                    p.push(
                        key("sources"),
                        format!("{source:?} is not one of {}", SOURCES.join(", ")),
                    );
                }
            }
            if s.queue == 0 {
                p.push(key("queue"), "must be at least 1");
            }
            if s.backoff.is_zero() || s.max_backoff < s.backoff {
                p.push(key("backoff"), "must be > 0 and at most max_backoff");
            }
            if s.timeout.is_zero() || s.resend_interval.is_zero() {
                p.push(key("timeout"), "timeout and resend_interval must be > 0");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(toml_text: &str) -> Vec<String> {
        let c: Config = toml::from_str(toml_text).unwrap();
        let mut p = Problems::default();
        c.validate(&mut p);
        p.list()
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    #[test]
    fn a_sink_needs_an_address_and_pagerduty_a_key_and_secrets_are_not_echoed() {
        let p = problems(
            r#"
[[sinks]]
name = "team"
kind = "slack"
[[sinks]]
name = "pd"
kind = "pagerduty"
min_severity = "urgent"
[[sinks]]
name = "hook"
kind = "webhook"
url = "ftp://secret-token@example.invalid"
"#,
        );
        assert_eq!(
            p,
            [
                "sinks[0].url: needs url or url_env",
                "sinks[1].routing_key: PagerDuty needs routing_key or routing_key_env",
                "sinks[1].min_severity: is not one of info, low, medium, high, critical",
                "sinks[2].url: is not an http(s) URL",
            ]
        );
    }

    #[test]
    fn a_secret_from_an_unset_variable_is_not_a_config_error_where_the_notifier_does_not_run() {
        let p = problems(
            r#"
[[sinks]]
name = "pd"
kind = "pagerduty"
routing_key_env = "RG_TEST_UNSET_PAGERDUTY_KEY"
[[sinks]]
name = "slack"
kind = "slack"
url_env = "RG_TEST_UNSET_SLACK_URL"
"#,
        );
        assert!(p.is_empty(), "{p:?}");
        let c: Config = toml::from_str(
            "[[sinks]]\nname = \"slack\"\nkind = \"slack\"\nurl_env = \"RG_TEST_UNSET_SLACK_URL\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sinks[0].resolved_url().unwrap_err(),
            "environment variable RG_TEST_UNSET_SLACK_URL (url_env) is not set"
        );
    }

    #[test]
    fn defaults_are_valid_and_send_every_source() {
        let c: Config = toml::from_str(
            r#"
[[sinks]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"
"#,
        )
        .unwrap();
        let mut p = Problems::default();
        c.validate(&mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.sinks[0].sources, SOURCES);
        assert_eq!(c.sinks[0].min_rank(), Severity::Info);
        assert_eq!(c.sinks[0].give_up_after, Duration::from_secs(900));
    }
}
