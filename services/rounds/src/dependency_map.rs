//! Which service depends on which, how hard, and how much each matters.
//!
//! A map is a set of services; each has a `criticality` (how much the
//! business needs it, 0 to 1) and `depends_on`: the services it needs, each
//! with a weight (0 to 1: the share of its function lost when that
//! dependency is fully down). A map is refused when a dependency names a
//! service the map does not define, or when dependencies form a cycle; the
//! error says which services.
//!
//! The default map covers the services the probers watch, plus services the
//! probers do not resolve themselves but that fail with them, grounded in
//! AWS's account of the October 2025 us-east-1 event (DynamoDB's regional
//! endpoint resolved to nothing; EC2 instance launches, whose droplet
//! manager keeps state in DynamoDB, failed; NLB health checks on the new
//! instances failed; Lambda, ECS, STS/IAM sign-in and others followed).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// One service of the map, as configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// How much the business needs it, 0 to 1.
    pub criticality: f64,
    /// The services it needs, with weights 0 to 1.
    #[serde(default)]
    pub depends_on: BTreeMap<String, f64>,
}

/// The shipped map.
pub fn default_map() -> BTreeMap<String, ServiceSpec> {
    let spec = |criticality: f64, deps: &[(&str, f64)]| ServiceSpec {
        criticality,
        depends_on: deps.iter().map(|(s, w)| ((*s).to_owned(), *w)).collect(),
    };
    BTreeMap::from([
        // Its regional endpoint is what failed in October 2025.
        ("dynamodb".to_owned(), spec(1.0, &[])),
        // Instance launches: the droplet workflow manager keeps its leases in DynamoDB.
        ("ec2".to_owned(), spec(0.9, &[("dynamodb", 0.7)])),
        // NLB health checks follow instances' network state; some state in DynamoDB.
        (
            "elasticloadbalancing".to_owned(),
            spec(0.9, &[("ec2", 0.8), ("dynamodb", 0.3)]),
        ),
        // Function metadata and event source mappings; runs on EC2 capacity.
        (
            "lambda".to_owned(),
            spec(0.8, &[("dynamodb", 0.6), ("ec2", 0.3), ("sqs", 0.3)]),
        ),
        // Instances of databases.
        ("rds".to_owned(), spec(0.8, &[("ec2", 0.6)])),
        ("s3".to_owned(), spec(0.8, &[])),
        ("sqs".to_owned(), spec(0.7, &[])),
        // Not resolved by the probers; they fail through their dependencies.
        (
            "ecs".to_owned(),
            spec(
                0.8,
                &[
                    ("ec2", 0.8),
                    ("elasticloadbalancing", 0.5),
                    ("dynamodb", 0.4),
                ],
            ),
        ),
        ("sts".to_owned(), spec(0.7, &[("dynamodb", 0.5)])),
    ])
}

/// A map that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The map is empty.
    #[error("the dependency map has no service")]
    Empty,
    /// A dependency that is not in the map.
    #[error("{service} depends on {dependency:?}, which the map does not define (add it to the map or remove the dependency)")]
    Unknown {
        /// The service.
        service: String,
        /// The missing dependency.
        dependency: String,
    },
    /// Dependencies that go round in a circle.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A weight or criticality outside 0..=1.
    #[error("{what} of {service} is {value}, outside 0..=1")]
    OutOfRange {
        /// Which number.
        what: String,
        /// The service.
        service: String,
        /// Its value.
        value: f64,
    },
}

impl MapError {
    /// The config key at fault, below the map's section.
    pub fn key(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Unknown {
                service,
                dependency,
            } => format!("{service}.depends_on.{dependency}"),
            Self::Cycle(path) => path.first().cloned().unwrap_or_default(),
            Self::OutOfRange { service, what, .. } => format!("{service}.{what}"),
        }
    }
}

/// A checked map, services in dependency order (every service after all it
/// depends on).
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyMap {
    names: Vec<String>,
    index: HashMap<String, usize>,
    criticality: Vec<f64>,
    deps: Vec<Vec<(usize, f64)>>,
}

