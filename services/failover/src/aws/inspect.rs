//! Deep-health reads (Elastic Load Balancing v2, EC2 status checks, RDS)
//! and the one database change a failover makes: promoting a cross-region
//! read replica.

use std::time::Duration;

use aws_config::Region;
use tokio::time::Instant;

use super::{regional, Aws};
use crate::deep::{DbRead, InstanceRead, TargetGroupRead};
use crate::error::{sdk, AwsError, AwsErrorKind};

impl Aws {
    fn elbv2(&self, region: &str) -> aws_sdk_elasticloadbalancingv2::Client {
        regional(&self.elbv2, region, || {
            let mut conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&self.shared)
                .region(Region::new(region.to_owned()));
            if let Some(url) = self.endpoints.get("elasticloadbalancing") {
                conf = conf.endpoint_url(url);
            }
            aws_sdk_elasticloadbalancingv2::Client::from_conf(conf.build())
        })
    }

    fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        regional(&self.ec2, region, || {
            let mut conf = aws_sdk_ec2::config::Builder::from(&self.shared)
                .region(Region::new(region.to_owned()));
            if let Some(url) = self.endpoints.get("ec2") {
                conf = conf.endpoint_url(url);
            }
            aws_sdk_ec2::Client::from_conf(conf.build())
        })
    }

    fn rds(&self, region: &str) -> aws_sdk_rds::Client {
        regional(&self.rds, region, || {
            let mut conf = aws_sdk_rds::config::Builder::from(&self.shared)
                .region(Region::new(region.to_owned()));
            if let Some(url) = self.endpoints.get("rds") {
                conf = conf.endpoint_url(url);
            }
            aws_sdk_rds::Client::from_conf(conf.build())
        })
    }

    /// A target group (by name or ARN), the states of the load balancers
    /// in front of it and the health of its targets; `None` when absent.
    pub async fn target_group(
        &self,
        region: &str,
        name_or_arn: &str,
    ) -> Result<Option<TargetGroupRead>, AwsError> {
        let client = self.elbv2(region);
        self.call();
        let mut ask = client.describe_target_groups();
        ask = if name_or_arn.starts_with("arn:") {
            ask.target_group_arns(name_or_arn)
        } else {
            ask.names(name_or_arn)
        };
        let out = match ask
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:DescribeTargetGroups"))
        {
            Ok(out) => out,
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(tg) = out.target_groups().first() else {
            return Ok(None);
        };
        let arn = tg.target_group_arn().unwrap_or_default().to_owned();
        let mut read = TargetGroupRead {
            name: tg.target_group_name().unwrap_or(name_or_arn).to_owned(),
            target_type: tg
                .target_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            ..Default::default()
        };
        if !tg.load_balancer_arns().is_empty() {
            self.call();
            let lbs = client
                .describe_load_balancers()
                .set_load_balancer_arns(Some(tg.load_balancer_arns().to_vec()))
                .send()
                .await
                .map_err(sdk("elasticloadbalancing:DescribeLoadBalancers"))?;
            read.load_balancers = lbs
                .load_balancers()
                .iter()
                .map(|lb| {
                    (
                        lb.load_balancer_name().unwrap_or_default().to_owned(),
                        lb.state()
                            .and_then(|s| s.code())
                            .map_or("unknown", |c| c.as_str())
                            .to_owned(),
                    )
                })
                .collect();
        }
        self.call();
        let health = client
            .describe_target_health()
            .target_group_arn(&arn)
            .send()
            .await
            .map_err(sdk("elasticloadbalancing:DescribeTargetHealth"))?;
        read.targets = health
            .target_health_descriptions()
            .iter()
            .map(|d| {
                let h = d.target_health();
                (
                    d.target()
                        .and_then(|t| t.id())
                        .unwrap_or_default()
                        .to_owned(),
                    h.and_then(|h| h.state())
                        .map_or("unknown", |s| s.as_str())
                        .to_owned(),
                    h.and_then(|h| h.reason())
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_default(),
                )
            })
            .collect();
        Ok(Some(read))
    }

    /// EC2's status checks of `ids` (stopped ones included).
    pub async fn instance_statuses(
        &self,
        region: &str,
        ids: &[String],
    ) -> Result<Vec<InstanceRead>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.call();
        let out = self
            .ec2(region)
            .describe_instance_status()
            .set_instance_ids(Some(ids.to_vec()))
            .include_all_instances(true)
            .send()
            .await
            .map_err(sdk("ec2:DescribeInstanceStatus"))?;
        let status = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            s.and_then(|s| s.status())
                .map_or("unknown", |s| s.as_str())
                .to_owned()
        };
        let mut found: Vec<InstanceRead> = out
            .instance_statuses()
            .iter()
            .map(|s| InstanceRead {
                id: s.instance_id().unwrap_or_default().to_owned(),
                state: s
                    .instance_state()
                    .and_then(|st| st.name())
                    .map_or("unknown", |n| n.as_str())
                    .to_owned(),
                instance_status: status(s.instance_status()),
                system_status: status(s.system_status()),
            })
            .collect();
        // An instance EC2 no longer reports is gone.
        for id in ids {
            if !found.iter().any(|f| f.id == *id) {
                found.push(InstanceRead {
                    id: id.clone(),
                    state: "gone".into(),
                    instance_status: "not-applicable".into(),
                    system_status: "not-applicable".into(),
                });
            }
        }
        Ok(found)
    }

    /// A DB instance's status and replication source; `None` when absent.
    pub async fn db_instance(&self, region: &str, id: &str) -> Result<Option<DbRead>, AwsError> {
        self.call();
        let out = match self
            .rds(region)
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(sdk("rds:DescribeDBInstances"))
        {
            Ok(out) => out,
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .db_instances()
            .iter()
            .find(|d| d.db_instance_identifier() == Some(id))
            .map(|d| DbRead {
                id: id.to_owned(),
                status: d.db_instance_status().unwrap_or("unknown").to_owned(),
                replica_of: d
                    .read_replica_source_db_instance_identifier()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            }))
    }

    /// A DB cluster's status and replication source; `None` when absent.
    pub async fn db_cluster(&self, region: &str, id: &str) -> Result<Option<DbRead>, AwsError> {
        self.call();
        let out = match self
            .rds(region)
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(sdk("rds:DescribeDBClusters"))
        {
            Ok(out) => out,
            Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .db_clusters()
            .iter()
            .find(|d| d.db_cluster_identifier() == Some(id))
            .map(|d| DbRead {
                id: id.to_owned(),
                status: d.status().unwrap_or("unknown").to_owned(),
                replica_of: d
                    .replication_source_identifier()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            }))
    }

    /// Promotes the read replica `id` to a standalone database and waits
    /// (up to `timeout`) until RDS reports it available and no longer a
    /// replica.
    pub async fn promote_replica(
        &self,
        region: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<(), AwsError> {
        let now = self.db_instance(region, id).await?;
        match now {
            None => {
                return Err(AwsError::new(
                    "rds:PromoteReadReplica",
                    AwsErrorKind::NotFound,
                    format!("DB instance {id} does not exist in {region}"),
                ))
            }
            Some(db) if db.replica_of.is_none() && db.status == "available" => return Ok(()),
            Some(db) if db.replica_of.is_none() => {}
            Some(_) => {
                self.call();
                let out = self
                    .rds(region)
                    .promote_read_replica()
                    .db_instance_identifier(id)
                    .send()
                    .await
                    .map_err(sdk("rds:PromoteReadReplica"))?;
                // RDS answers `modifying` and later reports the instance
                // available without a source. An endpoint that answers
                // `available` at once promoted it synchronously (moto does,
                // and keeps naming the source): nothing to wait for.
                let status = out.db_instance().and_then(|d| d.db_instance_status());
                if status == Some("available") {
                    tracing::info!(db = id, %region, "the read replica was promoted synchronously");
                    return Ok(());
                }
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.db_instance(region, id).await? {
                Some(db) if db.replica_of.is_none() && db.status == "available" => return Ok(()),
                other => {
                    if Instant::now() >= deadline {
                        let state = other.map_or_else(
                            || "gone".to_owned(),
                            |d| format!("{}, replica of {:?}", d.status, d.replica_of),
                        );
                        return Err(AwsError::new(
                            "rds:PromoteReadReplica",
                            AwsErrorKind::Other,
                            format!("{id} in {region} is not a standalone available database after {timeout:?} ({state})"),
                        ));
                    }
                }
            }
            tokio::time::sleep(
                Duration::from_secs(5)
                    .min(timeout / 10)
                    .max(Duration::from_millis(200)),
            )
            .await;
        }
    }
}
