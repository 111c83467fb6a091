//! DNS lookups over UDP with the prober's own client: every lookup is a
//! real round trip to the resolver. There is no cache and no reuse of an
//! earlier answer.
//!
//! A [`LookupEngine`] talks to one resolver over a few *connected* UDP
//! sockets (each its own source port; the kernel drops datagrams from any
//! other address). Each socket has one receive task that stamps the arrival
//! time the moment a datagram is read and hands it to the lookup waiting on
//! that query id, after checking that the answer's question is the one
//! asked. The lookup time is therefore "query sent" to "answer read",
//! independent of how soon the waiting task is scheduled, which is what
//! makes it comparable with dnsperf's latency.
//!
//! Queries are encoded once per name ([`PreparedQuery`]); each lookup only
//! writes a fresh id into a copy.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rg_proto::domain::LookupError;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::telemetry;

/// The record type a prober asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryKind {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// An alias.
    Cname,
}

impl QueryKind {
    /// Parses `a`, `aaaa` or `cname` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Some(Self::A),
            "aaaa" => Some(Self::Aaaa),
            "cname" => Some(Self::Cname),
            _ => None,
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Cname => RecordType::CNAME,
        }
    }

    /// The wire enum.
    pub fn to_wire(self) -> rg_proto::v1::QueryType {
        match self {
            Self::A => rg_proto::v1::QueryType::A,
            Self::Aaaa => rg_proto::v1::QueryType::Aaaa,
            Self::Cname => rg_proto::v1::QueryType::Cname,
        }
    }
}

/// A query encoded once; [`LookupEngine::lookup`] copies it and sets the id.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    wire: Bytes,
    kind: QueryKind,
}

/// The name cannot be put in a query.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot encode a DNS query for {name:?}: {reason}")]
pub struct EncodeError {
    /// The name.
    pub name: String,
    /// Why.
    pub reason: String,
}

impl PreparedQuery {
    /// Encodes a recursive query for `name` and `kind`.
    pub fn new(name: &str, kind: QueryKind) -> Result<Self, EncodeError> {
        let fail = |reason: String| EncodeError {
            name: name.to_owned(),
            reason,
        };
        let mut fqdn = Name::from_ascii(name).map_err(|e| fail(e.to_string()))?;
        fqdn.set_fqdn(true);
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(fqdn, kind.record_type()));
        let wire = message.to_vec().map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            wire: Bytes::from(wire),
            kind,
        })
    }

    /// The question section (everything after the 12-byte header).
    fn question(&self) -> Bytes {
        self.wire.slice(HEADER_LEN..)
    }
}

const HEADER_LEN: usize = 12;

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupOutcome {
    /// When the query was sent, unix ms.
    pub sent_at_unix_ms: i64,
    /// Query sent to answer read; the timeout itself for a timeout.
    pub response_time: Duration,
    /// The response code (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED);
    /// 0 when there was no answer.
    pub rcode: u16,
    /// Why it failed; `None` on success.
    pub error: Option<LookupError>,
    /// Answer records of the queried type, as text, in answer order.
    pub answers: Vec<String>,
    /// For I/O failures: what happened.
    pub detail: Option<String>,
}

impl LookupOutcome {
    fn failed(
        sent_at_unix_ms: i64,
        response_time: Duration,
        error: LookupError,
        detail: String,
    ) -> Self {
        Self {
            sent_at_unix_ms,
            response_time,
            rcode: 0,
            error: Some(error),
            answers: Vec::new(),
            detail: Some(detail),
        }
    }
}

/// What the receive task hands to a waiting lookup.
enum Reply {
    /// The answer's bytes and when they were read.
    Answer(Vec<u8>, Instant),
    /// The socket reported an error for the resolver (e.g. ICMP port
    /// unreachable: nothing listens there).
    Failed(io::ErrorKind),
}

