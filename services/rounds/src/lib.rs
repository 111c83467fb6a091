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
//! A round of a region is complete when a later round of the region has
//! been arriving for `settle` (the probers of a region share round ids and
//! a round's lookups end within the probe timeout), or `round_timeout`
//! after its first event when no later round comes. An event for a round
//! already handed out is late.
//!
//! # Layout
//! - [`quorum`] — agreement across vantage points.
//! - [`book`] — rounds and their completeness.
//! - [`alerting`] — severity and open alerts.
//! - [`feed`] — the health events, consumed and validated.
#![warn(missing_docs)]

pub mod alerting;
pub mod book;
pub mod feed;
pub mod quorum;

pub use book::{Added, EndpointRound, Round, RoundBook};
pub use quorum::{agree, Agreement, Quorum};
