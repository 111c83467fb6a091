//! Bad-input fuzzing of the config loader (proptest), through the bus's own
//! `[nats]` section: arbitrary text, TOML documents built from the real
//! section and key names with wrong, extreme and odd values, and arbitrary
//! `RG_*` environment overrides.
//!
//! Whatever the input, [`load_str`] returns a config that validates, or an
//! error that names every bad key: never a panic, never a hang (each case
//! runs under a deadline on its own thread). The case counts keep this to a
//! few seconds in a debug build; for a longer run set `PROPTEST_CASES`,
//! e.g. `PROPTEST_CASES=100000 cargo test -p rg-bus fuzz`.

use std::time::Duration;

use proptest::prelude::*;
use rg_testkit::fuzz::{config as fuzz_config, within};

use super::*;
use crate::connect::NatsConfig;
use crate::subjects::Stream;

/// How long one case may take on a loaded CI machine in a debug build.
/// Cases take about a millisecond: this only catches hangs.
const CASE_LIMIT: Duration = Duration::from_secs(1);

/// Runs `f` on a thread of its own and fails when it takes longer than
/// [`CASE_LIMIT`]; a panic in `f` is passed on as it is.
fn within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(CASE_LIMIT, f)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Root {
    nats: NatsConfig,
}

impl Validate for Root {
    fn validate(&self, p: &mut Problems) {
        p.section("nats", &self.nats);
    }
}

/// Loads `text` and `env` and checks the outcome: a config that validates
/// and whose derived values can be computed, or an error naming every bad
/// key. Returns the outcome's `Debug` form, to compare runs.
fn load_and_check(text: String, env: Vec<(String, String)>) -> String {
    within_limit(move || {
        let result = load_str::<Root>(&text, "fuzz.toml", env);
        match &result {
            Ok(root) => {
                let mut again = Problems::default();
                root.validate(&mut again);
                assert!(again.is_empty(), "a loaded config is valid: {again:?}");
                let nats = &root.nats;
                assert!(!nats.servers_for_log().is_empty());
                assert!(nats.server_addrs().is_ok());
                let subjects = nats.subjects();
                assert!(!subjects.stream(Stream::Health).is_empty());
            }
            Err(e) => check_error(e),
        }
        format!("{result:?}")
    })
}

fn check_error(e: &ConfigError) {
    let text = e.to_string();
    match e {
        ConfigError::Syntax { message, .. } => {
            assert!(text.starts_with("fuzz.toml is not valid TOML"), "{text}");
            assert!(!message.is_empty(), "{text}");
        }
        ConfigError::Invalid { problems, .. } => {
            assert!(!problems.is_empty(), "an invalid config names a problem");
            for p in problems {
                assert!(!p.key.is_empty(), "a problem without a key: {text}");
                assert!(!p.message.is_empty(), "a problem without a message: {text}");
                assert!(text.contains(&format!("\n  {}: ", p.key)), "{text}");
            }
        }
        ConfigError::Read { .. } => panic!("load_str reads no file: {text}"),
    }
}

// === a grammar of config documents ===

const SECTIONS: &[&str] = &[
    "[nats]",
    "[nats.tls]",
    "[nats.streams]",
    "[prober]",
    "[detector]",
    "[bogus]",
    "[nats.streams.extra]",
    "[[nats]]",
    "[[nats.servers]]",
    "[nats.servers]",
    "[ nats . tls ]",
    "[\"nats\"]",
    "[nats]]",
    "[]",
];

const KEYS: &[&str] = &[
    "servers",
    "prefix",
    "user",
    "password",
    "token",
    "credentials_file",
    "connect_timeout",
    "request_timeout",
    "tls",
    "streams",
    "required",
    "ca_file",
    "cert_file",
    "key_file",
    "replicas",
    "storage",
    "health_max_age",
    "alerts_max_age",
    "decisions_max_age",
    "deadletter_max_age",
    "duplicate_window",
    "tls.required",
    "tls.ca_file",
    "streams.replicas",
    "streams.storage",
    "nats.prefix",
    "nats.streams.duplicate_window",
    "bogus",
    "Servers",
    "\"quoted key\"",
    "\"\"",
    "a.b.c.d.e",
];

/// Durations and other strings that config values are made of.
const WORDS: &[&str] = &[
    "5s",
    "0s",
    "-1s",
    "1ms",
    "250us",
    "1h 30m",
    "90d",
    "1 day",
    "1y",
    "584942417355y",
    "18446744073709551615s",
    "99999999999999999999999s",
    "1.5s",
    "s",
    "",
    " ",
    "file",
    "memory",
    "MEMORY",
    "nats://127.0.0.1:4222",
    "nats://u:p@h:4222,nats://h2:4222",
    "tls://h:4222",
    "nats://[::1]:4222",
    "://@",
    "nats://é@ü:1",
    ",,,",
    "rg",
    "rg.x",
    "r*",
    "/dev/null",
    "/nonexistent/file",
    "\u{0}",
];

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML value: of every type, extreme numbers, durations right and wrong.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "5",
            "6",
            "65536",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551616",
            "1e400",
            "nan",
            "-inf",
            "+inf",
            "1.5",
            "-0.0",
            "0x10",
            "0o7",
            "1_000",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
        ])
        .prop_map(str::to_owned),
        any::<f64>().prop_map(|v| toml::Value::Float(v).to_string()),
        prop::sample::select(WORDS).prop_map(quoted),
        any::<String>().prop_map(|s| quoted(&s)),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

