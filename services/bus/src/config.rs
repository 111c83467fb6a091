//! Configuration loading: built-in defaults, then a TOML file, then `RG_*`
//! environment variables, validated in one pass that reports every bad key.
//!
//! Layering works on the TOML tree before any typed parsing:
//!
//! 1. the file's text (or an empty document: every section has defaults);
//! 2. each environment variable `RG_<SECTION>__<KEY>[__<SUB>...]=value` sets
//!    `section.key.sub`. The value is read as a TOML value when it parses as
//!    one (`5`, `true`, `["a", "b"]`) and as a string otherwise (`10s`,
//!    `127.0.0.1:53`). Variables without `__` (`RG_CONFIG`, `RG_LOG`) are
//!    not overrides;
//! 3. the tree is deserialized into the caller's type. Unknown keys are
//!    collected (all of them, with their paths) rather than stopping at the
//!    first, and a type error names the key it happened at;
//! 4. [`Validate::validate`] checks values that types alone cannot (ranges,
//!    relations between keys), again collecting every problem.
//!
//! Parsing takes `&str` and an iterator of variables, so tests never touch
//! the process environment.
//!
//! ```
//! use rg_bus::config::{load_str, Problems, Validate};
//!
//! #[derive(serde::Deserialize, Default, Debug)]
//! #[serde(default)]
//! struct Demo { interval_s: u32 }
//! impl Validate for Demo {
//!     fn validate(&self, p: &mut Problems) {
//!         if self.interval_s == 0 { p.push("interval_s", "must be at least 1"); }
//!     }
//! }
//!
//! let env = [("RG_INTERVAL_S".to_string(), "5".to_string())];
//! let demo: Demo = load_str("interval_s = 2", "demo.toml", env).unwrap();
//! assert_eq!(demo.interval_s, 2); // no `__`: not an override
//! let err = load_str::<Demo>("interval_s = 0\nbogus = 1", "demo.toml", []).unwrap_err();
//! assert!(err.to_string().contains("bogus"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Checks a parsed config for values types cannot rule out.
pub trait Validate {
    /// Pushes one problem per bad key; never stops at the first.
    fn validate(&self, problems: &mut Problems);
}

/// One bad key: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `prober.interval`.
    pub key: String,
    /// What is wrong, e.g. "must be greater than zero".
    pub message: String,
}

/// Problems collected while validating.
#[derive(Debug, Default, Clone)]
pub struct Problems {
    prefix: Vec<String>,
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem at `key`, relative to the current section.
    pub fn push(&mut self, key: impl AsRef<str>, message: impl Into<String>) {
        let mut path = self.prefix.join(".");
        if !path.is_empty() && !key.as_ref().is_empty() {
            path.push('.');
        }
        path.push_str(key.as_ref());
        self.list.push(Problem {
            key: path,
            message: message.into(),
        });
    }

    /// Validates `inner` with every key it reports prefixed by `section`.
    pub fn section(&mut self, section: impl Into<String>, inner: &impl Validate) {
        self.prefix.push(section.into());
        inner.validate(self);
        self.prefix.pop();
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The problems recorded so far.
    pub fn list(&self) -> &[Problem] {
        &self.list
    }
}

/// The configuration could not be loaded. Display lists every problem, one
/// per line, each naming its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Syntax {
        /// The file (or "built-in defaults").
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// One or more keys are unknown or hold bad values.
    #[error("{origin}: {}", ProblemList(.problems))]
    Invalid {
        /// The file (or "built-in defaults").
        origin: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, when the error is about keys.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} invalid key{}", if n == 1 { "" } else { "s" })?;
        for p in self.0 {
            write!(f, "\n  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Loads `T` from an optional file plus environment overrides.
///
/// `path = None` means built-in defaults (plus the environment).
pub fn load_file<T>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            load_str(&text, &path.display().to_string(), env)
        }
        None => load_str("", "built-in defaults", env),
    }
}

