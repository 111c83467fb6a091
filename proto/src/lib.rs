//! The `regionguard.v1` contract: every message that crosses NATS or gRPC.
//!
//! The `.proto` files in `proto/regionguard/v1/` are the source of truth;
//! `build.rs` compiles them with protox (no `protoc` on the machine), so the
//! generated code cannot drift from them.
//!
//! - [`v1`]: the generated prost messages, tonic client/server stubs and
//!   serde impls (the canonical protobuf JSON mapping, snake_case names).
//! - [`domain`]: types that cannot be wrong (`Region`, `ServiceName`,
//!   `Status`, ...) and the validated [`domain::Observation`] that services
//!   reason about. Wire messages are converted into them at the edge with
//!   `TryFrom`, each failure a [`domain::InvalidField`].
//!
//! ```
//! use prost::Message;
//! use rg_proto::v1;
//!
//! let event = v1::HealthEvent {
//!     region: "us-east-1".into(),
//!     service: "dynamodb".into(),
//!     endpoint: "dynamodb.us-east-1.amazonaws.com".into(),
//!     vantage: "probe-a".into(),
//!     status: v1::Status::Critical as i32,
//!     priority: v1::Priority::Critical as i32,
//!     error_kind: v1::ErrorKind::EmptyAnswer as i32,
//!     ..Default::default()
//! };
//! let bytes = event.encode_to_vec();
//! let back = v1::HealthEvent::decode(bytes.as_slice()).unwrap();
//! let observation = rg_proto::domain::Observation::try_from(&back).unwrap();
//! assert_eq!(observation.status, rg_proto::domain::Status::Critical);
//! ```
#![warn(missing_docs)]

pub mod domain;

/// Generated code for package `regionguard.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/regionguard.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/regionguard.v1.serde.rs"));

    /// The encoded `FileDescriptorSet` of the whole schema (for reflection
    /// and for tools that decode messages by name).
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/regionguard_descriptor.bin"));
}

pub use v1::{
    Alert, DashboardSnapshot, FailoverDecision, FaultReply, FaultRequest, FaultSpec, HealthEvent,
};

#[cfg(test)]
mod fuzz_tests;
