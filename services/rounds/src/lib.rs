//! Probe rounds, shared by the services that judge health events (the
//! detector and the cascade service): one place for what "a round" is and
//! for how vantage points agree.
//!
//! - [`RoundBook`] groups observations by region and round id, says when a
//!   round is complete, and hands out complete rounds oldest first, with the
//!   acks of the messages they were made of.
//! - [`Round::endpoints`] gives each endpoint's votes (one per vantage: the
//!   worst status it saw through any resolver) and their [`Agreement`].
//!
//! A round of a region is handed out when nothing more is on its way: every
//! lookup of the round has arrived (as many as each vantage's events say
//! its round makes, `round_lookups`) and every re-probe those lookups called for (the events say how many
//! re-probes follow a failure, and whether the other vantage points were
//! asked too). So a slow failure is never cut off by a fast one: a DynamoDB
//! lookup that times out is judged in the same round as an ELB lookup that
//! failed at once. Deadlines bound the wait: `confirmed_wait` once a
//! majority of vantages confirmed a failure, `settle` after the next round
//! began, `round_timeout` after the round's first event. An event for a
//! round already handed out is late; that happens only to rounds handed
//! out on a deadline.
//!
//! # Layout
//! - [`settings`] — the `[rounds]` section every judge of rounds shares.
//! - [`quorum`] — agreement across vantage points.
//! - [`book`] — rounds and their completeness.
//! - [`alerting`] — severity and open alerts.
//! - [`feed`] — the health events, consumed and validated.
//! - [`dependency_map`] — which service depends on which; the shipped map.
//! - [`risk`] — how failure spreads along the map: the cascade risk score
//!   and the services expected to suffer.
//! - [`advice`] — what an alert recommends, from what fails and what it
//!   will hurt (threshold and cascade alerts share it).
#![warn(missing_docs)]

pub mod advice;
pub mod alerting;
pub mod book;
pub mod dependency_map;
pub mod feed;
pub mod quorum;
pub mod risk;
pub mod settings;

pub use book::{Added, DecidedBy, EndpointRound, Round, RoundBook, RoundTiming};
pub use quorum::{agree, Agreement, Quorum};
pub use settings::RoundSettings;