impl DependencyMap {
    /// Checks and orders a configured map.
    pub fn build(specs: &BTreeMap<String, ServiceSpec>) -> Result<Self, MapError> {
        if specs.is_empty() {
            return Err(MapError::Empty);
        }
        let out_of_range = |v: f64| !(0.0..=1.0).contains(&v);
        for (name, spec) in specs {
            if out_of_range(spec.criticality) {
                return Err(MapError::OutOfRange {
                    what: "criticality".into(),
                    service: name.clone(),
                    value: spec.criticality,
                });
            }
            for (dep, w) in &spec.depends_on {
                if !specs.contains_key(dep) {
                    return Err(MapError::Unknown {
                        service: name.clone(),
                        dependency: dep.clone(),
                    });
                }
                if out_of_range(*w) {
                    return Err(MapError::OutOfRange {
                        what: format!("depends_on.{dep}"),
                        service: name.clone(),
                        value: *w,
                    });
                }
            }
        }
        // Depth-first topological order; a node met again while on the
        // stack closes a cycle.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnStack,
            Done,
        }
        let mut marks: BTreeMap<&str, Mark> =
            specs.keys().map(|k| (k.as_str(), Mark::New)).collect();
        let mut order: Vec<String> = Vec::new();
        fn visit<'a>(
            name: &'a str,
            specs: &'a BTreeMap<String, ServiceSpec>,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            order: &mut Vec<String>,
        ) -> Result<(), MapError> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::OnStack) => {
                    let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                    let mut path: Vec<String> =
                        stack[start..].iter().map(|s| (*s).to_owned()).collect();
                    path.push(name.to_owned());
                    return Err(MapError::Cycle(path));
                }
                _ => {}
            }
            marks.insert(name, Mark::OnStack);
            stack.push(name);
            if let Some(spec) = specs.get(name) {
                for dep in spec.depends_on.keys() {
                    visit(dep, specs, marks, stack, order)?;
                }
            }
            stack.pop();
            marks.insert(name, Mark::Done);
            order.push(name.to_owned());
            Ok(())
        }
        for name in specs.keys() {
            visit(name, specs, &mut marks, &mut Vec::new(), &mut order)?;
        }
        let index: HashMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let criticality = order.iter().map(|n| specs[n].criticality).collect();
        let deps = order
            .iter()
            .map(|n| {
                specs[n]
                    .depends_on
                    .iter()
                    .map(|(d, w)| (index[d], *w))
                    .collect()
            })
            .collect();
        Ok(Self {
            names: order,
            index,
            criticality,
            deps,
        })
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when empty (never, for a built map).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of a service.
    pub fn index_of(&self, service: &str) -> Option<usize> {
        self.index.get(service).copied()
    }

    /// The name at an index.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Criticality at an index.
    pub fn criticality(&self, i: usize) -> f64 {
        self.criticality[i]
    }

    /// Dependencies at an index: (index, weight); every index is smaller.
    pub fn deps(&self, i: usize) -> &[(usize, f64)] {
        &self.deps[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> Result<DependencyMap, MapError> {
        let specs: BTreeMap<String, ServiceSpec> = toml::from_str(text).unwrap();
        DependencyMap::build(&specs)
    }

    #[test]
    fn the_default_map_is_valid_and_ordered() {
        let m = DependencyMap::build(&default_map()).unwrap();
        for i in 0..m.len() {
            assert!(
                m.deps(i).iter().all(|(d, _)| *d < i),
                "{} before its dependencies",
                m.name(i)
            );
        }
        assert!(m.index_of("dynamodb").unwrap() < m.index_of("ec2").unwrap());
    }

    #[test]
    fn cycles_and_unknown_services_are_refused_by_name() {
        let e = map("[a]\ncriticality = 1\ndepends_on = { b = 0.5 }\n[b]\ncriticality = 1\ndepends_on = { c = 0.5 }\n[c]\ncriticality = 1\ndepends_on = { a = 1 }\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "dependency cycle: a -> b -> c -> a");
        let e = map("[lambda]\ncriticality = 1\ndepends_on = { dynamo = 0.5 }\n").unwrap_err();
        assert!(
            e.to_string().contains("lambda depends on \"dynamo\""),
            "{e}"
        );
        assert_eq!(e.key(), "lambda.depends_on.dynamo");
        let e = map("[a]\ncriticality = 2\n").unwrap_err();
        assert!(matches!(e, MapError::OutOfRange { .. }), "{e}");
        let e = map("[a]\ncriticality = 1\ndepends_on = { a = 1 }\n").unwrap_err();
        assert_eq!(e.to_string(), "dependency cycle: a -> a");
    }
}
