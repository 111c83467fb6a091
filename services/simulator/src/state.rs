//! The simulator's shared state: the zone and the fault table, with every
//! change logged and counted in one place whichever way it came (NATS
//! request, scenario step, expiry).

use std::sync::RwLock;

use rg_proto::v1::{fault_request::Action, FaultReply, FaultRequest, FaultSpec};

use crate::faults::{Effect, Fault, FaultError, FaultTable};
use crate::telemetry;
use crate::zone::{Located, Zone};

/// Zone plus faults.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) zone: Zone,
    pub(crate) domain: String,
    pub(crate) ttl: u32,
    pub(crate) noise: crate::noise::NoiseConfig,
    // std RwLock: every query reads it, changes are rare, and it is never
    // held across an await.
    faults: RwLock<FaultTable>,
}

impl State {
    pub(crate) fn new(
        zone: Zone,
        domain: String,
        ttl: u32,
        noise: crate::noise::NoiseConfig,
    ) -> Self {
        Self {
            zone,
            domain,
            ttl,
            noise,
            faults: RwLock::new(FaultTable::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FaultTable> {
        self.faults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, FaultTable> {
        self.faults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The effect on a query for `name`, if a fault applies, and its label
    /// for metrics; else the noise's, labelled `noise`.
    pub(crate) fn effect_for(
        &self,
        name: &str,
        located: Option<&Located>,
    ) -> (Option<Effect>, &'static str) {
        let fault = {
            let table = self.read();
            if table.is_empty() {
                None
            } else {
                table
                    .effect_for(name, located, rg_bus::unix_now_ms(), rand::random::<f64>())
                    .map(|(e, _)| e)
            }
        };
        if let Some(e) = fault {
            return (Some(e), e.as_str());
        }
        if self.noise.is_off() {
            return (None, "none");
        }
        let noise = self
            .noise
            .effect(rand::random::<f64>(), rand::random::<f64>());
        (noise, if noise.is_some() { "noise" } else { "none" })
    }

    /// Applies a request and builds the reply. `origin` says where it came
    /// from, for the log.
    pub(crate) fn apply(&self, request: &FaultRequest, origin: &str) -> FaultReply {
        let now = rg_bus::unix_now_ms();
        let mut reply = FaultReply::default();
        let result: Result<Vec<Fault>, FaultError> = match &request.action {
            Some(Action::Inject(spec)) => self.write().inject(spec, now).map(|f| vec![f]),
            Some(Action::Clear(filter)) => self.write().clear(filter),
            Some(Action::List(_)) => Ok(Vec::new()),
            None => {
                reply.error = "empty request: say inject, clear or list".into();
                Ok(Vec::new())
            }
        };
        match result {
            Ok(changed) => {
                for f in &changed {
                    let action = if matches!(request.action, Some(Action::Inject(_))) {
                        "inject"
                    } else {
                        "clear"
                    };
                    telemetry::fault_changed(action);
                    tracing::info!(fault = %f.describe(), origin, action, expires_at_unix_ms = f.expires_at_unix_ms.unwrap_or(0), "fault changed");
                }
                reply.changed = changed.iter().map(Fault::to_spec).collect();
            }
            Err(e) => {
                telemetry::fault_changed("refused");
                tracing::warn!(origin, error = %e, "fault request refused");
                reply.error = e.to_string();
            }
        }
        let active = self.read().active(now);
        telemetry::faults_active(active.len());
        reply.active = active.iter().map(Fault::to_spec).collect();
        reply
    }

    /// Removes expired faults, logging each.
    pub(crate) fn expire(&self) {
        let now = rg_bus::unix_now_ms();
        let gone = {
            let table = self.read();
            if table.active(now).len() == table.len() {
                return;
            }
            drop(table);
            self.write().expire(now)
        };
        for f in &gone {
            telemetry::fault_changed("expire");
            tracing::info!(fault = %f.describe(), "fault expired");
        }
        telemetry::faults_active(self.read().len());
    }

    /// Injects a spec (scenario steps).
    pub(crate) fn inject(&self, spec: FaultSpec, origin: &str) -> FaultReply {
        self.apply(
            &FaultRequest {
                action: Some(Action::Inject(spec)),
            },
            origin,
        )
    }

    /// Clears by filter (scenario steps).
    pub(crate) fn clear(&self, filter: FaultSpec, origin: &str) -> FaultReply {
        self.apply(
            &FaultRequest {
                action: Some(Action::Clear(filter)),
            },
            origin,
        )
    }
}