struct Waiter {
    question: Bytes,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct InFlight {
    next_id: u16,
    waiting: HashMap<u16, Waiter>,
}

/// One connected socket with its receive task.
struct Channel {
    socket: Arc<UdpSocket>,
    // A std Mutex: held only to insert or remove one entry, never across an
    // await, and cheaper than tokio's for that.
    in_flight: Arc<Mutex<InFlight>>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// Sends lookups to one resolver and times them.
pub struct LookupEngine {
    resolver: SocketAddr,
    channels: Vec<Channel>,
    next: AtomicUsize,
}

impl std::fmt::Debug for LookupEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupEngine")
            .field("resolver", &self.resolver)
            .field("sockets", &self.channels.len())
            .finish()
    }
}

fn lock(m: &Mutex<InFlight>) -> std::sync::MutexGuard<'_, InFlight> {
    // A panic while holding this lock cannot leave the map inconsistent
    // (single insert/remove), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LookupEngine {
    /// Opens `sockets` UDP sockets connected to `resolver`.
    pub async fn new(resolver: SocketAddr, sockets: usize) -> io::Result<Self> {
        let mut channels = Vec::with_capacity(sockets.max(1));
        for _ in 0..sockets.max(1) {
            let local: SocketAddr = if resolver.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(resolver).await?;
            let socket = Arc::new(socket);
            let in_flight = Arc::new(Mutex::new(InFlight {
                next_id: rand::random(),
                waiting: HashMap::new(),
            }));
            let receiver = tokio::spawn(receive(socket.clone(), in_flight.clone(), resolver));
            channels.push(Channel {
                socket,
                in_flight,
                receiver,
            });
        }
        Ok(Self {
            resolver,
            channels,
            next: AtomicUsize::new(0),
        })
    }

    /// The resolver asked.
    pub fn resolver(&self) -> SocketAddr {
        self.resolver
    }

    /// Looks `query` up once, waiting at most `timeout` for the answer.
    pub async fn lookup(&self, query: &PreparedQuery, timeout: Duration) -> LookupOutcome {
        let channel =
            &self.channels[self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()];
        let (tx, rx) = oneshot::channel();
        let sent_at_unix_ms = unix_ms();
        let Some(id) = register(
            &channel.in_flight,
            Waiter {
                question: query.question(),
                reply: tx,
            },
        ) else {
            return LookupOutcome::failed(
                sent_at_unix_ms,
                Duration::ZERO,
                LookupError::Io,
                "65536 lookups in flight on one socket".into(),
            );
        };
        let mut wire = query.wire.to_vec();
        wire[..2].copy_from_slice(&id.to_be_bytes());
        let sent = Instant::now();
        if let Err(e) = channel.socket.send(&wire).await {
            forget(&channel.in_flight, id);
            return LookupOutcome::failed(
                sent_at_unix_ms,
                sent.elapsed(),
                LookupError::Io,
                format!("sending to {}: {e}", self.resolver),
            );
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Reply::Answer(bytes, at))) => parse(
                &bytes,
                query.kind,
                sent_at_unix_ms,
                at.saturating_duration_since(sent),
            ),
            Ok(Ok(Reply::Failed(kind))) => LookupOutcome::failed(
                sent_at_unix_ms,
                sent.elapsed(),
                LookupError::Io,
                format!("{}: {}", self.resolver, io::Error::from(kind)),
            ),
            Ok(Err(_)) => LookupOutcome::failed(
                sent_at_unix_ms,
                sent.elapsed(),
                LookupError::Io,
                "lookup engine closed".into(),
            ),
            Err(_) => {
                forget(&channel.in_flight, id);
                LookupOutcome::failed(
                    sent_at_unix_ms,
                    timeout,
                    LookupError::Timeout,
                    format!("no answer from {} within {timeout:?}", self.resolver),
                )
            }
        }
    }

    /// Looks a name up once (encoding the query first): for one-off checks.
    pub async fn lookup_name(
        &self,
        name: &str,
        kind: QueryKind,
        timeout: Duration,
    ) -> LookupOutcome {
        match PreparedQuery::new(name, kind) {
            Ok(q) => self.lookup(&q, timeout).await,
            Err(e) => {
                LookupOutcome::failed(unix_ms(), Duration::ZERO, LookupError::Io, e.to_string())
            }
        }
    }
}

