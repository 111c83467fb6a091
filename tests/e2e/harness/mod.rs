//! Shared setup for the e2e tests, by concern: [`services`] in-process,
//! [`processes`] of the real binary, [`feeds`] to read what they publish,
//! [`faults`] to inject, a [`relay`] that can freeze a connection, and
//! [`wait`] for conditions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;
use rg_bus::NatsConfig;
use rg_proto::v1::{
    fault_request::Action, FaultKind, FaultReply, FaultRequest, FaultSpec, HealthEvent,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod faults;
mod feeds;
mod processes;
mod relay;
mod services;
mod wait;

pub(crate) use faults::*;
pub(crate) use feeds::*;
pub(crate) use processes::*;
pub(crate) use relay::*;
pub(crate) use services::*;
pub(crate) use wait::*;
