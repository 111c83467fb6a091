//! End-to-end tests across services, against real servers started by each
//! test: `nats-server -js` (its own port and store), the project's DNS
//! simulator, Debian's unbound and dnsdist, moto's AWS emulator,
//! Prometheus Alertmanager and Chromium (the dashboard). One test binary
//! (one link on CI).

mod access;
mod backbone;
mod cascade;
mod cli;
mod cluster;
mod compose;
mod confirm;
mod dashboard;
mod deep_health;
mod detection;
mod failover;
mod failover_shapes;
mod gateway;
mod harness;
mod notifier;
mod partition;
mod precision;
mod readiness;
mod real_dns;
mod resilience;
mod route53_oracle;
mod silence;