/// Takes a free query id and records the waiter under it.
fn register(in_flight: &Mutex<InFlight>, waiter: Waiter) -> Option<u16> {
    let mut guard = lock(in_flight);
    let state = &mut *guard;
    for _ in 0..=u16::MAX as u32 {
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        if let std::collections::hash_map::Entry::Vacant(slot) = state.waiting.entry(id) {
            slot.insert(waiter);
            return Some(id);
        }
    }
    None
}

fn forget(in_flight: &Mutex<InFlight>, id: u16) {
    lock(in_flight).waiting.remove(&id);
}

/// The receive loop of one socket: read, stamp, match by id and question,
/// hand over. Runs until the engine is dropped.
async fn receive(socket: Arc<UdpSocket>, in_flight: Arc<Mutex<InFlight>>, resolver: SocketAddr) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let at = Instant::now();
                let datagram = &buf[..n];
                if n < HEADER_LEN {
                    telemetry::stray_answer("short");
                    continue;
                }
                let id = u16::from_be_bytes([datagram[0], datagram[1]]);
                let mut guard = lock(&in_flight);
                let matches = guard
                    .waiting
                    .get(&id)
                    .is_some_and(|w| same_question(&w.question, datagram));
                let waiter = if matches {
                    guard.waiting.remove(&id)
                } else {
                    None
                };
                drop(guard);
                match waiter {
                    // The lookup may have timed out just now; then nobody
                    // is listening and the answer is dropped.
                    Some(w) => {
                        let _late = w.reply.send(Reply::Answer(datagram.to_vec(), at));
                    }
                    None => telemetry::stray_answer("unmatched"),
                }
            }
            Err(e) => {
                // On a connected UDP socket, an ICMP error (port
                // unreachable: nothing listens on the resolver's port) is
                // reported here and concerns the queries in flight.
                let kind = e.kind();
                let waiters: Vec<Waiter> =
                    lock(&in_flight).waiting.drain().map(|(_, w)| w).collect();
                tracing::debug!(%resolver, error = %e, failed = waiters.len(), "receive error on resolver socket");
                for w in waiters {
                    let _gone = w.reply.send(Reply::Failed(kind));
                }
                if !matches!(
                    kind,
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    // Avoid a hot loop on a persistent socket error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Whether the answer's question section starts with the one asked (names
/// compared without regard to case: some servers randomize it).
fn same_question(question: &[u8], datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN + question.len()
        && datagram[4..6] == [0, 1]
        && datagram[HEADER_LEN..HEADER_LEN + question.len()].eq_ignore_ascii_case(question)
}

/// Turns an answer into an outcome.
fn parse(
    bytes: &[u8],
    kind: QueryKind,
    sent_at_unix_ms: i64,
    response_time: Duration,
) -> LookupOutcome {
    let message = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => {
            return LookupOutcome::failed(
                sent_at_unix_ms,
                response_time,
                LookupError::Io,
                format!("unparsable answer: {e}"),
            )
        }
    };
    let code = message.metadata.response_code;
    let rcode = u16::from(code);
    let wanted = kind.record_type();
    let answers: Vec<String> = message
        .answers
        .iter()
        .filter(|r| r.record_type() == wanted)
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::CNAME(c) => c.0.to_ascii(),
            other => other.to_string(),
        })
        .collect();
    let error = match code {
        ResponseCode::NoError if !answers.is_empty() => None,
        ResponseCode::NoError if message.metadata.truncation => Some(LookupError::Io),
        ResponseCode::NoError => Some(LookupError::EmptyAnswer),
        ResponseCode::NXDomain => Some(LookupError::Nxdomain),
        ResponseCode::ServFail => Some(LookupError::Servfail),
        ResponseCode::Refused => Some(LookupError::Refused),
        _ => Some(LookupError::OtherRcode),
    };
    let detail = match error {
        Some(LookupError::Io) => {
            Some("truncated answer without records (TCP retry is not done)".to_owned())
        }
        Some(LookupError::OtherRcode) => Some(format!("rcode {code}")),
        _ => None,
    };
    LookupOutcome {
        sent_at_unix_ms,
        response_time,
        rcode,
        error,
        answers,
        detail,
    }
}

