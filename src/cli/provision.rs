//! `regionguard provision`: creates (or brings in line with the
//! configuration) every stream and key-value bucket the services use, then
//! exits. Services do this themselves at start when their NATS user may;
//! with least-privilege users (deploy/nats/auth.conf) only an
//! administrator may, once, before the services start.

use std::process::ExitCode;

use rg_bus::state::StateBucket;
use rg_bus::streams::Provisioned;

use super::Globals;

pub(crate) async fn run(globals: Globals) -> ExitCode {
    let config = match globals.load(Vec::new()) {
        Ok(c) => c,
        Err(e) => return super::config_error(&e),
    };
    let nats = &config.nats;
    let client = match rg_bus::connect::connect_once(nats, "regionguard-provision").await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(nats.request_timeout);
    let streams = match rg_bus::streams::provision(&js, nats).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e} (`regionguard provision` needs a NATS user that may create and update streams)");
            return ExitCode::FAILURE;
        }
    };
    for s in &streams {
        match s {
            Provisioned::Created(name) => println!("stream {name}: created"),
            Provisioned::Unchanged(name) => println!("stream {name}: up to date"),
            Provisioned::Updated(name, changes) => {
                println!("stream {name}: updated ({})", changes.join(", "))
            }
        }
    }
    let buckets = [
        (config.detector.state_bucket.clone(), "detector"),
        (config.cascade.state_bucket.clone(), "cascade"),
        (config.failover.state_bucket.clone(), "failover"),
        (config.notifier.state_bucket.clone(), "notifier"),
        (format!("{}_SENT", config.notifier.state_bucket), "notifier"),
    ];
    let replicas = nats.streams.replicas;
    for (bucket, service) in buckets {
        let description = format!("regionguard {service} state");
        match StateBucket::open(&js, &bucket, &description, replicas).await {
            Ok(_) => println!("bucket {bucket} (stream KV_{bucket}, the {service}'s state): ready"),
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "provisioned on {}: services can now run with users that may not create streams",
        nats.servers_for_log()
    );
    ExitCode::SUCCESS
}
