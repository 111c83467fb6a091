//! Idempotent provisioning of the streams in DESIGN.md.
//!
//! Every service calls [`provision`] at start: creating a stream that exists
//! with the same settings is a no-op; one whose settings changed in config
//! (max age, replicas, duplicate window, subjects) is updated and the change
//! logged; a change JetStream cannot apply in place (storage kind) is
//! reported as an error naming the stream and the setting.

use async_nats::jetstream::{
    self,
    context::{CreateStreamErrorKind, GetStreamErrorKind},
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
    ErrorCode,
};

use crate::connect::{NatsConfig, StorageKind};
use crate::subjects::{Stream, Subjects};

/// What provisioning did to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// The stream did not exist and was created.
    Created(String),
    /// The stream existed with the wanted settings.
    Unchanged(String),
    /// The stream existed and was updated; the settings that changed.
    Updated(String, Vec<String>),
}

/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// JetStream did not answer (NATS down, JetStream not enabled, timeout):
    /// worth retrying.
    #[error("JetStream unavailable while provisioning stream {stream}: {message}")]
    Unavailable {
        /// The stream.
        stream: String,
        /// The client's message.
        message: String,
    },
    /// A setting differs and JetStream cannot change it in place.
    #[error("stream {stream} exists with {setting} = {existing}, config wants {wanted}; delete the stream or change the config")]
    Conflict {
        /// The stream.
        stream: String,
        /// The setting.
        setting: &'static str,
        /// Its current value.
        existing: String,
        /// The configured value.
        wanted: String,
    },
    /// JetStream refused the stream's config.
    #[error("JetStream refused stream {stream}: {message}")]
    Refused {
        /// The stream.
        stream: String,
        /// The server's message.
        message: String,
    },
}

impl ProvisionError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// The wanted config of one stream.
pub fn stream_config(nats: &NatsConfig, stream: Stream) -> Config {
    let subjects = Subjects::new(&nats.prefix);
    let s = &nats.streams;
    let max_age = match stream {
        Stream::Health => s.health_max_age,
        Stream::Alerts => s.alerts_max_age,
        Stream::Decisions => s.decisions_max_age,
        Stream::Snapshots => s.health_max_age,
        Stream::DeadLetter => s.deadletter_max_age,
    };
    Config {
        name: subjects.stream(stream),
        subjects: vec![subjects.stream_subject(stream)],
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_age,
        max_messages_per_subject: if stream == Stream::Snapshots { 1 } else { -1 },
        storage: match s.storage {
            StorageKind::File => StorageType::File,
            StorageKind::Memory => StorageType::Memory,
        },
        num_replicas: s.replicas,
        duplicate_window: s.duplicate_window.min(max_age),
        description: Some(description(stream).to_owned()),
        ..Default::default()
    }
}

fn description(stream: Stream) -> &'static str {
    match stream {
        Stream::Health => "regionguard HealthEvents from the probers",
        Stream::Alerts => "regionguard Alerts from the detector, cascade and notifier services",
        Stream::Decisions => "regionguard FailoverDecisions: the audit trail",
        Stream::Snapshots => "regionguard DashboardSnapshots (latest only)",
        Stream::DeadLetter => {
            "regionguard payloads that did not decode, with their original subject"
        }
    }
}

/// Whether `name` exists: `Some(false)` only when JetStream says it does
/// not; `None` when it cannot tell (no leader, no answer).
pub async fn exists(js: &jetstream::Context, name: &str) -> Option<bool> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(_) => Some(true),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Some(false)
            }
            _ => None,
        },
    }
}

/// Creates or updates every stream of the design.
pub async fn provision(
    js: &jetstream::Context,
    nats: &NatsConfig,
) -> Result<Vec<Provisioned>, ProvisionError> {
    let mut done = Vec::with_capacity(Stream::ALL.len());
    for stream in Stream::ALL {
        let outcome = ensure(js, stream_config(nats, stream)).await?;
        match &outcome {
            Provisioned::Created(name) => tracing::info!(stream = %name, "created stream"),
            Provisioned::Updated(name, changes) => {
                tracing::warn!(stream = %name, changes = ?changes, "updated stream settings to match config")
            }
            Provisioned::Unchanged(name) => tracing::debug!(stream = %name, "stream up to date"),
        }
        done.push(outcome);
    }
    Ok(done)
}