/// Values that fit `key` (so that some documents load), as TOML.
fn plausible(key: &'static str) -> Vec<String> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let values: &[&str] = match last {
        "servers" => &[
            "\"nats://127.0.0.1:4222\"",
            "[\"nats://a:1\", \"tls://b:2\"]",
            "\"nats://a:1, nats://b:2\"",
            "[]",
        ],
        "prefix" => &["\"rg\"", "\"my-app_2\""],
        "user" | "password" | "token" => &["\"x\""],
        "credentials_file" | "ca_file" | "cert_file" | "key_file" => &[
            concat!("\"", env!("CARGO_MANIFEST_DIR"), "/Cargo.toml\""),
            "\"/nonexistent\"",
        ],
        "required" => &["true", "false"],
        "replicas" => &["1", "3", "5"],
        "storage" => &["\"file\"", "\"memory\""],
        _ => &["\"5s\"", "\"1h\"", "\"90d\"", "\"250ms\""],
    };
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// `key = value`, the value fitting the key half the time.
fn key_value() -> impl Strategy<Value = (&'static str, String)> {
    prop::sample::select(KEYS).prop_flat_map(|key| {
        (
            Just(key),
            prop_oneof![prop::sample::select(plausible(key)), toml_value()],
        )
    })
}

/// A line of a config file: section headers, `key = value`, comments and
/// the odd broken line.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(SECTIONS).prop_map(str::to_owned),
        6 => key_value().prop_map(|(k, v)| format!("{k} = {v}")),
        1 => Just("# comment".to_owned()),
        1 => Just(String::new()),
        1 => "[ -~]{0,20}",
    ]
}

/// A document: mostly sections with distinct keys (TOML that parses, so
/// that typed parsing and validation are reached), sometimes free lines.
fn document() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        4 => prop::sample::select(&SECTIONS[..7]),
        1 => prop::sample::select(SECTIONS),
    ];
    let section = (header, prop::collection::vec(key_value(), 0..6)).prop_map(|(header, kvs)| {
        let kvs: std::collections::BTreeMap<_, _> = kvs.into_iter().collect();
        let mut text = format!("{header}\n");
        for (k, v) in kvs {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text
    });
    prop_oneof![
        3 => prop::collection::vec(section, 0..4).prop_map(|mut sections| {
            // A table defined twice is a syntax error: keep the first.
            let mut seen = std::collections::BTreeSet::new();
            sections.retain(|s| seen.insert(s.lines().next().map(str::to_owned)));
            sections.concat()
        }),
        1 => prop::collection::vec(line(), 0..24).prop_map(|lines| lines.join("\n")),
    ]
}

/// `RG_*` variables: overrides of real keys, malformed paths, and names
/// that are not overrides at all.
fn env_pair() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(|k| format!(
            "RG_NATS__{}",
            k.replace('.', "__").to_uppercase()
        )),
        1 => prop::sample::select(vec![
            "RG_NATS__TLS__REQUIRED",
            "RG_NATS__STREAMS__REPLICAS",
            "RG_NATS__STREAMS__STORAGE",
            "RG_NATS__SERVERS__0",
            "RG_NATS__PREFIX__X",
            "RG_NATS",
            "RG_NATS__",
            "RG___X",
            "RG_NATS____PREFIX",
            "RG_NATS__é",
            "RG_BOGUS__KEY",
            "RG_LOG",
            "RG_CONFIG",
            "HOME",
        ])
        .prop_map(str::to_owned),
        1 => "RG_[A-Za-z_]{0,16}",
    ];
    let value = prop_oneof![
        3 => toml_value(),
        3 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    (name, value)
}

/// Found by `config_documents_load_or_name_every_bad_key`: the empty key
/// used to be reported with an empty name.
#[test]
fn an_unknown_empty_key_is_named() {
    let err = load_str::<Root>("\"\" = 0", "f.toml", []).unwrap_err();
    assert_eq!(err.problems()[0].key, "\"\"", "{err}");
    assert!(err.to_string().contains("\n  \"\": unknown key"), "{err}");
}

proptest! {
    #![proptest_config(fuzz_config(512))]

    /// Text that is mostly not TOML at all.
    #[test]
    fn arbitrary_text_loads_or_names_the_problem(text in any::<String>()) {
        load_and_check(text, Vec::new());
    }

    /// Documents of real and bogus sections and keys with values of every
    /// type: each is a valid config or an error naming every bad key.
    #[test]
    fn config_documents_load_or_name_every_bad_key(text in document()) {
        load_and_check(text, Vec::new());
    }

    /// Environment overrides on top of a document.
    #[test]
    fn environment_overrides_load_or_name_every_bad_key(
        text in document(),
        env in prop::collection::vec(env_pair(), 0..8),
    ) {
        load_and_check(text, env);
    }

    /// The order of the environment never changes the outcome.
    #[test]
    fn environment_order_never_changes_the_outcome(
        text in document(),
        (env, shuffled) in prop::collection::vec(env_pair(), 0..8)
            .prop_flat_map(|env| (Just(env.clone()), Just(env).prop_shuffle())),
    ) {
        let first = load_and_check(text.clone(), env);
        let second = load_and_check(text, shuffled);
        prop_assert_eq!(first, second);
    }

    /// Override values are read as TOML when they parse as TOML, and as
    /// strings otherwise: either way, a value and never a panic.
    #[test]
    fn any_override_value_is_read_as_a_value(raw in prop_oneof![any::<String>(), toml_value()]) {
        let value = parse_env_value(&raw);
        if let toml::Value::String(s) = &value {
            // Unparsable text stays exactly as given.
            if format!("v = {raw}").parse::<toml::Table>().is_err() {
                prop_assert_eq!(s, &raw);
            }
        }
    }
}
