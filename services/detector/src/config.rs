//! The `[detector]` section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rg_bus::{Problems, Validate};
use rg_proto::domain::Region;
use serde::Deserialize;

use crate::anomaly::{AnomalyConfig, Mode};
use crate::engine::EngineConfig;
use crate::features::Feature;
use crate::isolation_forest::Contamination;
use rg_rounds::dependency_map::{DependencyMap, ServiceSpec};
use rg_rounds::RoundSettings;

/// The `[detector]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Regions this detector handles (several detectors can split the
    /// regions between them). Default: every region.
    pub regions: Vec<String>,
    /// Durable consumer name (one per region filter: `<durable>-<region>`).
    /// Default `detector`.
    pub durable: String,
    /// Re-notify an unresolved alert this often (`0s`: never). Default `30m`.
    #[serde(with = "humantime_serde")]
    pub renotify: Duration,
    /// Rounds in a row an endpoint must be better before its threshold
    /// alert resolves (or eases from critical to warning); a worse status
    /// fires at once. 1 resolves at the first better round. Default `2`.
    pub resolve_after: u32,
    /// JetStream KV bucket holding alert state across restarts. Default
    /// `RG_DETECTOR`.
    pub state_bucket: String,
    /// The anomaly model.
    pub anomaly: AnomalySection,
    /// Silence: a region none of whose vantages reported.
    pub silence: SilenceSection,
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:0`.
    pub metrics_listen: SocketAddr,
    /// The dependency map threshold alerts predict impact from: not a key
    /// of `[detector]`; the binary sets it from `[cascade.services]`, so
    /// both services reason from one map. Default: the shipped map.
    #[serde(skip, default = "rg_rounds::dependency_map::default_map")]
    pub dependencies: BTreeMap<String, ServiceSpec>,
    /// How rounds are judged: not keys of this section; the binary sets
    /// them from `[rounds]`, which every judge of rounds shares.
    #[serde(skip)]
    pub rounds: RoundSettings,
    /// The probers' interval: not a key of this section; the binary sets
    /// it from `[prober] interval` (the default silence is 3 of them).
    #[serde(skip, default = "default_probe_interval")]
    pub probe_interval: Duration,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(10)
}

/// `[detector.silence]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SilenceSection {
    /// Raise `rg.alerts.silence.<severity>` for a silent region. Default
    /// `true`.
    pub enabled: bool,
    /// How long a region may go without a health event from any vantage.
    /// `0s`: three probe intervals (`[prober] interval`). Default `0s`.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Regions that traffic runs in: their silence is `critical`, any
    /// other region's `high`. Default none.
    pub serving_regions: Vec<String>,
}

impl Default for SilenceSection {
    fn default() -> Self {
        Self {
            enabled: true,
            after: Duration::ZERO,
            serving_regions: Vec::new(),
        }
    }
}

