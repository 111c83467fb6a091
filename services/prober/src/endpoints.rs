//! The endpoints a prober instance looks up: generated from services ×
//! region (`<service>.<region>.<domain>`, plus `e<i>.` names for load
//! tests) and the explicit `[[prober.endpoints]]`.

use std::collections::HashSet;

use rg_proto::domain::{Priority, Region, ServiceName};

use crate::config::Config;

/// One name to look up, with what it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The DNS name, lowercase, without a trailing dot.
    pub name: String,
    /// Its service.
    pub service: ServiceName,
    /// Its region (the prober's, for endpoints configured without one).
    pub region: Region,
    /// Selects the thresholds.
    pub priority: Priority,
}

/// Checks that `name` is a DNS name a query can carry.
pub fn check_name(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(format!("{name:?} is not a DNS name (1 to 253 characters)"));
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!("{name:?} is not a DNS name (label {label:?})"));
        }
    }
    Ok(())
}

/// The endpoints of `region`, in probing order, without duplicates.
pub fn build(config: &Config, region: &Region) -> Result<Vec<Endpoint>, String> {
    let domain = config.domain.trim_end_matches('.').to_lowercase();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |e: Endpoint| {
        if seen.insert(e.name.clone()) {
            out.push(e);
        }
    };
    for service in &config.services {
        let service_name = ServiceName::parse(service).map_err(|e| e.to_string())?;
        let priority = config.priority_of(service);
        let base = format!("{service}.{region}.{domain}");
        push(Endpoint {
            name: base.clone(),
            service: service_name.clone(),
            region: region.clone(),
            priority,
        });
        for i in 1..=config.extra_endpoints_per_service {
            push(Endpoint {
                name: format!("e{i}.{base}"),
                service: service_name.clone(),
                region: region.clone(),
                priority,
            });
        }
    }
    for e in &config.endpoints {
        let endpoint_region = match &e.region {
            Some(r) => Region::parse(r).map_err(|err| err.to_string())?,
            None => region.clone(),
        };
        if &endpoint_region != region {
            continue;
        }
        check_name(&e.name)?;
        push(Endpoint {
            name: e.name.trim_end_matches('.').to_lowercase(),
            service: ServiceName::parse(&e.service).map_err(|err| err.to_string())?,
            region: endpoint_region,
            priority: e.priority.unwrap_or_else(|| config.priority_of(&e.service)),
        });
    }
    if out.is_empty() {
        return Err(format!("no endpoint to probe in {region}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EndpointConfig;

    #[test]
    fn generated_and_explicit_endpoints() {
        let config = Config {
            services: vec!["dynamodb".into(), "ec2".into()],
            extra_endpoints_per_service: 2,
            endpoints: vec![
                EndpointConfig {
                    name: "API.Example.com.".into(),
                    service: "elasticloadbalancing".into(),
                    region: None,
                    priority: Some(Priority::Critical),
                },
                EndpointConfig {
                    name: "x.eu-west-1.example".into(),
                    service: "s3".into(),
                    region: Some("eu-west-1".into()),
                    priority: None,
                },
                EndpointConfig {
                    name: "dynamodb.us-east-1.amazonaws.com".into(),
                    service: "dynamodb".into(),
                    region: None,
                    priority: None,
                },
            ],
            ..Default::default()
        };
        let region = Region::parse("us-east-1").unwrap();
        let eps = build(&config, &region).unwrap();
        let names: Vec<&str> = eps.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dynamodb.us-east-1.amazonaws.com",
                "e1.dynamodb.us-east-1.amazonaws.com",
                "e2.dynamodb.us-east-1.amazonaws.com",
                "ec2.us-east-1.amazonaws.com",
                "e1.ec2.us-east-1.amazonaws.com",
                "e2.ec2.us-east-1.amazonaws.com",
                "api.example.com",
            ]
        );
        assert_eq!(eps[0].priority, Priority::Critical);
        assert_eq!(eps[3].priority, Priority::Default);
        assert_eq!(eps[6].priority, Priority::Critical);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("dynamodb.us-east-1.amazonaws.com").is_ok());
        assert!(check_name("a..b").is_err());
        assert!(check_name("has space.com").is_err());
        assert!(check_name("").is_err());
    }
}