/// Creates `wanted`, or brings an existing stream of that name in line.
pub async fn ensure(
    js: &jetstream::Context,
    wanted: Config,
) -> Result<Provisioned, ProvisionError> {
    let name = wanted.name.clone();
    let unavailable = |message: String| ProvisionError::Unavailable {
        stream: name.clone(),
        message,
    };
    // Two services may race to create the stream: a create that finds it
    // already there goes round again and compares.
    for attempt in 0..3 {
        let last = attempt == 2;
        match js.get_stream(&name).await {
            Ok(stream) => {
                let existing = stream.cached_info().config.clone();
                let changes = differences(&existing, &wanted)?;
                if changes.is_empty() {
                    return Ok(Provisioned::Unchanged(name));
                }
                js.update_stream(wanted.clone())
                    .await
                    .map_err(|e| ProvisionError::Refused {
                        stream: name.clone(),
                        message: e.to_string(),
                    })?;
                return Ok(Provisioned::Updated(name, changes));
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(err)
                    if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    match js.create_stream(wanted.clone()).await {
                        Ok(_) => return Ok(Provisioned::Created(name)),
                        Err(e) => match e.kind() {
                            // Created by someone else meanwhile (NATS reports
                            // that as a name clash or, in 2.9, as a subject
                            // overlap): read it and compare. A subject overlap
                            // that persists is another stream's.
                            CreateStreamErrorKind::JetStream(err)
                                if !last
                                    && (err.error_code() == ErrorCode::STREAM_NAME_EXIST
                                        || err.error_code()
                                            == ErrorCode::STREAM_SUBJECT_OVERLAP) =>
                            {
                                continue
                            }
                            // A cluster still forming (its meta leader does
                            // not yet know enough servers for the replicas)
                            // says "no suitable peers": wait for it, as for
                            // an absent JetStream; the wait logs the reason.
                            CreateStreamErrorKind::JetStream(err)
                                if err.error_code() == ErrorCode::CLUSTER_NO_PEERS =>
                            {
                                return Err(unavailable(format!(
                                    "{err} (the cluster may still be forming, or has fewer servers than the {} replicas asked for)",
                                    wanted.num_replicas.max(1)
                                )))
                            }
                            CreateStreamErrorKind::JetStream(err) => {
                                return Err(ProvisionError::Refused {
                                    stream: name.clone(),
                                    message: err.to_string(),
                                })
                            }
                            _ => return Err(unavailable(e.to_string())),
                        },
                    }
                }
                _ => return Err(unavailable(e.to_string())),
            },
        }
    }
    Err(unavailable(
        "stream kept appearing and disappearing while provisioning".into(),
    ))
}

fn differences(existing: &Config, wanted: &Config) -> Result<Vec<String>, ProvisionError> {
    if existing.storage != wanted.storage {
        return Err(ProvisionError::Conflict {
            stream: wanted.name.clone(),
            setting: "storage",
            existing: format!("{:?}", existing.storage),
            wanted: format!("{:?}", wanted.storage),
        });
    }
    if existing.retention != wanted.retention {
        return Err(ProvisionError::Conflict {
            stream: wanted.name.clone(),
            setting: "retention",
            existing: format!("{:?}", existing.retention),
            wanted: format!("{:?}", wanted.retention),
        });
    }
    let mut changes = Vec::new();
    let mut note = |setting: &str, a: String, b: String| {
        if a != b {
            changes.push(format!("{setting}: {a} -> {b}"));
        }
    };
    note(
        "subjects",
        format!("{:?}", existing.subjects),
        format!("{:?}", wanted.subjects),
    );
    note(
        "max_age",
        format!("{:?}", existing.max_age),
        format!("{:?}", wanted.max_age),
    );
    note(
        "num_replicas",
        existing.num_replicas.max(1).to_string(),
        wanted.num_replicas.to_string(),
    );
    note(
        "duplicate_window",
        format!("{:?}", existing.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    note(
        "allow_direct",
        existing.allow_direct.to_string(),
        wanted.allow_direct.to_string(),
    );
    note(
        "max_messages_per_subject",
        existing.max_messages_per_subject.to_string(),
        wanted.max_messages_per_subject.to_string(),
    );
    Ok(changes)
}