/// `[detector.anomaly]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AnomalySection {
    /// Run the model. Default `true`.
    pub enabled: bool,
    /// `baseline` (fit on recent normal history) or `batch` (fit on the
    /// batch itself, as the specification says). Default `baseline`.
    pub mode: Mode,
    /// Features: success, response_time, hour, norm_latency. Default all.
    pub features: Vec<String>,
    /// Trees. Default `100`.
    pub trees: usize,
    /// Rows per tree. Default `256`.
    pub max_samples: usize,
    /// Batch mode's threshold: `"auto"` or a share in (0, 0.5]. Default
    /// `"auto"`.
    pub contamination: ContaminationConfig,
    /// Random seed. Default `42`.
    pub seed: u64,
    /// Alert when more than this share of a batch is flagged. Default `0.1`.
    pub flagged_share: f64,
    /// Baseline mode: cut-off quantile of the history's scores. Default `0.01`.
    pub baseline_quantile: f64,
    /// Baseline mode: rows of history kept. Default `20000`.
    pub history_rows: usize,
    /// Baseline mode: rows needed before alerting. Default `200`.
    pub min_history_rows: usize,
    /// Baseline mode: flagged rows needed to alert. Default `2`.
    pub min_flagged: usize,
    /// Baseline mode: significance of the flagged count. Default `0.001`.
    pub significance: f64,
    /// Baseline mode: alert when the running sum (CUSUM) of the rounds'
    /// mean-score shifts, in standard errors, exceeds this (a slow-down of
    /// everything). Default `8`.
    pub shift_limit: f64,
    /// Baseline mode: subtracted from each round's shift in that sum.
    /// Default `1`.
    pub shift_allowance: f64,
    /// Baseline mode: a value beyond the history's range by more than this
    /// many standard deviations is flagged as out of range. Default `2`.
    pub beyond_range: f64,
    /// Baseline mode: rounds a normal round waits before it joins the
    /// history (an alert meanwhile discards it). Default `3`.
    pub learn_delay: usize,
    /// The least effect worth an alert: a batch alerts only when enough
    /// of its rows (at least `min_flagged`, and more than `flagged_share`)
    /// failed or are at least this much slower than their endpoint's usual
    /// latency (the median of its recent lookups), however improbable the
    /// scores are. Keeps a busy machine or network (a few to tens of
    /// milliseconds on every lookup) quiet. `0s` turns it off. Default
    /// `100ms` (the default warning threshold: what takes an endpoint of
    /// default priority from instant to a warning).
    #[serde(with = "humantime_serde")]
    pub min_effect: Duration,
    /// Clean rounds before an anomaly alert resolves. Default `3`.
    pub resolve_after: u32,
}

/// `"auto"` or a share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContaminationConfig(pub Contamination);

impl<'de> Deserialize<'de> for ContaminationConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Share(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "auto" => Ok(Self(Contamination::Auto)),
            Raw::Share(s) => Ok(Self(Contamination::Share(s))),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?} is not \"auto\" or a share"
            ))),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rounds: RoundSettings::default(),
            regions: Vec::new(),
            durable: "detector".into(),
            renotify: Duration::from_secs(30 * 60),
            resolve_after: 2,
            state_bucket: "RG_DETECTOR".into(),
            anomaly: AnomalySection::default(),
            silence: SilenceSection::default(),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dependencies: rg_rounds::dependency_map::default_map(),
            probe_interval: default_probe_interval(),
        }
    }
}

impl Default for AnomalySection {
    fn default() -> Self {
        let d = AnomalyConfig::default();
        Self {
            enabled: true,
            mode: d.mode,
            features: d.features.iter().map(|f| f.name().to_owned()).collect(),
            trees: d.trees,
            max_samples: d.max_samples,
            contamination: ContaminationConfig(d.contamination),
            seed: d.seed,
            flagged_share: d.flagged_share,
            baseline_quantile: d.baseline_quantile,
            history_rows: d.history_rows,
            min_history_rows: d.min_history_rows,
            min_flagged: d.min_flagged,
            significance: d.significance,
            shift_limit: d.shift_limit,
            shift_allowance: d.shift_allowance,
            min_effect: Duration::from_secs_f64(d.min_effect_ms / 1000.0),
            beyond_range: d.beyond_range,
            learn_delay: d.learn_delay,
            resolve_after: 3,
        }
    }
}

impl AnomalySection {
    /// The model settings (features already validated).
    pub fn model(&self) -> AnomalyConfig {
        AnomalyConfig {
            mode: self.mode,
            features: self
                .features
                .iter()
                .filter_map(|f| Feature::parse(f))
                .collect(),
            trees: self.trees,
            max_samples: self.max_samples,
            contamination: self.contamination.0,
            seed: self.seed,
            flagged_share: self.flagged_share,
            baseline_quantile: self.baseline_quantile,
            history_rows: self.history_rows,
            min_history_rows: self.min_history_rows,
            min_flagged: self.min_flagged,
            significance: self.significance,
            shift_limit: self.shift_limit,
            shift_allowance: self.shift_allowance,
            min_effect_ms: self.min_effect.as_secs_f64() * 1000.0,
            beyond_range: self.beyond_range,
            learn_delay: self.learn_delay,
            parallel: true,
        }
    }
}

impl Config {
    /// How long a region may be silent: `silence.after`, or three probe
    /// intervals.
    pub fn silence_after(&self) -> Duration {
        if self.silence.after.is_zero() {
            self.probe_interval * 3
        } else {
            self.silence.after
        }
    }

