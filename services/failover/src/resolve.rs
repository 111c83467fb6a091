//! One DNS lookup, for verification: does the application's name resolve,
//! through the configured resolver, to the target region's values? A plain
//! recursive A/AAAA query over UDP (hickory-proto encodes and decodes).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use crate::error::FailoverError;

/// The addresses `name` resolves to (A and AAAA answers), sorted.
pub async fn addresses(
    resolver: SocketAddr,
    name: &str,
    record_type: &str,
    timeout: Duration,
) -> Result<Vec<String>, FailoverError> {
    let kind = match record_type {
        "AAAA" => RecordType::AAAA,
        _ => RecordType::A,
    };
    let mut fqdn =
        Name::from_ascii(name).map_err(|e| FailoverError::Dns(format!("{name}: {e}")))?;
    fqdn.set_fqdn(true);
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.metadata.id = rand_id();
    query.add_query(Query::query(fqdn, kind));
    let wire = query
        .to_vec()
        .map_err(|e| FailoverError::Dns(format!("encoding the query for {name}: {e}")))?;
    let local: SocketAddr = if resolver.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|e| FailoverError::Dns(format!("{e}")))?;
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| FailoverError::Dns(format!("a DNS socket: {e}")))?;
    socket
        .connect(resolver)
        .await
        .map_err(|e| FailoverError::Dns(format!("{resolver}: {e}")))?;
    socket
        .send(&wire)
        .await
        .map_err(|e| FailoverError::Dns(format!("{resolver}: {e}")))?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| {
                FailoverError::Dns(format!(
                    "no answer from {resolver} for {name} within {timeout:?}"
                ))
            })?
            .map_err(|e| FailoverError::Dns(format!("{resolver}: {e}")))?;
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if answer.metadata.id != query.metadata.id {
            continue; // a stray or late answer
        }
        let mut out: Vec<String> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        out.sort();
        return Ok(out);
    }
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}
