//! The simulated namespace: which names exist and what they resolve to.
//!
//! `<service>.<region>.<domain>` exists for every configured region and
//! service, and so does any name below it (`e7.dynamodb.us-east-1.…`, like a
//! wildcard record), so load tests can use many distinct names. Each name
//! resolves to addresses derived from a hash of the name: stable across
//! restarts, distinct between names. Any other name is NXDOMAIN.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use rg_proto::domain::{Region, ServiceName};

/// A name the zone knows: its region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The name, lowercase, without the trailing dot.
    pub name: String,
    /// Its region.
    pub region: Region,
    /// Its service.
    pub service: ServiceName,
}

/// The simulated namespace.
#[derive(Debug, Clone)]
pub struct Zone {
    regions: HashSet<String>,
    services: HashSet<String>,
    /// `.amazonaws.com`, with the leading dot.
    suffix: String,
}

impl Zone {
    /// A zone for these regions and services under `domain`.
    pub fn new(regions: &[String], services: &[String], domain: &str) -> Self {
        Self {
            regions: regions.iter().map(|r| r.to_lowercase()).collect(),
            services: services.iter().map(|s| s.to_lowercase()).collect(),
            suffix: format!(".{}", domain.trim_end_matches('.').to_lowercase()),
        }
    }

    /// Where `name` sits, or `None` when it does not exist.
    pub fn locate(&self, name: &str) -> Option<Located> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let stem = name.strip_suffix(&self.suffix)?;
        let mut labels = stem.rsplit('.');
        let region = labels.next()?;
        let service = labels.next()?;
        if !self.regions.contains(region) || !self.services.contains(service) {
            return None;
        }
        let region = Region::parse(region).ok()?;
        let service = ServiceName::parse(service).ok()?;
        Some(Located {
            name,
            region,
            service,
        })
    }

    /// The IPv4 address of a name (10.0.0.0/8, from its hash).
    pub fn ipv4(name: &str) -> Ipv4Addr {
        let h = fnv1a(name.as_bytes()).to_be_bytes();
        Ipv4Addr::new(10, h[0], h[1], h[2].max(1))
    }

    /// The IPv6 address of a name (fd00::/8, from its hash).
    pub fn ipv6(name: &str) -> Ipv6Addr {
        let h = fnv1a(name.as_bytes());
        Ipv6Addr::new(
            0xfd00,
            0x00aa,
            0,
            0,
            (h >> 48) as u16,
            (h >> 32) as u16,
            (h >> 16) as u16,
            h as u16 | 1,
        )
    }

    /// The alias target of a name (for CNAME queries).
    pub fn alias(located: &Located, domain: &str) -> String {
        format!(
            "lb-{:08x}.{}.elb.{}.",
            fnv1a(located.name.as_bytes()) as u32,
            located.region,
            domain.trim_end_matches('.')
        )
    }
}

/// 64-bit FNV-1a: a small, stable hash (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::new(
            &["us-east-1".into(), "eu-west-1".into()],
            &["dynamodb".into(), "ec2".into()],
            "amazonaws.com",
        )
    }

    #[test]
    fn regional_names_and_names_below_them_exist() {
        let z = zone();
        let d = z.locate("DynamoDB.us-east-1.amazonaws.com.").unwrap();
        assert_eq!(
            (d.region.as_str(), d.service.as_str(), d.name.as_str()),
            ("us-east-1", "dynamodb", "dynamodb.us-east-1.amazonaws.com")
        );
        assert_eq!(
            z.locate("e42.ec2.eu-west-1.amazonaws.com")
                .unwrap()
                .service
                .as_str(),
            "ec2"
        );
        for missing in [
            "s3.us-east-1.amazonaws.com",
            "dynamodb.ap-south-1.amazonaws.com",
            "us-east-1.amazonaws.com",
            "dynamodb.us-east-1.example.com",
            "amazonaws.com",
        ] {
            assert_eq!(z.locate(missing), None, "{missing}");
        }
    }

    #[test]
    fn addresses_are_stable_and_distinct() {
        let a = Zone::ipv4("dynamodb.us-east-1.amazonaws.com");
        assert_eq!(a, Zone::ipv4("dynamodb.us-east-1.amazonaws.com"));
        assert_ne!(a, Zone::ipv4("ec2.us-east-1.amazonaws.com"));
        assert_eq!(a.octets()[0], 10);
        assert_eq!(Zone::ipv6("x").segments()[0], 0xfd00);
    }
}