    /// The engine settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            quorum: self.rounds.quorum,
            renotify: self.renotify,
            resolve_after: self.resolve_after,
            timing: self.rounds.timing(),
            quiet_older_than: self.rounds.quiet_older_than,
            anomaly: self.anomaly.enabled.then(|| self.anomaly.model()),
            anomaly_resolve_after: self.anomaly.resolve_after,
            // Checked where it is configured (`[cascade.services]`).
            dependencies: DependencyMap::build(&self.dependencies).ok(),
        }
    }
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        for (i, r) in self.silence.serving_regions.iter().enumerate() {
            if let Err(e) = Region::parse(r) {
                p.push(format!("silence.serving_regions[{i}]"), e.to_string());
            }
        }
        for (i, r) in self.regions.iter().enumerate() {
            if let Err(e) = Region::parse(r) {
                p.push(format!("regions[{i}]"), e.to_string());
            }
        }
        if self.durable.is_empty()
            || !self
                .durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(
                "durable",
                format!("{:?} must be letters, digits, '-' or '_'", self.durable),
            );
        }
        if self.resolve_after == 0 {
            p.push("resolve_after", "must be at least 1 round");
        }
        if self.state_bucket.is_empty()
            || !self
                .state_bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(
                "state_bucket",
                format!(
                    "{:?} must be letters, digits, '-' or '_'",
                    self.state_bucket
                ),
            );
        }
        p.section("anomaly", &self.anomaly);
    }
}

impl Validate for AnomalySection {
    fn validate(&self, p: &mut Problems) {
        if self.features.is_empty() {
            p.push("features", "at least one feature is needed");
        }
        for (i, f) in self.features.iter().enumerate() {
            if Feature::parse(f).is_none() {
                p.push(
                    format!("features[{i}]"),
                    format!("{f:?} is not one of success, response_time, hour, norm_latency"),
                );
            }
        }
        if self.trees == 0 || self.trees > 10_000 {
            p.push("trees", format!("{} is outside 1..=10000", self.trees));
        }
        if self.max_samples < 2 {
            p.push("max_samples", "must be at least 2");
        }
        if let Contamination::Share(c) = self.contamination.0 {
            if !(c > 0.0 && c <= 0.5) {
                p.push("contamination", format!("{c} is outside (0, 0.5]"));
            }
        }
        if !(self.flagged_share > 0.0 && self.flagged_share < 1.0) {
            p.push(
                "flagged_share",
                format!("{} is outside (0, 1)", self.flagged_share),
            );
        }
        if !(self.baseline_quantile > 0.0 && self.baseline_quantile < 0.5) {
            p.push(
                "baseline_quantile",
                format!("{} is outside (0, 0.5)", self.baseline_quantile),
            );
        }
        if self.history_rows < self.min_history_rows {
            p.push("history_rows", "must not be below min_history_rows");
        }
        if !(self.shift_limit > 0.0 && self.shift_limit.is_finite()) {
            p.push(
                "shift_limit",
                format!("{} must be a number > 0", self.shift_limit),
            );
        }
        if !(self.shift_allowance >= 0.0 && self.shift_allowance.is_finite()) {
            p.push(
                "shift_allowance",
                format!("{} must be a number >= 0", self.shift_allowance),
            );
        }
        if !(self.beyond_range >= 0.0 && self.beyond_range.is_finite()) {
            p.push(
                "beyond_range",
                format!("{} must be a number >= 0", self.beyond_range),
            );
        }
        if !(self.significance > 0.0 && self.significance <= 1.0) {
            p.push(
                "significance",
                format!("{} is outside (0, 1]", self.significance),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        let mut p = Problems::default();
        Config::default().validate(&mut p);
        assert!(p.is_empty(), "{:?}", p.list());
        let c = Config {
            anomaly: AnomalySection {
                features: vec!["latency".into()],
                flagged_share: 1.5,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut p = Problems::default();
        c.validate(&mut p);
        let keys: Vec<&str> = p.list().iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["anomaly.features[0]", "anomaly.flagged_share"]);
    }
}
