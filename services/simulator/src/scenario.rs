//! Scenario files: faults scheduled over time, for drills and tests.
//!
//! ```toml
//! [[step]]
//! at = "30s"                 # after the simulator starts
//! region = "us-east-1"
//! service = "dynamodb"
//! kind = "empty-answer"      # latency, nxdomain, servfail, refused, empty-answer, timeout
//! duration = "3m"            # optional: until cleared
//!
//! [[step]]
//! at = "4m"
//! action = "clear"           # inject (default) or clear; clear matches like `fault clear`
//! region = "us-east-1"
//! ```
//!
//! ```
//! let s = rg_simulator::scenario::Scenario::parse(
//!     "[[step]]\nat = \"1s\"\nservice = \"ec2\"\nkind = \"latency\"\nlatency_ms = 150\n",
//!     "drill.toml",
//! ).unwrap();
//! assert_eq!(s.steps.len(), 1);
//! ```

use std::path::Path;
use std::time::Duration;

use rg_proto::v1::FaultSpec;
use serde::Deserialize;

use crate::faults::{parse_fault_kind, Fault};

/// A parsed scenario: steps in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Steps, sorted by `at`.
    pub steps: Vec<Step>,
}

/// One scheduled change.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from the simulator's start.
    pub at: Duration,
    /// Inject or clear.
    pub action: Action,
    /// The fault (inject) or the filter (clear).
    pub spec: FaultSpec,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Add the fault.
    #[default]
    Inject,
    /// Remove the matching faults.
    Clear,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    step: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(with = "humantime_serde")]
    at: Duration,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    region: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    name: String,
    kind: Option<String>,
    #[serde(default)]
    latency_ms: u32,
    #[serde(default)]
    jitter_ms: u32,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    #[serde(default)]
    probability: f64,
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("scenario {origin}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub origin: String,
    /// What is wrong (with the step number where it applies).
    pub message: String,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and checks scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        let fail = |message: String| ScenarioError {
            origin: origin.to_owned(),
            message,
        };
        let file: File =
            toml::from_str(text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
        let mut steps = Vec::with_capacity(file.step.len());
        for (i, s) in file.step.into_iter().enumerate() {
            let n = i + 1;
            let mut spec = FaultSpec {
                region: s.region,
                service: s.service,
                name: s.name,
                latency_ms: s.latency_ms,
                jitter_ms: s.jitter_ms,
                duration_ms: s.duration.map_or(0, |d| d.as_millis() as u64),
                probability: s.probability,
                ..Default::default()
            };
            match (s.action, s.kind) {
                (Action::Inject, None) => {
                    return Err(fail(format!("step {n}: `kind` is required to inject")))
                }
                (Action::Inject, Some(kind)) => {
                    spec.kind =
                        parse_fault_kind(&kind).map_err(|e| fail(format!("step {n}: {e}")))? as i32;
                    // Check it now, not when the step comes due.
                    Fault::from_spec(&spec, String::new(), 0, 0)
                        .map_err(|e| fail(format!("step {n}: {e}")))?;
                }
                (Action::Clear, Some(_)) => {
                    return Err(fail(format!("step {n}: `kind` has no meaning for clear")))
                }
                (Action::Clear, None) => {}
            }
            steps.push(Step {
                at: s.at,
                action: s.action,
                spec,
            });
        }
        steps.sort_by_key(|s| s.at);
        Ok(Self { steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_drill_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/scenarios/october-2025.toml"
        );
        let s = Scenario::load(Path::new(path)).unwrap();
        assert_eq!(s.steps.len(), 3);
        assert_eq!(s.steps[0].spec.service, "dynamodb");
        assert_eq!(s.steps[2].action, Action::Clear);
    }

    #[test]
    fn bad_steps_are_named() {
        let e =
            Scenario::parse("[[step]]\nat = \"1s\"\nkind = \"explode\"\n", "x.toml").unwrap_err();
        assert!(
            e.to_string().contains("step 1") && e.to_string().contains("explode"),
            "{e}"
        );
        let e =
            Scenario::parse("[[step]]\nat = \"1s\"\nkind = \"latency\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("latency_ms"), "{e}");
        let e = Scenario::parse(
            "[[step]]\nat = \"1s\"\nkind = \"timeout\"\nbogus = 1\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