/// Loads `T` from TOML text plus environment overrides; `origin` names the
/// text in error messages.
pub fn load_str<T>(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut tree: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
    let mut problems = Problems::default();
    apply_env(&mut tree, env, &mut problems);

    // A value of the wrong type stops deserialization at that key. To name
    // every such key in one run, the bad key is recorded, removed (so its
    // default applies) and the tree deserialized again.
    let mut type_errors = 0;
    let config = loop {
        let mut unknown = Vec::new();
        let de = toml::Value::Table(tree.clone());
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignored = serde_ignored::Deserializer::new(de, &mut on_unknown);
        let parsed: Result<T, _> = serde_path_to_error::deserialize(ignored);
        match parsed {
            Ok(config) => {
                for key in unknown {
                    // The empty TOML key (`"" = 1` at the top level) has an
                    // empty path, which would name no key: show it quoted.
                    // (Found by fuzz_tests.)
                    let key = if key.is_empty() {
                        "\"\"".to_owned()
                    } else {
                        key
                    };
                    let message = moved(&key).map_or_else(
                        || "unknown key".to_owned(),
                        |to| format!("unknown key (it moved to {to})"),
                    );
                    problems.push(key, message);
                }
                break Some(config);
            }
            Err(e) => {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                let message = e.into_inner().to_string();
                // toml repeats the key on a line of its own; it is named already.
                let message = message
                    .split("\nin `")
                    .next()
                    .unwrap_or(&message)
                    .trim()
                    .to_owned();
                type_errors += 1;
                let removed = remove_path(&mut tree, &key);
                problems.push(key, message);
                if !removed || type_errors >= 64 {
                    break None;
                }
            }
        }
    };
    match config {
        Some(config) if type_errors == 0 => {
            config.validate(&mut problems);
            if problems.is_empty() {
                Ok(config)
            } else {
                Err(ConfigError::Invalid {
                    origin: origin.to_owned(),
                    problems: problems.list,
                })
            }
        }
        Some(config) => {
            // Values checked against defaults that stand in for bad ones
            // could mislead; report only problems at other keys.
            let bad: Vec<String> = problems.list.iter().map(|p| p.key.clone()).collect();
            let mut more = Problems::default();
            config.validate(&mut more);
            for p in more.list {
                if !bad
                    .iter()
                    .any(|b| p.key.starts_with(b.as_str()) || b.starts_with(p.key.as_str()))
                {
                    problems.list.push(p);
                }
            }
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                problems: problems.list,
            })
        }
        None => Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems: problems.list,
        }),
    }
}

/// Removes the key at a serde path such as `prober.interval` or
/// `prober.resolvers[0]` (the whole list) from the tree.
fn remove_path(tree: &mut toml::Table, path: &str) -> bool {
    let segments: Vec<&str> = path
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for seg in parents {
        node = match node.get_mut(*seg) {
            Some(toml::Value::Table(t)) => t,
            _ => return false,
        };
    }
    node.remove(*last).is_some()
}

/// Applies `RG_A__B__C=value` overrides to the tree.
fn apply_env<I>(tree: &mut toml::Table, env: I, problems: &mut Problems)
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("RG_") && k.contains("__"))
        .collect();
    // Deterministic order, so that the outcome never depends on how the
    // process environment happens to be laid out.
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name["RG_".len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            problems.push(&name, "environment override has an empty path segment");
            continue;
        }
        let value = parse_env_value(&raw);
        if let Err(message) = set_path(tree, &path, value) {
            problems.push(path.join("."), format!("cannot apply {name}: {message}"));
        }
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut node = tree;
    for seg in parents {
        let entry = node
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("`{seg}` is not a section")),
        };
    }
    node.insert(last.clone(), value);
    Ok(())
}

