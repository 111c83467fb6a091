//! The DNS side: a hickory-server request handler that answers from the
//! [`Zone`](crate::zone::Zone), after applying the fault that matches.
//!
//! hickory-server handles each UDP request in its own task, so a delayed
//! answer (a latency fault) never holds up the others.

use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{rdata, DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::faults::Effect;
use crate::state::State;
use crate::zone::Zone;

/// Answers DNS queries for the simulated regions.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) state: Arc<State>,
}

/// What the handler decided for one query.
enum Answer {
    Records(Vec<Record>),
    Code(ResponseCode),
    Silence,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = false;
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(1232).set_version(0);
            e
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());

        let (answer, fault) = self.decide(request).await;
        let rcode_label;
        let sent = match answer {
            Answer::Silence => {
                count(fault, "none");
                // No answer at all: the client times out.
                return ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                });
            }
            Answer::Code(code) => {
                metadata.response_code = code;
                rcode_label = rcode_name(code);
                response
                    .send_response(builder.build_no_records(metadata))
                    .await
            }
            Answer::Records(records) => {
                rcode_label = "noerror";
                response
                    .send_response(builder.build(metadata, records.iter(), [], [], []))
                    .await
            }
        };
        count(fault, rcode_label);
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "could not send a DNS answer");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl Handler {
    async fn decide(&self, request: &Request) -> (Answer, &'static str) {
        if request.metadata.op_code != OpCode::Query {
            return (Answer::Code(ResponseCode::NotImp), "none");
        }
        let Ok(info) = request.request_info() else {
            return (Answer::Code(ResponseCode::FormErr), "none");
        };
        let query = info.query.original();
        let asked = query.name().to_ascii();
        let name = asked.trim_end_matches('.').to_ascii_lowercase();
        let located = self.state.zone.locate(&name);
        let (effect, fault) = self.state.effect_for(&name, located.as_ref());
        match effect {
            Some(Effect::Nxdomain) => return (Answer::Code(ResponseCode::NXDomain), fault),
            Some(Effect::Servfail) => return (Answer::Code(ResponseCode::ServFail), fault),
            Some(Effect::Refused) => return (Answer::Code(ResponseCode::Refused), fault),
            Some(Effect::EmptyAnswer) => return (Answer::Records(Vec::new()), fault),
            Some(Effect::Timeout) => return (Answer::Silence, fault),
            Some(Effect::Latency { fixed, jitter }) => {
                let extra = if jitter.is_zero() {
                    Duration::ZERO
                } else {
                    jitter.mul_f64(rand::random::<f64>())
                };
                tokio::time::sleep(fixed + extra).await;
            }
            None => {}
        }
        let Some(located) = located else {
            return (Answer::Code(ResponseCode::NXDomain), fault);
        };
        if query.query_class() != DNSClass::IN {
            return (Answer::Records(Vec::new()), fault);
        }
        let owner: Name = query.name().clone();
        let ttl = self.state.ttl;
        let record = |data: RData| Record::from_rdata(owner.clone(), ttl, data);
        let records = match query.query_type() {
            RecordType::A => vec![record(RData::A(rdata::A(Zone::ipv4(&located.name))))],
            RecordType::AAAA => vec![record(RData::AAAA(rdata::AAAA(Zone::ipv6(&located.name))))],
            RecordType::CNAME => {
                match Name::from_ascii(Zone::alias(&located, &self.state.domain)) {
                    Ok(target) => vec![record(RData::CNAME(rdata::CNAME(target)))],
                    Err(_) => Vec::new(),
                }
            }
            // The name exists but has no record of this type (NODATA).
            _ => Vec::new(),
        };
        (Answer::Records(records), fault)
    }
}

fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "noerror",
        ResponseCode::NXDomain => "nxdomain",
        ResponseCode::ServFail => "servfail",
        ResponseCode::Refused => "refused",
        ResponseCode::FormErr => "formerr",
        ResponseCode::NotImp => "notimp",
        _ => "other",
    }
}

fn count(fault: &'static str, rcode: &'static str) {
    crate::telemetry::query(fault, rcode);
}
