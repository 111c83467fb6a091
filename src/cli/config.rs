//! The whole configuration file: one section per service plus `[nats]`.
//! See `deploy/config/regionguard.toml` for a documented example.

use rg_bus::{NatsConfig, Problems, Validate};
use serde::Deserialize;

/// The regionguard configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Config {
    /// `[nats]`: the bus.
    pub(crate) nats: NatsConfig,
    /// `[prober]`.
    pub(crate) prober: rg_prober::Config,
    /// `[simulator]`.
    pub(crate) simulator: rg_simulator::Config,
    /// `[rounds]`: how the detector and the cascade service judge rounds,
    /// and the gateway's quorum.
    pub(crate) rounds: rg_rounds::RoundSettings,
    /// `[detector]`.
    pub(crate) detector: rg_detector::Config,
    /// `[cascade]`.
    pub(crate) cascade: rg_cascade::Config,
    /// `[gateway]`.
    pub(crate) gateway: rg_gateway::Config,
    /// `[failover]`.
    pub(crate) failover: rg_failover::Config,
    /// `[notifier]`.
    pub(crate) notifier: rg_notifier::Config,
}

impl Validate for Config {
    fn validate(&self, p: &mut Problems) {
        p.section("nats", &self.nats);
        p.section("prober", &self.prober);
        p.section("simulator", &self.simulator);
        p.section("rounds", &self.rounds);
        p.section("detector", &self.detector);
        p.section("cascade", &self.cascade);
        p.section("gateway", &self.gateway);
        p.section("failover", &self.failover);
        p.section("notifier", &self.notifier);
    }
}

#[cfg(test)]
mod tests {
    //! Every key the configuration file takes is in the documented
    //! example, `deploy/config/regionguard.toml`.
    //!
    //! The keys come from the types themselves: a deserializer that
    //! answers every struct with the names of its fields (serde hands them
    //! over) and records them. A field that is not a struct (a number, a
    //! duration, a list, a map of user-named entries) is a leaf: its
    //! deserializer fails, the leaf is noted, and the walk starts again
    //! without it, until the walk completes.

    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::rc::Rc;

    use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
    use serde::Deserialize;

    #[derive(Default)]
    struct Walk {
        keys: BTreeSet<String>,
        leaves: BTreeSet<String>,
        failed_at: Option<String>,
    }