/// Where a key that moved now lives: the round settings the detector and
/// the cascade service each had are the shared `[rounds]` section.
fn moved(key: &str) -> Option<String> {
    const ROUNDS: [&str; 7] = [
        "quorum",
        "settle",
        "round_timeout",
        "confirmed_wait",
        "quiet_older_than",
        "start_lookback",
        "max_pending",
    ];
    let (section, name) = key.split_once('.')?;
    (matches!(section, "detector" | "cascade") && ROUNDS.contains(&name))
        .then(|| format!("rounds.{name}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_round_setting_under_detector_or_cascade_says_where_it_moved() {
        assert_eq!(
            super::moved("detector.settle").as_deref(),
            Some("rounds.settle")
        );
        assert_eq!(
            super::moved("cascade.quorum").as_deref(),
            Some("rounds.quorum")
        );
        assert_eq!(super::moved("prober.settle"), None);
        assert_eq!(super::moved("detector.renotify"), None);
    }

    use std::time::Duration;

    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(default)]
    struct Section {
        #[serde(with = "humantime_serde")]
        interval: Duration,
        resolvers: Vec<String>,
        enabled: bool,
    }

    impl Default for Section {
        fn default() -> Self {
            Self {
                interval: Duration::from_secs(10),
                resolvers: vec!["system".into()],
                enabled: true,
            }
        }
    }

    impl Validate for Section {
        fn validate(&self, p: &mut Problems) {
            if self.interval.is_zero() {
                p.push("interval", "must be greater than zero");
            }
            for (i, r) in self.resolvers.iter().enumerate() {
                if r != "system" && r.parse::<std::net::SocketAddr>().is_err() {
                    p.push(
                        format!("resolvers[{i}]"),
                        format!("{r:?} is not ip:port or \"system\""),
                    );
                }
            }
        }
    }

    #[derive(Debug, serde::Deserialize, Default, PartialEq)]
    #[serde(default)]
    struct Root {
        prober: Section,
    }

    impl Validate for Root {
        fn validate(&self, p: &mut Problems) {
            p.section("prober", &self.prober);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_text_gives_the_built_in_defaults() {
        let root: Root = load_str("", "t", []).unwrap();
        assert_eq!(root, Root::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let root: Root = load_str(
            "[prober]\ninterval = \"10s\"",
            "t",
            env(&[
                ("RG_PROBER__INTERVAL", "5s"),
                ("RG_PROBER__ENABLED", "false"),
                ("RG_PROBER__RESOLVERS", r#"["127.0.0.1:53", "system"]"#),
                ("RG_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(root.prober.interval, Duration::from_secs(5));
        assert!(!root.prober.enabled);
        assert_eq!(root.prober.resolvers, ["127.0.0.1:53", "system"]);
    }

    #[test]
    fn every_unknown_key_is_named() {
        let err =
            load_str::<Root>("bogus = 1\n[prober]\nintervall = \"1s\"", "f.toml", []).unwrap_err();
        let keys: Vec<_> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"bogus"), "{err}");
        assert!(keys.contains(&"prober.intervall"), "{err}");
        assert!(
            err.to_string().starts_with("f.toml: 2 invalid keys"),
            "{err}"
        );
    }

    #[test]
    fn every_value_of_the_wrong_type_is_named() {
        let err = load_str::<Root>(
            "[prober]\ninterval = \"-5s\"\nresolvers = [\"nope\"]\nenabled = \"yes\"\n",
            "f.toml",
            [],
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["prober.enabled", "prober.interval", "prober.resolvers[0]"],
            "{err}"
        );
        assert!(!err.to_string().contains("\nin `"), "{err}");
    }

    #[test]
    fn a_negative_interval_is_refused_with_its_key() {
        let err = load_str::<Root>("[prober]\ninterval = \"-5s\"", "f.toml", []).unwrap_err();
        assert_eq!(err.problems()[0].key, "prober.interval", "{err}");
    }

    #[test]
    fn validation_reports_every_bad_value() {
        let err = load_str::<Root>(
            "[prober]\ninterval = \"0s\"\nresolvers = [\"1.2.3.4\", \"system\", \"nope\"]",
            "f.toml",
            [],
        )
        .unwrap_err();
        let keys: Vec<_> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "prober.interval",
                "prober.resolvers[0]",
                "prober.resolvers[2]"
            ],
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let err = load_str::<Root>("[prober\n", "bad.toml", []).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.toml is not valid TOML"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn an_override_into_a_scalar_is_reported() {
        let err = load_str::<Root>("", "t", env(&[("RG_PROBER__ENABLED__X", "1")])).unwrap_err();
        assert!(err.to_string().contains("prober.enabled"), "{err}");
    }
}

#[cfg(test)]
mod fuzz_tests;