/// Wall clock in unix milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::{rdata, Record};

    fn answer_to(query: &PreparedQuery, code: ResponseCode, records: Vec<Record>) -> Vec<u8> {
        let asked = Message::from_vec(&query.wire).unwrap();
        let mut m = Message::new(asked.metadata.id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = code;
        m.add_queries(asked.queries.clone());
        m.add_answers(records);
        m.to_vec().unwrap()
    }

    fn a(name: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            60,
            RData::A(rdata::A(ip.into())),
        )
    }

    #[test]
    fn answers_map_to_error_kinds() {
        let q = PreparedQuery::new("dynamodb.us-east-1.amazonaws.com", QueryKind::A).unwrap();
        let name = "dynamodb.us-east-1.amazonaws.com.";
        let ok = parse(
            &answer_to(&q, ResponseCode::NoError, vec![a(name, [10, 0, 0, 1])]),
            QueryKind::A,
            0,
            Duration::ZERO,
        );
        assert_eq!(
            (ok.error, ok.rcode, ok.answers.as_slice()),
            (None, 0, &["10.0.0.1".to_owned()][..])
        );
        let cases = [
            (ResponseCode::NoError, Some(LookupError::EmptyAnswer), 0),
            (ResponseCode::NXDomain, Some(LookupError::Nxdomain), 3),
            (ResponseCode::ServFail, Some(LookupError::Servfail), 2),
            (ResponseCode::Refused, Some(LookupError::Refused), 5),
            (ResponseCode::NotImp, Some(LookupError::OtherRcode), 4),
        ];
        for (code, error, rcode) in cases {
            let o = parse(
                &answer_to(&q, code, vec![]),
                QueryKind::A,
                0,
                Duration::ZERO,
            );
            assert_eq!((o.error, o.rcode), (error, rcode), "{code:?}");
        }
        let garbage = parse(&[0xde, 0xad], QueryKind::A, 0, Duration::ZERO);
        assert_eq!(garbage.error, Some(LookupError::Io));
    }

    #[test]
    fn records_of_another_type_are_an_empty_answer() {
        let q = PreparedQuery::new("lambda.us-east-1.amazonaws.com", QueryKind::Aaaa).unwrap();
        let bytes = answer_to(
            &q,
            ResponseCode::NoError,
            vec![a("lambda.us-east-1.amazonaws.com.", [10, 0, 0, 2])],
        );
        assert_eq!(
            parse(&bytes, QueryKind::Aaaa, 0, Duration::ZERO).error,
            Some(LookupError::EmptyAnswer)
        );
    }

    #[test]
    fn an_answer_to_another_question_does_not_match() {
        let q = PreparedQuery::new("ec2.us-east-1.amazonaws.com", QueryKind::A).unwrap();
        let other = PreparedQuery::new("ec2.us-west-2.amazonaws.com", QueryKind::A).unwrap();
        let mut answer = answer_to(&q, ResponseCode::NoError, vec![]);
        assert!(same_question(&q.question(), &answer));
        assert!(!same_question(&other.question(), &answer));
        // 0x20 case randomization by a server still matches.
        answer[13] = answer[13].to_ascii_uppercase();
        assert!(same_question(&q.question(), &answer));
    }

    #[tokio::test]
    async fn a_closed_port_is_an_io_error_and_silence_a_timeout() {
        // A bound socket that never answers: the lookup times out.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let engine = LookupEngine::new(silent.local_addr().unwrap(), 1)
            .await
            .unwrap();
        let o = engine
            .lookup_name(
                "s3.us-east-1.amazonaws.com",
                QueryKind::A,
                Duration::from_millis(100),
            )
            .await;
        assert_eq!(o.error, Some(LookupError::Timeout));
        assert_eq!(o.response_time, Duration::from_millis(100));
        // Nothing bound: the kernel's port-unreachable is reported as I/O.
        let port = silent.local_addr().unwrap();
        drop(silent);
        let engine = LookupEngine::new(port, 1).await.unwrap();
        let o = engine
            .lookup_name(
                "s3.us-east-1.amazonaws.com",
                QueryKind::A,
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(o.error, Some(LookupError::Io), "{o:?}");
        assert!(o.detail.unwrap().contains("refused"));
    }
}
