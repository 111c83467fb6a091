//! The AWS side, through the AWS SDK for Rust: reading what a plan needs,
//! applying a [`Change`], and checking capacity. Credentials come from the
//! standard chain (environment, profile, web identity, instance role);
//! `aws.endpoint_url` points every client at an emulator such as moto.
//! Throttling, timeouts and 5xx answers are retried with backoff by the
//! SDK's standard retry strategy (`aws.max_attempts`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudfront::types::DistributionConfig;
use aws_sdk_route53::types::{
    AliasTarget, Change as R53Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
};

use crate::config::{AwsConfig, Config};
use crate::error::{sdk, AwsError, AwsErrorKind};
use crate::plan::{Change, Current};
use crate::route53::{canonical, Alias, RecordSet};

mod inspect;

/// An Auto Scaling group as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRead {
    /// Minimum size.
    pub min: i32,
    /// Maximum size.
    pub max: i32,
    /// Desired capacity.
    pub desired: i32,
    /// Instances InService.
    pub in_service: i32,
    /// Every instance id of the group.
    pub instances: Vec<String>,
}

/// Clients for every API a failover calls.
pub struct Aws {
    shared: SdkConfig,
    route53: aws_sdk_route53::Client,
    cloudfront: aws_sdk_cloudfront::Client,
    autoscaling: Mutex<BTreeMap<String, aws_sdk_autoscaling::Client>>,
    ecs: Mutex<BTreeMap<String, aws_sdk_ecs::Client>>,
    elbv2: Mutex<BTreeMap<String, aws_sdk_elasticloadbalancingv2::Client>>,
    ec2: Mutex<BTreeMap<String, aws_sdk_ec2::Client>>,
    rds: Mutex<BTreeMap<String, aws_sdk_rds::Client>>,
    endpoints: BTreeMap<String, String>,
    /// API calls made (for the audit trail and BENCHMARKS.md).
    calls: std::sync::atomic::AtomicU64,
}

/// The AWS SDK's HTTPS client panics (the whole process) when this machine
/// has no CA certificate; this looks first, with the loader it uses, and
/// says what to do.
fn ca_certificates_present() -> anyhow::Result<()> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        anyhow::bail!(
            "no CA certificate found on this machine{}: the AWS SDK cannot be started without one, \
             even against an http:// emulator; install them (Debian: apt-get install ca-certificates) \
             or point SSL_CERT_FILE at a PEM bundle",
            if why.is_empty() { String::new() } else { format!(" ({why})") }
        );
    }
    Ok(())
}

