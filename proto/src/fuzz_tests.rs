//! Bad-input fuzzing of every message of the schema (proptest).
//!
//! Whatever arrives on the bus, decoding it and converting it into domain
//! types must return `Ok` or `Err`: never panic, never hang, never allocate
//! more than a small multiple of the payload. Three sources of input:
//!
//! - arbitrary bytes (0..4096), which rarely decode but probe the error paths;
//! - well-formed encodings generated from the schema itself (the embedded
//!   `FILE_DESCRIPTOR_SET`: every field with its real wire type, nested
//!   messages, unknown fields, extreme values), so a new field is fuzzed
//!   without touching this file (a new message fails
//!   `every_schema_message_is_fuzzed` until it is added to `every_message!`);
//! - those encodings mutated (bits flipped, bytes inserted, deleted,
//!   overwritten, truncated, ranges duplicated).
//!
//! Every input is decoded as every message type. A decoded message is put
//! through each hand-written conversion of `domain.rs`, re-encoded (the
//! re-encoding must decode to the same message, and be at most twice the
//! input's size), and written as JSON, as `regionguard tail` and the
//! gateway do (the JSON must read back as the same message, doubles within
//! a few units in the last place; a NaN or infinite double is written as
//! `null`, which pbjson cannot read back: a known limitation, tolerated only
//! there).
//!
//! Each case runs on its own thread under a deadline, so a hang fails the
//! test instead of stalling CI. The case counts below keep the whole file
//! to a few seconds in a debug build; for a longer run set
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=100000 cargo test -p rg-proto fuzz`.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use rg_testkit::fuzz::{config as fuzz_config, within};

use crate::domain::{InvalidField, Observation, Priority, Region, ServiceName, Status};
use crate::v1;

/// How long one case may take, on a loaded CI machine, in a debug build.
/// Cases take well under a millisecond: this only catches hangs.
const CASE_LIMIT: Duration = Duration::from_secs(1);

/// Largest arbitrary payload (bounds the memory a case may use).
const MAX_PAYLOAD: usize = 4096;

/// Runs `f` on a thread of its own and fails when it takes longer than
/// [`CASE_LIMIT`]: a hang fails the test instead of stalling it. A panic in
/// `f` is passed on as it is, for proptest to shrink.
fn within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(CASE_LIMIT, f)
}

// === the domain conversions every decoded message goes through ===

/// Puts a decoded message through every conversion the services apply to
/// it, checking what can be checked about the result.
trait Exercise {
    fn exercise(&self);
}

fn check_error(e: &InvalidField) {
    assert!(!e.to_string().is_empty());
    assert!(!e.as_metrics_label().is_empty());
}

/// Region and service names: parsed exactly when they are subject tokens,
/// and a parsed name is the input unchanged.
fn check_names(values: &[&str]) {
    for &v in values {
        let token = !v.is_empty()
            && v.len() <= 64
            && !v.starts_with('-')
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        match Region::parse(v) {
            Ok(r) => assert_eq!(r.as_str(), v),
            Err(e) => check_error(&e),
        }
        match ServiceName::parse(v) {
            Ok(s) => assert_eq!(s.to_string(), v),
            Err(e) => check_error(&e),
        }
        assert_eq!(Region::parse(v).is_ok(), token, "{v:?}");
        assert_eq!(v.parse::<ServiceName>().is_ok(), token, "{v:?}");
    }
}

/// Wire status numbers: a converted status converts back to the same
/// number.
fn check_status(v: i32) {
    match Status::try_from(v) {
        Ok(s) => {
            assert_eq!(v1::Status::from(s) as i32, v);
            assert!(!s.as_str().is_empty());
        }
        Err(e) => check_error(&e),
    }
}

fn check_priority(v: i32) {
    match Priority::try_from(v) {
        Ok(p) => {
            assert_eq!(v1::Priority::from(p) as i32, v);
            assert!(!p.as_str().is_empty());
        }
        Err(e) => check_error(&e),
    }
}

impl Exercise for v1::HealthEvent {
    fn exercise(&self) {
        match Observation::try_from(self) {
            Ok(o) => {
                assert_eq!(o.region.as_str(), self.region);
                assert_eq!(o.service.as_str(), self.service);
                assert_eq!(
                    (&*o.endpoint, &*o.vantage),
                    (&*self.endpoint, &*self.vantage)
                );
                assert_eq!(v1::Status::from(o.status) as i32, self.status);
                assert_eq!(v1::Priority::from(o.priority) as i32, self.priority);
                assert_eq!(v1::ErrorKind::from(o.error) as i32, self.error_kind);
                assert_eq!(
                    o.response_time.as_micros(),
                    u128::from(self.response_time_us)
                );
                if let Some(e) = o.error {
                    assert!(!e.as_str().is_empty());
                    let _dns_failure: bool = e.is_dns_failure();
                }
            }
            Err(e) => check_error(&e),
        }
        check_names(&[&self.region, &self.service]);
        check_status(self.status);
        check_priority(self.priority);
        for name in [
            self.query_type().as_str_name(),
            self.error_kind().as_str_name(),
            self.status().as_str_name(),
            self.priority().as_str_name(),
            self.probe_kind().as_str_name(),
        ] {
            assert!(!name.is_empty());
        }
    }
}

impl Exercise for v1::ConfirmRequest {
    fn exercise(&self) {
        check_names(&[&self.region]);
        check_status(self.status);
    }
}

impl Exercise for v1::Alert {
    fn exercise(&self) {
        check_names(&[&self.region, &self.service]);
        check_status(self.status);
        for name in [
            self.source().as_str_name(),
            self.severity().as_str_name(),
            self.state().as_str_name(),
            self.status().as_str_name(),
        ] {
            assert!(!name.is_empty());
        }
        self.predicted_impact.iter().for_each(Exercise::exercise);
        self.evidence.iter().for_each(Exercise::exercise);
        self.anomalies.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::Impact {
    fn exercise(&self) {
        check_names(&[&self.service]);
        for s in &self.path {
            check_names(&[s]);
        }
    }
}

impl Exercise for v1::Evidence {
    fn exercise(&self) {
        check_status(self.status);
        assert!(!self.error_kind().as_str_name().is_empty());
    }
}

impl Exercise for v1::AnomalyFinding {
    fn exercise(&self) {}
}

impl Exercise for v1::FailoverDecision {
    fn exercise(&self) {
        check_names(&[&self.from_region, &self.to_region]);
        let phase = self.phase();
        assert!(!phase.token().is_empty());
        assert!(!self.mode().as_str_name().is_empty());
        match self.approval("grpc:fuzz", 1) {
            Ok(approved) => {
                assert!(matches!(
                    phase,
                    v1::FailoverPhase::Planned | v1::FailoverPhase::Approved
                ));
                assert_eq!(approved.phase(), v1::FailoverPhase::Approved);
                assert_eq!(approved.id, self.id);
                // Approving again gives the same approval.
                assert_eq!(
                    approved.approval("cli:fuzz", 2).map(|a| a.encode_to_vec()),
                    Ok(approved.encode_to_vec())
                );
            }
            Err(e) => {
                assert!(!matches!(
                    phase,
                    v1::FailoverPhase::Planned | v1::FailoverPhase::Approved
                ));
                assert!(e.to_string().contains(phase.token()));
            }
        }
        if let Ok(rejected) = self.rejection("http:fuzz", 1, "fuzz") {
            assert!(matches!(
                phase,
                v1::FailoverPhase::Planned | v1::FailoverPhase::Rejected
            ));
            assert_eq!(rejected.phase(), v1::FailoverPhase::Rejected);
            assert!(rejected.approval("cli:fuzz", 2).is_err());
        }
        assert!(self.answer_msg_id().starts_with(self.id.as_str()));
        self.evidence.iter().for_each(Exercise::exercise);
        if let Some(plan) = &self.plan {
            plan.exercise();
        }
    }
}

impl Exercise for v1::FailoverPlan {
    fn exercise(&self) {
        self.candidates.iter().for_each(Exercise::exercise);
        self.steps.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::RegionCandidate {
    fn exercise(&self) {
        check_names(&[&self.region]);
        self.checks.iter().for_each(Exercise::exercise);
    }
}

/// Free text and a factor: decoding is all there is to check (whatever
/// reads a factor clamps it, see `rg_failover::deep::combine`).
impl Exercise for v1::ResourceCheck {
    fn exercise(&self) {}
}

impl Exercise for v1::Readiness {
    fn exercise(&self) {
        check_names(&[&self.region, &self.target]);
        self.candidates.iter().for_each(Exercise::exercise);
        self.steps.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::ReadinessRun {
    fn exercise(&self) {
        self.regions.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::FailoverStep {
    fn exercise(&self) {
        assert!(!self.kind().as_str_name().is_empty());
        assert!(!self.status().as_str_name().is_empty());
    }
}

impl Exercise for v1::FaultSpec {
    fn exercise(&self) {
        check_names(&[&self.region, &self.service]);
        assert!(!self.kind().as_str_name().is_empty());
    }
}

impl Exercise for v1::FaultRequest {
    fn exercise(&self) {
        match &self.action {
            Some(
                v1::fault_request::Action::Inject(spec) | v1::fault_request::Action::Clear(spec),
            ) => {
                spec.exercise();
            }
            Some(v1::fault_request::Action::List(_)) | None => {}
        }
    }
}

impl Exercise for v1::FaultReply {
    fn exercise(&self) {
        self.active.iter().for_each(Exercise::exercise);
        self.changed.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::DashboardSnapshot {
    fn exercise(&self) {
        if let Some(summary) = &self.summary {
            summary.exercise();
        }
        self.regions.iter().for_each(Exercise::exercise);
        self.trend.iter().for_each(Exercise::exercise);
        self.recent_alerts.iter().for_each(Exercise::exercise);
        self.failover_timeline.iter().for_each(Exercise::exercise);
    }
}

impl Exercise for v1::Summary {
    fn exercise(&self) {}
}

impl Exercise for v1::RegionCard {
    fn exercise(&self) {
        check_names(&[&self.region]);
        self.services.iter().for_each(Exercise::exercise);
        self.checks.iter().for_each(Exercise::exercise);
        if let Some(r) = &self.readiness {
            r.exercise();
        }
    }
}

impl Exercise for v1::ServiceCard {
    fn exercise(&self) {
        check_names(&[&self.service]);
        check_status(self.status);
    }
}

impl Exercise for v1::TrendPoint {
    fn exercise(&self) {}
}

impl Exercise for v1::GetSnapshotRequest {
    fn exercise(&self) {}
}

impl Exercise for v1::WatchSnapshotsRequest {
    fn exercise(&self) {}
}

impl Exercise for v1::WatchAlertsRequest {
    fn exercise(&self) {
        check_names(&[&self.region]);
        assert!(!self.min_severity().as_str_name().is_empty());
    }
}

impl Exercise for v1::ApproveFailoverRequest {
    fn exercise(&self) {}
}

impl Exercise for v1::ApproveFailoverResponse {
    fn exercise(&self) {
        if let Some(d) = &self.decision {
            d.exercise();
        }
    }
}

impl Exercise for v1::RejectFailoverRequest {
    fn exercise(&self) {}
}

impl Exercise for v1::RejectFailoverResponse {
    fn exercise(&self) {
        if let Some(d) = &self.decision {
            d.exercise();
        }
    }
}

/// Decodes `bytes` as `M`; when that works, runs every conversion, checks
/// the re-encoding and the JSON form. Returns whether it decoded.
fn decode_and_use<M>(bytes: &[u8]) -> bool
where
    M: Message + Default + Exercise + serde::Serialize + serde::de::DeserializeOwned,
{
    let Ok(message) = M::decode(bytes) else {
        return false;
    };
    message.exercise();

    // Re-encoding is canonical: it decodes to the same message, and
    // encodes to the same bytes again.
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let again = M::decode(encoded.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), encoded);

    // Memory stays proportional to the payload: nothing in the schema
    // re-encodes to more than twice its input (an int32 sent as a 5-byte
    // varint comes back as 10 bytes; every other field only shrinks).
    assert!(
        encoded.len() <= 2 * bytes.len(),
        "{} bytes decoded into a message of {} bytes",
        bytes.len(),
        encoded.len()
    );

    // JSON (canonical protobuf mapping). An enum number the schema does
    // not define cannot be written: that is an error, not a panic.
    if let Ok(json) = serde_json::to_string(&message) {
        match serde_json::from_str::<M>(&json) {
            // serde_json (without its `float_roundtrip` feature) may read a
            // double back one unit in the last place off: compare numbers
            // with that tolerance, everything else exactly.
            Ok(back) => {
                let again = serde_json::to_string(&back).expect("a read-back message writes");
                let (a, b): (serde_json::Value, serde_json::Value) = (
                    serde_json::from_str(&json).expect("written JSON parses"),
                    serde_json::from_str(&again).expect("written JSON parses"),
                );
                assert!(
                    json_close(&a, &b),
                    "JSON does not read back as written:\n{json}\n{again}"
                );
            }
            // Known limitation of pbjson over serde_json: a NaN or infinite
            // double is written as `null` (not "NaN"/"Infinity"), which
            // does not read back. No other JSON may fail to read back.
            Err(e) => assert!(
                has_null(&serde_json::from_str(&json).expect("written JSON parses")),
                "JSON written from a decoded message does not read back: {e}: {json}"
            ),
        }
    }
    true
}

/// Equal JSON trees, numbers within a few units in the last place.
fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

fn has_null(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().any(has_null),
        serde_json::Value::Object(fields) => fields.values().any(has_null),
        _ => false,
    }
}

/// Reads arbitrary JSON as `M` (the gateway reads request bodies so).
fn json_to<M>(text: &str)
where
    M: Message + Default + Exercise + serde::de::DeserializeOwned,
{
    if let Ok(message) = serde_json::from_str::<M>(text) {
        message.exercise();
        let encoded = message.encode_to_vec();
        assert!(M::decode(encoded.as_slice()).is_ok());
    }
}

/// One decoder per message type of the schema, by full name.
type Decoder = fn(&[u8]) -> bool;
type JsonReader = fn(&str);

macro_rules! every_message {
    ($($name:ident),* $(,)?) => {
        const DECODERS: &[(&str, Decoder, JsonReader)] = &[
            $((
                concat!("regionguard.v1.", stringify!($name)),
                decode_and_use::<v1::$name>,
                json_to::<v1::$name>,
            )),*
        ];
    };
}

every_message!(
    HealthEvent,
    ConfirmRequest,
    Alert,
    Impact,
    Evidence,
    AnomalyFinding,
    FailoverDecision,
    FailoverPlan,
    RegionCandidate,
    ResourceCheck,
    FailoverStep,
    Readiness,
    ReadinessRun,
    FaultSpec,
    FaultRequest,
    FaultReply,
    DashboardSnapshot,
    Summary,
    RegionCard,
    ServiceCard,
    TrendPoint,
    GetSnapshotRequest,
    WatchSnapshotsRequest,
    WatchAlertsRequest,
    ApproveFailoverRequest,
    ApproveFailoverResponse,
    RejectFailoverRequest,
    RejectFailoverResponse,
);

/// Decodes `bytes` as every message type, under the deadline; returns the
/// names of the types it decoded as.
fn decode_as_every_type(bytes: Vec<u8>) -> Vec<&'static str> {
    within_limit(move || {
        DECODERS
            .iter()
            .filter(|(_, decode, _)| decode(&bytes))
            .map(|(name, _, _)| *name)
            .collect()
    })
}

// === the schema, read from the embedded descriptor ===

/// The few parts of `google.protobuf.FileDescriptorSet` the generator needs
/// (prost-types is not a dependency; these decode the same bytes).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        pub(super) file: Vec<File>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct File {
        #[prost(string, tag = "2")]
        pub(super) package: String,
        #[prost(message, repeated, tag = "4")]
        pub(super) message_type: Vec<MessageType>,
        #[prost(message, repeated, tag = "5")]
        pub(super) enum_type: Vec<EnumType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct MessageType {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(message, repeated, tag = "2")]
        pub(super) field: Vec<Field>,
        #[prost(message, repeated, tag = "3")]
        pub(super) nested_type: Vec<MessageType>,
        #[prost(message, repeated, tag = "4")]
        pub(super) enum_type: Vec<EnumType>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Field {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(int32, tag = "3")]
        pub(super) number: i32,
        #[prost(int32, tag = "4")]
        pub(super) label: i32,
        #[prost(int32, tag = "5")]
        pub(super) r#type: i32,
        #[prost(string, tag = "6")]
        pub(super) type_name: String,
        #[prost(string, tag = "10")]
        pub(super) json_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EnumType {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(message, repeated, tag = "2")]
        pub(super) value: Vec<EnumValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EnumValue {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(int32, tag = "2")]
        pub(super) number: i32,
    }

    // FieldDescriptorProto.Type and .Label numbers.
    pub(super) const DOUBLE: i32 = 1;
    pub(super) const FLOAT: i32 = 2;
    pub(super) const INT64: i32 = 3;
    pub(super) const UINT64: i32 = 4;
    pub(super) const INT32: i32 = 5;
    pub(super) const FIXED64: i32 = 6;
    pub(super) const FIXED32: i32 = 7;
    pub(super) const BOOL: i32 = 8;
    pub(super) const STRING: i32 = 9;
    pub(super) const MESSAGE: i32 = 11;
    pub(super) const BYTES: i32 = 12;
    pub(super) const UINT32: i32 = 13;
    pub(super) const ENUM: i32 = 14;
    pub(super) const SFIXED32: i32 = 15;
    pub(super) const SFIXED64: i32 = 16;
    pub(super) const SINT32: i32 = 17;
    pub(super) const SINT64: i32 = 18;
    pub(super) const REPEATED: i32 = 3;
}

/// Every message and enum of the schema by full name (`.regionguard.v1.X`,
/// as descriptors refer to them).
struct Schema {
    messages: BTreeMap<String, descriptor::MessageType>,
    enums: BTreeMap<String, Vec<i32>>,
}

/// The schema, read once.
static SCHEMA: LazyLock<Schema> = LazyLock::new(Schema::load);

impl Schema {
    fn load() -> Self {
        let set = descriptor::FileDescriptorSet::decode(v1::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor decodes");
        let mut schema = Schema {
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
        };
        fn add(schema: &mut Schema, scope: &str, m: &descriptor::MessageType) {
            let name = format!("{scope}.{}", m.name);
            for e in &m.enum_type {
                let numbers = e.value.iter().map(|v| v.number).collect();
                schema.enums.insert(format!("{name}.{}", e.name), numbers);
            }
            for nested in &m.nested_type {
                add(schema, &name, nested);
            }
            schema.messages.insert(name, m.clone());
        }
        for file in set.file {
            let scope = format!(".{}", file.package);
            for e in &file.enum_type {
                let numbers = e.value.iter().map(|v| v.number).collect();
                schema.enums.insert(format!("{scope}.{}", e.name), numbers);
            }
            for m in &file.message_type {
                add(&mut schema, &scope, m);
            }
        }
        schema
    }

    /// Field names as JSON readers accept them (proto and lowerCamel).
    fn field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .messages
            .values()
            .flat_map(|m| &m.field)
            .flat_map(|f| [f.name.clone(), f.json_name.clone()])
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Enum value names, for JSON.
    fn enum_value_names() -> Vec<String> {
        let set = descriptor::FileDescriptorSet::decode(v1::FILE_DESCRIPTOR_SET)
            .expect("the embedded descriptor decodes");
        set.file
            .iter()
            .flat_map(|f| &f.enum_type)
            .flat_map(|e| &e.value)
            .map(|v| v.name.clone())
            .collect()
    }
}

// === a generator of well-formed encodings, driven by a list of choices ===

/// The decisions a generated message is made of. Proptest shrinks the list
/// (shorter, smaller numbers), and a missing choice reads as 0, which every
/// decision maps to a plain valid value: a shrunk failure is a simple
/// message.
struct Choices<'a> {
    list: &'a [u32],
    at: usize,
}

impl Choices<'_> {
    fn next(&mut self) -> u32 {
        let v = self.list.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }

    fn next_u64(&mut self) -> u64 {
        (u64::from(self.next()) << 32) | u64::from(self.next())
    }
}

/// Strings worth trying as names: valid subject tokens first (choice 0),
/// then near misses.
const STRINGS: &[&str] = &[
    "us-east-1",
    "dynamodb",
    "dynamodb.us-east-1.amazonaws.com",
    "",
    "US-EAST-1",
    "us.east.1",
    "us-east-*",
    ">",
    "-x",
    " ",
    "é",
    "\u{0}",
    "\u{10ffff}",
    "0123456789012345678901234567890123456789012345678901234567890123",
    "01234567890123456789012345678901234567890123456789012345678901234",
];

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn put_len_delimited(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn gen_string(c: &mut Choices<'_>) -> String {
    let pick = c.next();
    if pick % 4 == 3 {
        // Arbitrary characters.
        let len = c.next() % 24;
        (0..len)
            .map(|_| char::from_u32(c.next() % 0x11_0000).unwrap_or('\u{fffd}'))
            .collect()
    } else {
        STRINGS[(pick / 4) as usize % STRINGS.len()].to_owned()
    }
}

/// An integer: small ones mostly, and the extremes.
fn gen_int(c: &mut Choices<'_>) -> u64 {
    let pick = c.next();
    match pick % 8 {
        0..=3 => u64::from(pick / 8 % 1000),
        4 => u64::MAX,
        5 => i64::MIN as u64,
        6 => i64::MAX as u64,
        _ => c.next_u64(),
    }
}

fn gen_double(c: &mut Choices<'_>) -> f64 {
    let pick = c.next();
    match pick % 10 {
        0..=2 => f64::from(pick / 10 % 1000) / 8.0,
        3 => f64::NAN,
        4 => f64::INFINITY,
        5 => f64::NEG_INFINITY,
        6 => -0.0,
        7 => f64::MAX,
        8 => f64::MIN_POSITIVE / 2.0,
        _ => f64::from_bits(c.next_u64()),
    }
}

/// Encodes one value of a scalar or message field (no key) into `out`;
/// returns the wire type.
fn gen_value(
    schema: &Schema,
    field: &descriptor::Field,
    c: &mut Choices<'_>,
    depth: usize,
    out: &mut Vec<u8>,
) -> u8 {
    use descriptor as d;
    match field.r#type {
        d::DOUBLE => {
            out.extend_from_slice(&gen_double(c).to_le_bytes());
            1
        }
        d::FLOAT => {
            out.extend_from_slice(&(gen_double(c) as f32).to_le_bytes());
            5
        }
        d::FIXED64 | d::SFIXED64 => {
            out.extend_from_slice(&gen_int(c).to_le_bytes());
            1
        }
        d::FIXED32 | d::SFIXED32 => {
            out.extend_from_slice(&(gen_int(c) as u32).to_le_bytes());
            5
        }
        d::BOOL => {
            // 0, 1, or a non-canonical "true".
            put_varint(out, [0, 1, 0xff][(c.next() % 3) as usize]);
            0
        }
        d::INT32 => {
            // Negative numbers are sign-extended to 64 bits on the wire.
            put_varint(out, gen_int(c) as i32 as i64 as u64);
            0
        }
        d::UINT32 => {
            put_varint(out, u64::from(gen_int(c) as u32));
            0
        }
        d::INT64 | d::UINT64 => {
            put_varint(out, gen_int(c));
            0
        }
        d::SINT32 => {
            let v = gen_int(c) as i32;
            put_varint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
            0
        }
        d::SINT64 => {
            let v = gen_int(c) as i64;
            put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
            0
        }
        d::ENUM => {
            let pick = c.next();
            let defined = schema
                .enums
                .get(&field.type_name)
                .map(Vec::as_slice)
                .unwrap_or(&[0]);
            let v = if pick % 4 == 3 {
                // A number the schema may not define.
                c.next() as i32
            } else {
                // Choice 0 gives the first value after UNSPECIFIED.
                defined[(pick / 4 + 1) as usize % defined.len()]
            };
            put_varint(out, v as i64 as u64);
            0
        }
        d::STRING | d::BYTES => {
            let s = gen_string(c);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
            2
        }
        d::MESSAGE => {
            let inner = match schema.messages.get(&field.type_name) {
                Some(m) if depth < 8 => gen_message(schema, m, c, depth + 1),
                _ => Vec::new(),
            };
            put_varint(out, inner.len() as u64);
            out.extend_from_slice(&inner);
            2
        }
        other => panic!(
            "field {} has a type the generator lacks: {other}",
            field.name
        ),
    }
}

/// A well-formed encoding of `m`: every singular field once, repeated
/// fields 0 to 3 times (scalars packed or not), sometimes in reverse order,
/// sometimes with an unknown field or a repeated singular field.
fn gen_message(
    schema: &Schema,
    m: &descriptor::MessageType,
    c: &mut Choices<'_>,
    depth: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    let order = c.next();
    let mut fields: Vec<&descriptor::Field> = m.field.iter().collect();
    if order % 4 == 1 {
        fields.reverse();
    }
    for field in fields {
        let number = u32::try_from(field.number).expect("field numbers are positive");
        let repeated = field.label == descriptor::REPEATED;
        let count = if repeated { c.next() % 4 } else { 1 };
        let scalar = !matches!(
            field.r#type,
            descriptor::STRING | descriptor::BYTES | descriptor::MESSAGE
        );
        if repeated && scalar && c.next() % 2 == 0 {
            let mut packed = Vec::new();
            for _ in 0..count {
                gen_value(schema, field, c, depth, &mut packed);
            }
            put_len_delimited(&mut out, number, &packed);
            continue;
        }
        for _ in 0..count {
            let mut value = Vec::new();
            let wire_type = gen_value(schema, field, c, depth, &mut value);
            put_key(&mut out, number, wire_type);
            out.extend_from_slice(&value);
        }
    }
    match order % 8 {
        // An unknown varint field and an unknown length-delimited one:
        // decoders skip them.
        2 => {
            put_key(&mut out, 1000, 0);
            put_varint(&mut out, u64::MAX);
            put_len_delimited(&mut out, 1001, b"unknown");
        }
        // A singular field sent twice: the last one wins (a message merges).
        3 => {
            if let Some(field) = m.field.first() {
                let mut value = Vec::new();
                let wire_type = gen_value(schema, field, c, depth, &mut value);
                put_key(&mut out, field.number as u32, wire_type);
                out.extend_from_slice(&value);
            }
        }
        _ => {}
    }
    out
}

/// Choices for [`gen_message`]: half of them 0 (the plain valid value), so
/// that conversions succeed often enough to be checked too, the rest small
/// or arbitrary.
fn choices() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(
        prop_oneof![2 => Just(0u32), 1 => 0u32..64, 1 => any::<u32>()],
        0..400,
    )
}

/// One change to an encoding.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Overwrite(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Copies a range to another place (lengths that no longer match).
    Duplicate(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Duplicate(a, b, c)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    if len == 0 {
        if let Mutation::Insert(_, v) = m {
            bytes.push(*v);
        }
        return;
    }
    match m {
        Mutation::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Overwrite(i, v) => bytes[i.index(len)] = *v,
        Mutation::Insert(i, v) => bytes.insert(i.index(len + 1), *v),
        Mutation::Delete(i) => {
            bytes.remove(i.index(len));
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(len)),
        Mutation::Duplicate(from, n, to) => {
            let start = from.index(len);
            let end = start + n.index(len - start + 1).min(64);
            let copy = bytes[start..end].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, copy);
        }
    }
    bytes.truncate(MAX_PAYLOAD);
}

/// Arbitrary JSON shaped like request bodies: objects keyed by field names
/// of the schema, with values of every JSON type, including numbers as
/// strings, "NaN" and out-of-range numbers.
fn json_value(keys: Vec<String>, words: Vec<String>) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| format!("\"{v}\"")),
        any::<f64>().prop_map(|v| v.to_string()),
        prop::sample::select(vec![
            "1e999",
            "-1e999",
            "1.5",
            "-0",
            "\"NaN\"",
            "\"Infinity\"",
            "\"-Infinity\"",
            "\"1e3\"",
            "\"-1\"",
            "\"0x10\"",
            "18446744073709551616",
            "-9223372036854775809",
            "\"\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(words).prop_map(|w| format!("{w:?}")),
        any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((prop::sample::select(keys.clone()), inner), 0..6).prop_map(
                |fields| {
                    let body: Vec<String> =
                        fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("{{{}}}", body.join(","))
                }
            ),
        ]
    })
}

#[test]
fn every_schema_message_is_fuzzed() {
    let in_schema: Vec<String> = SCHEMA
        .messages
        .keys()
        .map(|k| k.trim_start_matches('.').to_owned())
        .collect();
    let mut fuzzed: Vec<String> = DECODERS.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    fuzzed.sort();
    assert_eq!(fuzzed, in_schema, "add new messages to `every_message!`");
}

/// With no choices the generator writes the plain valid value of every
/// field, so the conversions' `Ok` paths are reached, not only their errors.
#[test]
fn plain_generated_messages_decode_and_convert() {
    for (name, m) in &SCHEMA.messages {
        let bytes = gen_message(&SCHEMA, m, &mut Choices { list: &[], at: 0 }, 0);
        let decoded = decode_as_every_type(bytes);
        assert!(decoded.contains(&name.trim_start_matches('.')), "{name}");
    }
    let health = &SCHEMA.messages[".regionguard.v1.HealthEvent"];
    let bytes = gen_message(&SCHEMA, health, &mut Choices { list: &[], at: 0 }, 0);
    let event = v1::HealthEvent::decode(bytes.as_slice()).unwrap();
    assert_eq!(
        Observation::try_from(&event).map(|o| o.status),
        Ok(Status::Healthy)
    );
}

proptest! {
    // Cheap cases: many of them.
    #![proptest_config(fuzz_config(1024))]

    /// Random bytes rarely decode; they probe every decoder's error paths.
    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..MAX_PAYLOAD),
    ) {
        decode_as_every_type(bytes);
    }

    /// Any name from the wire parses exactly when it is a subject token.
    #[test]
    fn names_parse_exactly_when_they_are_subject_tokens(
        name in prop_oneof![any::<String>(), "[a-z0-9-]{0,70}", "[ -~]{0,8}"],
    ) {
        check_names(&[&name]);
    }

    /// Any status and priority number converts or is refused.
    #[test]
    fn enum_numbers_convert_or_are_refused(v in any::<i32>(), small in -2i32..10) {
        for n in [v, small] {
            check_status(n);
            check_priority(n);
        }
    }
}

proptest! {
    // Each case decodes a message as 23 types, re-encodes and writes JSON.
    #![proptest_config(fuzz_config(512))]

    /// Well-formed encodings of each message decode as their type; then
    /// every conversion, the re-encoding and the JSON form are checked.
    #[test]
    fn well_formed_messages_decode_and_convert_without_panic(
        which in any::<Index>(),
        choices in choices(),
    ) {
        let schema = &*SCHEMA;
        let (name, m) = *which.get(&schema.messages.iter().collect::<Vec<_>>());
        let bytes = gen_message(schema, m, &mut Choices { list: &choices, at: 0 }, 0);
        prop_assert!(bytes.len() <= MAX_PAYLOAD * 4, "{} bytes", bytes.len());
        let decoded = decode_as_every_type(bytes);
        prop_assert!(
            decoded.contains(&name.trim_start_matches('.')),
            "a well-formed {name} did not decode"
        );
    }

    /// Valid encodings with a few bytes changed: lengths, tags and varints
    /// that almost make sense, which is where decoders go wrong.
    #[test]
    fn mutated_messages_never_panic_any_decoder(
        which in any::<Index>(),
        choices in choices(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let schema = &*SCHEMA;
        let (_, m) = *which.get(&schema.messages.iter().collect::<Vec<_>>());
        let mut bytes = gen_message(schema, m, &mut Choices { list: &choices, at: 0 }, 0);
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        decode_as_every_type(bytes);
    }

    /// JSON request bodies (the gateway's REST API reads `FaultRequest` and
    /// others with serde): any JSON gives a message or an error.
    #[test]
    fn arbitrary_json_never_panics_any_reader(
        text in json_value(SCHEMA.field_names(), Schema::enum_value_names()),
        tail in prop::sample::select(vec!["", "}", "]", ",", "x"]),
    ) {
        let text = format!("{text}{tail}");
        within_limit(move || {
            for (_, _, read) in DECODERS {
                read(&text);
            }
        });
    }

    /// Strings that are not JSON at all.
    #[test]
    fn arbitrary_text_never_panics_any_json_reader(text in any::<String>()) {
        within_limit(move || {
            for (_, _, read) in DECODERS {
                read(&text);
            }
        });
    }
}