    #[derive(Debug)]
    struct Leaf;
    impl std::fmt::Display for Leaf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a leaf")
        }
    }
    impl std::error::Error for Leaf {}
    impl de::Error for Leaf {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Leaf
        }
    }

    struct Keys {
        path: String,
        walk: Rc<RefCell<Walk>>,
    }

    impl Keys {
        fn leaf<T>(self) -> Result<T, Leaf> {
            self.walk.borrow_mut().failed_at = Some(self.path);
            Err(Leaf)
        }
    }

    macro_rules! leaves {
        ($($m:ident)*) => {$(
            fn $m<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Leaf> {
                self.leaf()
            }
        )*};
    }

    impl<'de> de::Deserializer<'de> for Keys {
        type Error = Leaf;
        leaves!(deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
            deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
            deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
            deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_seq
            deserialize_map deserialize_identifier deserialize_ignored_any);

        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Leaf> {
            v.visit_some(self)
        }
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: V,
        ) -> Result<V::Value, Leaf> {
            self.leaf()
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: V,
        ) -> Result<V::Value, Leaf> {
            self.leaf()
        }
        fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Leaf> {
            self.leaf()
        }
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: usize,
            _: V,
        ) -> Result<V::Value, Leaf> {
            self.leaf()
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Leaf> {
            self.leaf()
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Leaf> {
            let join = |f: &str| {
                if self.path.is_empty() {
                    f.to_owned()
                } else {
                    format!("{}.{f}", self.path)
                }
            };
            let mut todo = Vec::new();
            {
                let mut walk = self.walk.borrow_mut();
                for f in fields {
                    let key = join(f);
                    walk.keys.insert(key.clone());
                    if !walk.leaves.contains(&key) {
                        todo.push((*f, key));
                    }
                }
            }
            let walked = v.visit_map(Fields {
                todo: todo.into_iter(),
                next: None,
                walk: self.walk.clone(),
            });
            // A struct that fails by itself (a required field its walk
            // skipped) is a leaf too: its keys are recorded.
            let mut walk = self.walk.borrow_mut();
            if walked.is_err() && walk.failed_at.is_none() && !self.path.is_empty() {
                walk.failed_at = Some(self.path);
            }
            walked
        }
    }

    struct Fields {
        todo: std::vec::IntoIter<(&'static str, String)>,
        next: Option<String>,
        walk: Rc<RefCell<Walk>>,
    }

    impl<'de> MapAccess<'de> for Fields {
        type Error = Leaf;
        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Leaf> {
            let Some((name, path)) = self.todo.next() else {
                return Ok(None);
            };
            self.next = Some(path);
            seed.deserialize(de::value::BorrowedStrDeserializer::new(name))
                .map(Some)
        }
        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Leaf> {
            seed.deserialize(Keys {
                path: self.next.take().unwrap_or_default(),
                walk: self.walk.clone(),
            })
        }
    }

    /// Every key of [`super::Config`], dotted.
    fn config_keys() -> BTreeSet<String> {
        let walk = Rc::new(RefCell::new(Walk::default()));
        for _ in 0..10_000 {
            let done = super::Config::deserialize(Keys {
                path: String::new(),
                walk: walk.clone(),
            });
            let mut w = walk.borrow_mut();
            match (done, w.failed_at.take()) {
                (Ok(_), _) => return std::mem::take(&mut w.keys),
                (Err(_), Some(leaf)) => {
                    w.leaves.insert(leaf);
                }
                (Err(_), None) => panic!("the walk failed outside a leaf"),
            }
        }
        panic!("the walk did not end");
    }

    /// Every dotted key of a TOML table, tables included.
    fn toml_keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(key.clone());
            match v {
                toml::Value::Table(t) => toml_keys(&key, t, out),
                toml::Value::Array(items) => {
                    for item in items {
                        if let toml::Value::Table(t) = item {
                            toml_keys(&key, t, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn every_key_of_the_config_is_in_the_documented_example() {
        let keys = config_keys();
        assert!(keys.contains("prober.interval"), "the walk found {keys:?}");
        assert!(keys.contains("detector.anomaly.min_effect"));
        assert!(keys.contains("rounds.quorum"));
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/config/regionguard.toml"
        );
        let text = std::fs::read_to_string(path).expect("the example config");
        let table: toml::Table = toml::from_str(&text).expect("the example is TOML");
        let mut documented = BTreeSet::new();
        toml_keys("", &table, &mut documented);
        // Keys shown commented out (optional ones without a default
        // value, or examples of user-named entries) count as documented:
        // `# key = ...` under their table, whether the table's header is
        // commented too or not.
        let mut table_name = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            let uncommented = t.trim_start_matches('#').trim_start();
            let header = uncommented
                .strip_prefix("[[")
                .and_then(|h| h.split_once("]]"))
                .or_else(|| {
                    uncommented
                        .strip_prefix('[')
                        .and_then(|h| h.split_once(']'))
                });
            if let Some((name, _)) = header {
                table_name = name.trim().to_owned();
                // `[a.b.c]` documents `a`, `a.b` and `a.b.c`.
                let mut prefix = String::new();
                for part in table_name.split('.') {
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(part);
                    documented.insert(prefix.clone());
                }
                continue;
            }
            if !t.starts_with('#') {
                continue;
            }
            if let Some((key, _)) = uncommented.split_once(" = ") {
                let key = key.trim();
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    documented.insert(if table_name.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{table_name}.{key}")
                    });
                }
            }
        }
        let missing: Vec<&String> = keys.iter().filter(|k| !documented.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "keys missing from deploy/config/regionguard.toml: {missing:?}"
        );
    }
}