impl Aws {
    /// Loads credentials and builds the clients. Fails, saying why, where
    /// the SDK could not make a call at all (no CA certificates).
    pub async fn new(config: &AwsConfig) -> anyhow::Result<Self> {
        ca_certificates_present()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.global_region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            );
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if config.emulator_credentials {
            loader = loader.credentials_provider(aws_sdk_route53::config::Credentials::new(
                "emulator",
                "emulator",
                None,
                None,
                "regionguard-emulator",
            ));
        }
        let shared = loader.load().await;
        let endpoint = |service: &str| config.endpoints.get(service).cloned();
        let mut route53 = aws_sdk_route53::config::Builder::from(&shared);
        if let Some(url) = endpoint("route53") {
            route53 = route53.endpoint_url(url);
        }
        let mut cloudfront = aws_sdk_cloudfront::config::Builder::from(&shared);
        if let Some(url) = endpoint("cloudfront") {
            cloudfront = cloudfront.endpoint_url(url);
        }
        Ok(Self {
            route53: aws_sdk_route53::Client::from_conf(route53.build()),
            cloudfront: aws_sdk_cloudfront::Client::from_conf(cloudfront.build()),
            autoscaling: Mutex::new(BTreeMap::new()),
            ecs: Mutex::new(BTreeMap::new()),
            elbv2: Mutex::new(BTreeMap::new()),
            ec2: Mutex::new(BTreeMap::new()),
            rds: Mutex::new(BTreeMap::new()),
            endpoints: config.endpoints.clone(),
            shared,
            calls: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// API calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn call(&self) {
        crate::telemetry::aws_call();
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        regional(&self.autoscaling, region, || {
            let mut conf = aws_sdk_autoscaling::config::Builder::from(&self.shared)
                .region(Region::new(region.to_owned()));
            if let Some(url) = self.endpoints.get("autoscaling") {
                conf = conf.endpoint_url(url);
            }
            aws_sdk_autoscaling::Client::from_conf(conf.build())
        })
    }

    fn ecs(&self, region: &str) -> aws_sdk_ecs::Client {
        regional(&self.ecs, region, || {
            let mut conf = aws_sdk_ecs::config::Builder::from(&self.shared)
                .region(Region::new(region.to_owned()));
            if let Some(url) = self.endpoints.get("ecs") {
                conf = conf.endpoint_url(url);
            }
            aws_sdk_ecs::Client::from_conf(conf.build())
        })
    }

    // === reading ===

    /// What a plan from `from` to any of `targets` needs to know.
    pub async fn read(
        &self,
        config: &Config,
        from: &str,
        targets: &[&str],
    ) -> Result<Current, AwsError> {
        let regions: Vec<&str> = std::iter::once(from)
            .chain(targets.iter().copied())
            .collect();
        self.read_each(config, &regions, |_, e| Err(e)).await
    }

    /// What the declared resources of `regions` hold now, each read on
    /// its own. A read that fails goes to `on_error` with what was being
    /// read: it stops the whole read by returning the error, or lets it
    /// go on (the resource is then absent from the state).
    pub async fn read_each(
        &self,
        config: &Config,
        regions: &[&str],
        mut on_error: impl FnMut(String, AwsError) -> Result<(), AwsError>,
    ) -> Result<Current, AwsError> {
        let mut current = Current::default();
        for r in &config.route53 {
            let found = match self.records(&r.zone_id, &r.name, &r.record_type).await {
                Ok(sets) => sets,
                Err(e) => {
                    let what = format!("route53 {} {} (zone {})", r.name, r.record_type, r.zone_id);
                    on_error(what, e)?;
                    Vec::new()
                }
            };
            current.records.push(found);
        }
        for c in &config.cloudfront {
            let found = match self.origin_domain(&c.distribution_id, &c.origin_id).await {
                Ok(domain) => domain,
                Err(e) => {
                    on_error(
                        format!("cloudfront origin {} of {}", c.origin_id, c.distribution_id),
                        e,
                    )?;
                    None
                }
            };
            current.origins.push(found);
        }
        for g in &config.cloudfront_origin_groups {
            let found = match self.origin_group(&g.distribution_id, &g.group_id).await {
                Ok(members) => members,
                Err(e) => {
                    on_error(
                        format!(
                            "cloudfront origin group {} of {}",
                            g.group_id, g.distribution_id
                        ),
                        e,
                    )?;
                    None
                }
            };
            current.origin_groups.push(found);
        }
        for b in &config.cloudfront_behaviors {
            let found = match self.behavior_target(&b.distribution_id, b.pattern()).await {
                Ok(target) => target,
                Err(e) => {
                    let which = b.pattern().unwrap_or("default");
                    on_error(
                        format!("cloudfront behaviour {which} of {}", b.distribution_id),
                        e,
                    )?;
                    None
                }
            };
            current.behaviors.push(found);
            if !current
                .distribution_targets
                .contains_key(&b.distribution_id)
            {
                // An unreadable distribution was reported just above.
                if let Ok(ids) = self.distribution_targets(&b.distribution_id).await {
                    current
                        .distribution_targets
                        .insert(b.distribution_id.clone(), ids);
                }
            }
        }
        for &region in regions {
            let Some(res) = config.regions.get(region) else {
                continue;
            };
            for g in &res.autoscaling_groups {
                match self.group(region, g).await {
                    Ok(Some((min, max, desired, _))) => {
                        current
                            .groups
                            .insert((region.to_owned(), g.clone()), (min, max, desired));
                    }
                    Ok(None) => {}
                    Err(e) => on_error(format!("asg {g} in {region}"), e)?,
                }
            }
            for id in &res.promote_replicas {
                match self.db_instance(region, id).await {
                    Ok(Some(db)) => {
                        current
                            .databases
                            .insert((region.to_owned(), id.clone()), db);
                    }
                    Ok(None) => {}
                    Err(e) => on_error(format!("rds {id} in {region}"), e)?,
                }
            }
            for s in &res.ecs_services {
                match self.service(region, &s.cluster, &s.service).await {
                    Ok(Some((desired, _))) => {
                        let key = (region.to_owned(), s.cluster.clone(), s.service.clone());
                        current.services.insert(key, desired);
                    }
                    Ok(None) => {}
                    Err(e) => on_error(format!("ecs {}/{} in {region}", s.cluster, s.service), e)?,
                }
            }
        }
        Ok(current)
    }

    /// The record sets named `name` of type `record_type` in the zone.
    pub async fn records(
        &self,
        zone_id: &str,
        name: &str,
        record_type: &str,
    ) -> Result<Vec<RecordSet>, AwsError> {
        self.call();
        let want = canonical(name);
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(&want)
            .start_record_type(RrType::from(record_type))
            .max_items(100)
            .send()
            .await
            .map_err(sdk("route53:ListResourceRecordSets"))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .filter(|r| canonical(r.name()) == want && r.r#type().as_str() == record_type)
            .map(|r| {
                let alias = r.alias_target().map(|a| Alias {
                    hosted_zone_id: a.hosted_zone_id().to_owned(),
                    dns_name: canonical(a.dns_name()),
                    evaluate_target_health: a.evaluate_target_health(),
                });
                RecordSet {
                    name: want.clone(),
                    record_type: record_type.to_owned(),
                    // An alias record has no TTL (an emulator may say 0).
                    ttl: if alias.is_some() { None } else { r.ttl() },
                    values: r
                        .resource_records()
                        .iter()
                        .map(|v| v.value().to_owned())
                        .collect(),
                    alias,
                    set_identifier: r.set_identifier().map(str::to_owned),
                    weight: r.weight(),
                    failover: r.failover().map(|f| f.as_str().to_owned()),
                    region: r.region().map(|g| g.as_str().to_owned()),
                    health_check_id: r.health_check_id().map(str::to_owned),
                    other_policy: if r.geo_location().is_some() {
                        Some("geolocation".into())
                    } else if r.geo_proximity_location().is_some() {
                        Some("geoproximity".into())
                    } else if r.cidr_routing_config().is_some() {
                        Some("ip-based".into())
                    } else if r.multi_value_answer().is_some() {
                        Some("multivalue".into())
                    } else {
                        None
                    },
                }
            })
            .collect())
    }

    /// The ids of a distribution's origins and origin groups.
    pub async fn distribution_targets(
        &self,
        distribution_id: &str,
    ) -> Result<std::collections::BTreeSet<String>, AwsError> {
        let (_, dc) = self.distribution(distribution_id).await?;
        let mut ids = std::collections::BTreeSet::new();
        if let Some(dc) = dc {
            ids.extend(
                dc.origins()
                    .iter()
                    .flat_map(|o| o.items())
                    .map(|o| o.id().to_owned()),
            );
            ids.extend(
                dc.origin_groups()
                    .and_then(|g| g.items.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .map(|g| g.id().to_owned()),
            );
        }
        Ok(ids)
    }

    /// The target origin of a cache behaviour now (`None` pattern: the
    /// default behaviour; `None` result: no such behaviour).
    pub async fn behavior_target(
        &self,
        distribution_id: &str,
        path_pattern: Option<&str>,
    ) -> Result<Option<String>, AwsError> {
        let (_, config) = self.distribution(distribution_id).await?;
        let Some(dc) = config else {
            return Ok(None);
        };
        Ok(match path_pattern {
            None => dc
                .default_cache_behavior()
                .map(|b| b.target_origin_id().to_owned()),
            Some(p) => dc
                .cache_behaviors()
                .and_then(|b| b.items.as_deref())
                .unwrap_or_default()
                .iter()
                .find(|b| b.path_pattern() == p)
                .map(|b| b.target_origin_id().to_owned()),
        })
    }

    /// The domain of a CloudFront origin now (None: no such origin).
    pub async fn origin_domain(
        &self,
        distribution_id: &str,
        origin_id: &str,
    ) -> Result<Option<String>, AwsError> {
        let (_, config) = self.distribution(distribution_id).await?;
        Ok(config
            .as_ref()
            .and_then(|d| d.origins())
            .and_then(|o| o.items().iter().find(|o| o.id() == origin_id))
            .map(|o| o.domain_name().to_owned()))
    }

    /// The members of a CloudFront origin group now, primary first (None:
    /// no such group).
    pub async fn origin_group(
        &self,
        distribution_id: &str,
        group_id: &str,
    ) -> Result<Option<Vec<String>>, AwsError> {
        let (_, config) = self.distribution(distribution_id).await?;
        Ok(config
            .as_ref()
            .and_then(|d| d.origin_groups())
            .and_then(|g| g.items().iter().find(|g| g.id() == group_id))
            .and_then(|g| g.members())
            .map(|m| m.items().iter().map(|m| m.origin_id().to_owned()).collect()))
    }

    /// (min, max, desired, InService instances) of a group; None if absent.
    pub async fn group(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<(i32, i32, i32, i32)>, AwsError> {
        Ok(self
            .group_detail(region, name)
            .await?
            .map(|g| (g.min, g.max, g.desired, g.in_service)))
    }

    /// A group's sizes and instances; None if absent.
    pub async fn group_detail(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<GroupRead>, AwsError> {
        self.call();
        let out = self
            .autoscaling(region)
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(sdk("autoscaling:DescribeAutoScalingGroups"))?;
        Ok(out.auto_scaling_groups().first().map(|g| GroupRead {
            min: g.min_size().unwrap_or(0),
            max: g.max_size().unwrap_or(0),
            desired: g.desired_capacity().unwrap_or(0),
            in_service: g
                .instances()
                .iter()
                .filter(|i| {
                    i.lifecycle_state()
                        == Some(&aws_sdk_autoscaling::types::LifecycleState::InService)
                })
                .count() as i32,
            instances: g
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect(),
        }))
    }

    /// (desired, running) of an ECS service; None if absent.
    pub async fn service(
        &self,
        region: &str,
        cluster: &str,
        service: &str,
    ) -> Result<Option<(i32, i32)>, AwsError> {
        self.call();
        let out = self
            .ecs(region)
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(sdk("ecs:DescribeServices"))?;
        Ok(out
            .services()
            .iter()
            .find(|s| s.service_name() == Some(service) && s.status() != Some("INACTIVE"))
            .map(|s| (s.desired_count(), s.running_count())))
    }

    // === changing ===

    /// Makes the resource equal `change` (a step's `after`, or its
    /// `before` when rolling back). `Verify` changes nothing.
    pub async fn apply(&self, change: &Change, insync_timeout: Duration) -> Result<(), AwsError> {
        match change {
            Change::Route53 { zone_id, records } => {
                self.upsert(zone_id, records, insync_timeout).await
            }
            Change::CloudFrontOrigin {
                distribution_id,
                origin_id,
                domain,
            } => {
                self.edit_distribution(distribution_id, |dc| {
                    let origin = dc
                        .origins
                        .as_mut()
                        .and_then(|o| o.items.iter_mut().find(|o| o.id == *origin_id))
                        .ok_or_else(|| {
                            format!("distribution {distribution_id} has no origin {origin_id}")
                        })?;
                    origin.domain_name.clone_from(domain);
                    Ok(())
                })
                .await
            }
            Change::CloudFrontBehavior {
                distribution_id,
                path_pattern,
                target_origin_id,
            } => {
                self.edit_distribution(distribution_id, |dc| {
                    let which = path_pattern.as_deref().unwrap_or("default");
                    let slot = match path_pattern {
                        None => dc
                            .default_cache_behavior
                            .as_mut()
                            .map(|b| &mut b.target_origin_id),
                        Some(p) => dc
                            .cache_behaviors
                            .as_mut()
                            .and_then(|b| b.items.as_mut())
                            .and_then(|items| items.iter_mut().find(|b| b.path_pattern == *p))
                            .map(|b| &mut b.target_origin_id),
                    }
                    .ok_or_else(|| {
                        format!("distribution {distribution_id} has no {which} behaviour")
                    })?;
                    slot.clone_from(target_origin_id);
                    Ok(())
                })
                .await
            }
            Change::CloudFrontOriginGroup {
                distribution_id,
                group_id,
                members,
            } => {
                self.edit_distribution(distribution_id, |dc| {
                    let group = dc
                        .origin_groups
                        .as_mut()
                        .and_then(|g| g.items.as_mut())
                        .and_then(|g| g.iter_mut().find(|g| g.id == *group_id))
                        .ok_or_else(|| {
                            format!("distribution {distribution_id} has no origin group {group_id}")
                        })?;
                    let now = group
                        .members
                        .as_mut()
                        .ok_or_else(|| format!("origin group {group_id} has no members"))?;
                    let mut reordered = Vec::with_capacity(members.len());
                    for id in members {
                        let member = now
                            .items
                            .iter()
                            .find(|m| m.origin_id == *id)
                            .ok_or_else(|| format!("origin group {group_id} has no member {id}"))?;
                        reordered.push(member.clone());
                    }
                    if reordered.len() != now.items.len() {
                        return Err(format!(
                            "origin group {group_id} has {} members, the change names {}",
                            now.items.len(),
                            reordered.len()
                        ));
                    }
                    now.items = reordered;
                    Ok(())
                })
                .await
            }
            Change::Autoscaling {
                region,
                group,
                min,
                max,
                desired,
            } => {
                self.call();
                self.autoscaling(region)
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(group)
                    .min_size(*min)
                    .max_size(*max)
                    .desired_capacity(*desired)
                    .send()
                    .await
                    .map_err(sdk("autoscaling:UpdateAutoScalingGroup"))?;
                Ok(())
            }
            Change::Ecs {
                region,
                cluster,
                service,
                desired,
            } => {
                self.call();
                self.ecs(region)
                    .update_service()
                    .cluster(cluster)
                    .service(service)
                    .desired_count(*desired)
                    .send()
                    .await
                    .map_err(sdk("ecs:UpdateService"))?;
                Ok(())
            }
            Change::DatabasePromotion {
                region,
                db_instance,
                replica_of: None,
            } => {
                self.promote_replica(region, db_instance, insync_timeout)
                    .await
            }
            Change::DatabasePromotion {
                region,
                db_instance,
                replica_of: Some(source),
            } => Err(AwsError::new(
                "rds:PromoteReadReplica",
                AwsErrorKind::Other,
                format!("{db_instance} in {region} cannot be made a read replica of {source} again: a promotion cannot be undone"),
            )),
            Change::Verify { .. } => Ok(()),
            Change::RoutingSwitch { .. } => Err(AwsError::new(
                "none",
                AwsErrorKind::Other,
                "a routing switch is not an AWS resource",
            )),
        }
    }

    async fn upsert(
        &self,
        zone_id: &str,
        records: &[RecordSet],
        insync_timeout: Duration,
    ) -> Result<(), AwsError> {
        let invalid = |e: aws_sdk_route53::error::BuildError| {
            AwsError::new(
                "route53:ChangeResourceRecordSets",
                AwsErrorKind::Other,
                e.to_string(),
            )
        };
        let mut batch = ChangeBatch::builder().comment("regionguard failover");
        for r in records {
            if let Some(policy) = &r.other_policy {
                // Never written: its routing would be lost.
                return Err(AwsError::new(
                    "route53:ChangeResourceRecordSets",
                    AwsErrorKind::Other,
                    format!(
                        "{} {} uses {policy} routing, which regionguard does not write",
                        r.name, r.record_type
                    ),
                ));
            }
            let mut set = ResourceRecordSet::builder()
                .name(&r.name)
                .r#type(RrType::from(r.record_type.as_str()))
                .set_set_identifier(r.set_identifier.clone())
                .set_weight(r.weight)
                .set_health_check_id(r.health_check_id.clone());
            if let Some(f) = &r.failover {
                set = set.failover(ResourceRecordSetFailover::from(f.as_str()));
            }
            if let Some(region) = &r.region {
                set = set.region(ResourceRecordSetRegion::from(region.as_str()));
            }
            match &r.alias {
                Some(a) => {
                    set = set.alias_target(
                        AliasTarget::builder()
                            .hosted_zone_id(&a.hosted_zone_id)
                            .dns_name(&a.dns_name)
                            .evaluate_target_health(a.evaluate_target_health)
                            .build()
                            .map_err(invalid)?,
                    );
                }
                None => set = set.set_ttl(r.ttl),
            }
            for v in &r.values {
                set = set.resource_records(
                    ResourceRecord::builder()
                        .value(v)
                        .build()
                        .map_err(invalid)?,
                );
            }
            batch = batch.changes(
                R53Change::builder()
                    .action(ChangeAction::Upsert)
                    .resource_record_set(set.build().map_err(invalid)?)
                    .build()
                    .map_err(invalid)?,
            );
        }
        self.call();
        let out = self
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch.build().map_err(invalid)?)
            .send()
            .await
            .map_err(sdk("route53:ChangeResourceRecordSets"))?;
        let Some(id) = out.change_info().map(|c| c.id().to_owned()) else {
            return Ok(());
        };
        // Wait until every Route 53 server has the change.
        let deadline = tokio::time::Instant::now() + insync_timeout;
        loop {
            self.call();
            let status = self
                .route53
                .get_change()
                .id(&id)
                .send()
                .await
                .map_err(sdk("route53:GetChange"))?;
            if status.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(AwsError::new(
                    "route53:GetChange",
                    AwsErrorKind::Other,
                    format!("change {id} not INSYNC within {insync_timeout:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// A distribution's config (None: it has none) and its ETag.
    async fn distribution(
        &self,
        distribution_id: &str,
    ) -> Result<(String, Option<DistributionConfig>), AwsError> {
        self.call();
        let out = self
            .cloudfront
            .get_distribution_config()
            .id(distribution_id)
            .send()
            .await
            .map_err(sdk("cloudfront:GetDistributionConfig"))?;
        Ok((
            out.e_tag().unwrap_or_default().to_owned(),
            out.distribution_config().cloned(),
        ))
    }

    /// Reads a distribution's config with its ETag, lets `edit` change it,
    /// and writes it back with `IfMatch`: a config changed by someone else
    /// in between is refused by CloudFront rather than overwritten.
    async fn edit_distribution(
        &self,
        distribution_id: &str,
        edit: impl FnOnce(&mut DistributionConfig) -> Result<(), String>,
    ) -> Result<(), AwsError> {
        let (etag, config) = self.distribution(distribution_id).await?;
        let Some(mut dc) = config else {
            return Err(AwsError::new(
                "cloudfront:GetDistributionConfig",
                AwsErrorKind::NotFound,
                format!("distribution {distribution_id} has no config"),
            ));
        };
        // What the edit misses (an origin, a group, a member) is not in
        // the distribution.
        edit(&mut dc).map_err(|missing| {
            AwsError::new(
                "cloudfront:UpdateDistribution",
                AwsErrorKind::NotFound,
                missing,
            )
        })?;
        self.call();
        self.cloudfront
            .update_distribution()
            .id(distribution_id)
            .if_match(etag)
            .distribution_config(dc)
            .send()
            .await
            .map_err(sdk("cloudfront:UpdateDistribution"))?;
        Ok(())
    }
}

/// The client of `region`, made once.
fn regional<C: Clone>(
    clients: &Mutex<BTreeMap<String, C>>,
    region: &str,
    make: impl FnOnce() -> C,
) -> C {
    let mut clients = clients.lock().unwrap_or_else(|p| p.into_inner());
    clients
        .entry(region.to_owned())
        .or_insert_with(make)
        .clone()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The least-privilege policy shipped in deploy/iam allows exactly the
    /// calls this module makes: no more, no fewer.
    #[test]
    fn the_shipped_iam_policy_allows_exactly_the_calls_made() {
        let source = [include_str!("aws.rs"), include_str!("aws/inspect.rs")].concat();
        let made: BTreeSet<String> = source
            .match_indices("sdk(\"")
            .map(|(i, _)| {
                let rest = &source[i + 5..];
                rest[..rest.find('"').unwrap_or(0)].to_owned()
            })
            .filter(|c| !c.is_empty())
            .collect();
        let policy: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/iam/failover-policy.json"))
                .expect("the policy is JSON");
        let mut allowed = BTreeSet::new();
        for statement in policy["Statement"].as_array().expect("statements") {
            assert_eq!(statement["Effect"], "Allow");
            match &statement["Action"] {
                serde_json::Value::String(a) => {
                    allowed.insert(a.clone());
                }
                serde_json::Value::Array(list) => {
                    allowed.extend(list.iter().filter_map(|a| a.as_str().map(str::to_owned)));
                }
                other => panic!("unexpected Action {other}"),
            }
        }
        assert_eq!(made, allowed);
        assert!(
            !allowed.iter().any(|a| a.contains('*')),
            "no wildcard actions"
        );
    }
}
