#!/usr/bin/env python3
"""AWS accounts of different shapes in moto (through boto3), as AWS's own
documentation describes them, for the failover tests:

  alias-failover    failover records that are aliases to regional load
                    balancers with Evaluate Target Health and a health check
                    on each record (set identifiers "primary"/"secondary");
                    a second failover pair of value records with set
                    identifiers "blue"/"green"; a CNAME and an alias to
                    CloudFront that no failover touches; a warm standby.
  weighted-latency  weighted records with set identifiers app-a/app-b/app-c
                    and latency records lat-1/lat-2/lat-3 (one per region,
                    each with a health check) in three regions; warm
                    us-east-1 and us-west-2, a pilot light in eu-west-1.
  deep-health       three regions behind a simple record api.deep.test.,
                    each with an Auto Scaling group "web" (us-east-1 4
                    instances, us-west-2 3, eu-west-1 2) registered in a
                    target group "web" behind an application load balancer
                    "web-lb", and an IP target group "api-ip" (one
                    target, none in eu-west-1); an RDS MySQL primary
                    "orders" in us-east-1
                    with cross-region read replicas "orders-usw2" and
                    "orders-euw1"; an Aurora cluster "sessions-usw2".
  cdn-standbys      a CloudFront distribution whose default behaviour
                    targets origin-us-east-1, whose /api/* behaviour targets
                    an origin group og-api (us-east-1 and us-west-2 only)
                    and whose /static/* behaviour targets origin-us-east-1;
                    a warm standby in us-west-2 (Auto Scaling 0/1/12, ECS 1)
                    and a pilot light in eu-west-1 (0/0/12, ECS 0).

`seed --shape S` creates one and prints its ids as JSON; `dump` prints
every record set of the zone, the distribution's behaviours, origins and
origin groups, and each region's capacity, as JSON.
"""
import argparse
import json

import boto3

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
ELB_ZONES = {"us-east-1": "Z35SXDOTRQ7X7K", "us-west-2": "Z1H1FL5HABSF5", "eu-west-1": "Z32O12XQLNTSW2"}


def client(name, endpoint, region="us-east-1"):
    return boto3.client(name, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="emulator", aws_secret_access_key="emulator")


def health_check(r53, name):
    return r53.create_health_check(CallerReference=name, HealthCheckConfig={
        "Type": "HTTPS", "FullyQualifiedDomainName": name, "Port": 443,
        "ResourcePath": "/health", "RequestInterval": 30, "FailureThreshold": 3})["HealthCheck"]["Id"]


def upsert(r53, zone, sets):
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": s} for s in sets]})


def capacity(endpoint, region, asg, ecs_n):
    ec2 = client("ec2", endpoint, region)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="app", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    lo, desired, hi = asg
    client("autoscaling", endpoint, region).create_auto_scaling_group(
        AutoScalingGroupName="app-asg", MinSize=lo, MaxSize=hi, DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": "app"}, VPCZoneIdentifier=subnet)
    ecs = client("ecs", endpoint, region)
    ecs.create_cluster(clusterName="prod")
    ecs.register_task_definition(family="api", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                 cpu="256", memory="512",
                                 containerDefinitions=[{"name": "api", "image": "api", "essential": True}])
    ecs.create_service(cluster="prod", serviceName="api", taskDefinition="api", desiredCount=ecs_n,
                       launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": {
                           "subnets": [subnet], "securityGroups": [sg]}})
    ecs.update_service(cluster="prod", service="api", desiredCount=ecs_n)


def zone(r53, name):
    return r53.create_hosted_zone(Name=name, CallerReference=name)["HostedZone"]["Id"].split("/")[-1]


def seed_alias_failover(endpoint):
    r53 = client("route53", endpoint)
    z = zone(r53, "shop.test.")
    sets = []
    for set_id, role, region in [("primary", "PRIMARY", "us-east-1"), ("secondary", "SECONDARY", "us-west-2")]:
        sets.append({"Name": "api.shop.test.", "Type": "A", "SetIdentifier": set_id, "Failover": role,
                     "HealthCheckId": health_check(r53, f"api-{region}.shop.test"),
                     "AliasTarget": {"HostedZoneId": ELB_ZONES[region],
                                     "DNSName": f"dualstack.api-lb-1234.{region}.elb.amazonaws.com.",
                                     "EvaluateTargetHealth": True}})
    for set_id, role, region, value in [("blue", "PRIMARY", "us-east-1", "192.0.2.20"),
                                        ("green", "SECONDARY", "us-west-2", "198.51.100.20")]:
        sets.append({"Name": "login.shop.test.", "Type": "A", "SetIdentifier": set_id, "Failover": role,
                     "TTL": 30, "HealthCheckId": health_check(r53, f"login-{region}.shop.test"),
                     "ResourceRecords": [{"Value": value}]})
    sets.append({"Name": "www.shop.test.", "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": "cdn.shop.test"}]})
    sets.append({"Name": "cdn.shop.test.", "Type": "A", "AliasTarget": {
        "HostedZoneId": "Z2FDTNDATAQYW2", "DNSName": "d111111abcdef8.cloudfront.net.", "EvaluateTargetHealth": False}})
    upsert(r53, z, sets)
    capacity(endpoint, "us-east-1", (2, 4, 12), 3)
    capacity(endpoint, "us-west-2", (0, 1, 12), 1)
    return {"zone_id": z}


def seed_weighted_latency(endpoint):
    r53 = client("route53", endpoint)
    z = zone(r53, "media.test.")
    sets = []
    for set_id, region, value, weight in [("app-a", "us-east-1", "192.0.2.30", 70),
                                          ("app-b", "us-west-2", "198.51.100.30", 30),
                                          ("app-c", "eu-west-1", "203.0.113.30", 0)]:
        sets.append({"Name": "app.media.test.", "Type": "A", "SetIdentifier": set_id, "Weight": weight,
                     "TTL": 60, "ResourceRecords": [{"Value": value}]})
    for set_id, region, value in [("lat-1", "us-east-1", "192.0.2.40"), ("lat-2", "us-west-2", "198.51.100.40"),
                                  ("lat-3", "eu-west-1", "203.0.113.40")]:
        sets.append({"Name": "edge.media.test.", "Type": "A", "SetIdentifier": set_id, "Region": region,
                     "TTL": 60, "HealthCheckId": health_check(r53, f"edge-{region}.media.test"),
                     "ResourceRecords": [{"Value": value}]})
    upsert(r53, z, sets)
    capacity(endpoint, "us-east-1", (1, 2, 12), 2)
    capacity(endpoint, "us-west-2", (1, 2, 12), 2)
    capacity(endpoint, "eu-west-1", (0, 0, 12), 0)  # a pilot light
    return {"zone_id": z}


def seed_cdn_standbys(endpoint):
    r53 = client("route53", endpoint)
    z = zone(r53, "video.test.")
    upsert(r53, z, [{"Name": "origin.video.test.", "Type": "A", "TTL": 60,
                     "ResourceRecords": [{"Value": "192.0.2.50"}]}])
    cf = client("cloudfront", endpoint)

    def origin(origin_id, domain):
        return {"Id": origin_id, "DomainName": domain,
                "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}

    def behaviour(target, path=None):
        b = {"TargetOriginId": target, "ViewerProtocolPolicy": "redirect-to-https",
             "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
             "MinTTL": 0, "TrustedSigners": {"Enabled": False, "Quantity": 0}}
        if path:
            b["PathPattern"] = path
        return b

    origins = [origin(f"origin-{r}", f"web-lb.{r}.elb.amazonaws.com") for r in REGIONS]
    origins += [origin(f"api-{r}", f"api-lb.{r}.elb.amazonaws.com") for r in ["us-east-1", "us-west-2"]]
    dist = cf.create_distribution(DistributionConfig={
        "CallerReference": "video", "Comment": "video", "Enabled": True,
        "Origins": {"Quantity": len(origins), "Items": origins},
        "OriginGroups": {"Quantity": 1, "Items": [{
            "Id": "og-api",
            "FailoverCriteria": {"StatusCodes": {"Quantity": 2, "Items": [502, 503]}},
            "Members": {"Quantity": 2, "Items": [{"OriginId": "api-us-east-1"}, {"OriginId": "api-us-west-2"}]}}]},
        "DefaultCacheBehavior": behaviour("origin-us-east-1"),
        "CacheBehaviors": {"Quantity": 2, "Items": [behaviour("og-api", "/api/*"),
                                                    behaviour("origin-us-east-1", "/static/*")]}})["Distribution"]["Id"]
    capacity(endpoint, "us-east-1", (2, 4, 12), 3)
    capacity(endpoint, "us-west-2", (0, 1, 12), 1)
    capacity(endpoint, "eu-west-1", (0, 0, 12), 0)
    return {"zone_id": z, "distribution_id": dist}


DEEP_VALUES = {"us-east-1": "192.0.2.60", "us-west-2": "198.51.100.60", "eu-west-1": "203.0.113.60"}
DB_ARN = "arn:aws:rds:us-east-1:123456789012:db:orders"


def deep_region(endpoint, region, instances):
    """A VPC in two zones, an Auto Scaling group "web" of `instances`, its
    instances registered in target group "web" behind load balancer
    "web-lb" (a listener forwarding to it)."""
    ec2 = client("ec2", endpoint, region)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.2.{i}.0/24",
                                 AvailabilityZone=f"{region}{zone}")["Subnet"]["SubnetId"]
               for i, zone in [(1, "a"), (2, "b")]]
    sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
    asg = client("autoscaling", endpoint, region)
    asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=0, MaxSize=12, DesiredCapacity=instances,
                                  LaunchTemplate={"LaunchTemplateName": "web"}, VPCZoneIdentifier=",".join(subnets))
    elb = client("elbv2", endpoint, region)
    lb = elb.create_load_balancer(Name="web-lb", Subnets=subnets, SecurityGroups=[sg],
                                  Scheme="internet-facing", Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name="web", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance",
                                 HealthCheckPath="/health")["TargetGroups"][0]["TargetGroupArn"]
    elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    ids = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
           ["AutoScalingGroups"][0]["Instances"]]
    if ids:
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80} for i in ids])
    # An IP target group (a service reached by address, registered by
    # hand): one target, except in eu-west-1, where it is empty.
    ip = elb.create_target_group(Name="api-ip", Protocol="TCP", Port=443, VpcId=vpc,
                                 TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    if region != "eu-west-1":
        elb.register_targets(TargetGroupArn=ip, Targets=[{"Id": "10.2.1.10", "Port": 443}])
    return tg


def seed_deep_health(endpoint):
    r53 = client("route53", endpoint)
    z = zone(r53, "deep.test.")
    upsert(r53, z, [{"Name": "api.deep.test.", "Type": "A", "TTL": 60,
                     "ResourceRecords": [{"Value": DEEP_VALUES["us-east-1"]}]}])
    tgs = {r: deep_region(endpoint, r, n) for r, n in [("us-east-1", 4), ("us-west-2", 3), ("eu-west-1", 2)]}
    client("rds", endpoint, "us-east-1").create_db_instance(
        DBInstanceIdentifier="orders", Engine="mysql", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
        MasterUsername="admin", MasterUserPassword="not-a-secret-1")
    # An Aurora cluster in us-west-2 (sessions).
    client("rds", endpoint, "us-west-2").create_db_cluster(
        DBClusterIdentifier="sessions-usw2", Engine="aurora-mysql", MasterUsername="admin",
        MasterUserPassword="not-a-secret-1")
    for region, replica in [("us-west-2", "orders-usw2"), ("eu-west-1", "orders-euw1")]:
        client("rds", endpoint, region).create_db_instance_read_replica(
            DBInstanceIdentifier=replica, SourceDBInstanceIdentifier=DB_ARN, DBInstanceClass="db.t3.micro")
    return {"zone_id": z, "target_groups": tgs}


def web_instances(endpoint, region):
    return sorted(i["InstanceId"] for i in client("autoscaling", endpoint, region).describe_auto_scaling_groups(
        AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"])


def stop_instances(endpoint, region, count):
    """Stops `count` of the group's instances (their targets turn unused,
    their status checks not-applicable); count 0 starts them all again."""
    ec2 = client("ec2", endpoint, region)
    ids = web_instances(endpoint, region)
    if count == 0:
        ec2.start_instances(InstanceIds=ids)
    else:
        ec2.stop_instances(InstanceIds=ids[:count])
    print(json.dumps({"instances": ids, "stopped": ids[:count]}))


def standalone(endpoint, region, db):
    """Whether `db` is a standalone database: RDS stops one (it is started
    again at once) but refuses to stop a read replica."""
    rds = client("rds", endpoint, region)
    try:
        rds.stop_db_instance(DBInstanceIdentifier=db)
    except rds.exceptions.ClientError as e:
        print(json.dumps({"standalone": False, "why": str(e)}))
        return
    rds.start_db_instance(DBInstanceIdentifier=db)
    print(json.dumps({"standalone": True}))


def drift(endpoint, kind, fix, zone_id=None, distribution_id=None):
    """Seeds (or, with fix, undoes) one kind of drift in a deep-health or
    cdn-standbys account."""
    if kind == "record":
        r53 = client("route53", endpoint)
        record = {"Name": "api.deep.test.", "Type": "A", "TTL": 60,
                  "ResourceRecords": [{"Value": DEEP_VALUES["us-east-1"]}]}
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "UPSERT" if fix else "DELETE", "ResourceRecordSet": record}]})
    elif kind == "targets":
        ec2 = client("ec2", endpoint, "us-west-2")
        ids = web_instances(endpoint, "us-west-2")
        (ec2.start_instances if fix else ec2.stop_instances)(InstanceIds=ids)
    elif kind == "pilot-light":
        # eu-west-1 scaled to nothing, its instances leaving the target
        # group as they would in AWS (moto keeps them registered); its IP
        # group stays empty.
        elb = client("elbv2", endpoint, "eu-west-1")
        tg = elb.describe_target_groups(Names=["web"])["TargetGroups"][0]["TargetGroupArn"]
        ids = web_instances(endpoint, "eu-west-1")
        if not fix:
            elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80} for i in ids])
        client("autoscaling", endpoint, "eu-west-1").update_auto_scaling_group(
            AutoScalingGroupName="web", MinSize=0, DesiredCapacity=2 if fix else 0)
        if fix:
            ids = web_instances(endpoint, "eu-west-1")
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80} for i in ids])
    elif kind == "asg-max":
        client("autoscaling", endpoint, "us-west-2").update_auto_scaling_group(
            AutoScalingGroupName="web", MaxSize=12 if fix else 3)
    elif kind == "replica":
        # The declared replica renamed away (as when it is replaced by hand;
        # moto cannot delete a cross-region replica).
        names = ("orders-euw1-old", "orders-euw1") if fix else ("orders-euw1", "orders-euw1-old")
        client("rds", endpoint, "eu-west-1").modify_db_instance(
            DBInstanceIdentifier=names[0], NewDBInstanceIdentifier=names[1], ApplyImmediately=True)
    elif kind == "behaviour-origin":
        # eu-west-1's origin removed from the distribution (no behaviour
        # targets it now): the default behaviour has nowhere to go for it.
        cf = client("cloudfront", endpoint)
        got = cf.get_distribution_config(Id=distribution_id)
        dc, etag = got["DistributionConfig"], got["ETag"]
        items = [o for o in dc["Origins"]["Items"] if o["Id"] != "origin-eu-west-1"]
        if fix:
            items.append({"Id": "origin-eu-west-1", "DomainName": "web-lb.eu-west-1.elb.amazonaws.com",
                          "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443,
                                                 "OriginProtocolPolicy": "https-only"}})
        dc["Origins"] = {"Quantity": len(items), "Items": items}
        cf.update_distribution(Id=distribution_id, IfMatch=etag, DistributionConfig=dc)
    else:
        raise SystemExit(f"unknown drift {kind}")
    print(json.dumps({"drift": kind, "fixed": fix}))


SHAPES = {"alias-failover": seed_alias_failover, "weighted-latency": seed_weighted_latency,
          "cdn-standbys": seed_cdn_standbys, "deep-health": seed_deep_health}


def dump(endpoint, zone_id, distribution_id):
    r53 = client("route53", endpoint)
    sets = [s for s in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
            if s["Type"] not in ("NS", "SOA")]
    for s in sets:
        if "AliasTarget" in s:
            s.pop("TTL", None)  # moto says 0 for an alias record
    checks = {h["Id"]: h["HealthCheckConfig"].get("FullyQualifiedDomainName", "")
              for h in r53.list_health_checks()["HealthChecks"]}
    out = {"records": sorted(sets, key=lambda s: (s["Name"], s["Type"], s.get("SetIdentifier", ""))),
           "health_checks": checks, "asg": {}, "ecs": {}}
    if distribution_id:
        dc = client("cloudfront", endpoint).get_distribution_config(Id=distribution_id)["DistributionConfig"]
        behaviours = {"default": dc["DefaultCacheBehavior"]["TargetOriginId"]}
        for b in dc.get("CacheBehaviors", {}).get("Items", []):
            behaviours[b["PathPattern"]] = b["TargetOriginId"]
        out["behaviors"] = behaviours
        out["origins"] = {o["Id"]: o["DomainName"] for o in dc["Origins"]["Items"]}
        out["origin_groups"] = {g["Id"]: [m["OriginId"] for m in g["Members"]["Items"]]
                                for g in dc.get("OriginGroups", {}).get("Items", [])}
    for region in REGIONS:
        groups = client("autoscaling", endpoint, region).describe_auto_scaling_groups()["AutoScalingGroups"]
        for g in groups:
            out["asg"][region] = {"min": g["MinSize"], "max": g["MaxSize"], "desired": g["DesiredCapacity"]}
        try:
            s = client("ecs", endpoint, region).describe_services(cluster="prod", services=["api"])["services"]
            if s:
                out["ecs"][region] = s[0]["desiredCount"]
        except Exception:  # no cluster in this region
            pass
    deep(endpoint, out)
    print(json.dumps(out, sort_keys=True))


def deep(endpoint, out):
    """The deep-health resources: instance states, target health, load
    balancer states and databases, per region."""
    out["instances"], out["targets"], out["load_balancers"], out["databases"] = {}, {}, {}, {}
    for region in REGIONS:
        ec2 = client("ec2", endpoint, region)
        out["instances"][region] = sorted(
            (i["InstanceId"], i["State"]["Name"])
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated")  # gone: a scale-in after a rollback
        elb = client("elbv2", endpoint, region)
        out["load_balancers"][region] = sorted((lb["LoadBalancerName"], lb["State"]["Code"])
                                               for lb in elb.describe_load_balancers()["LoadBalancers"])
        out["targets"][region] = {
            tg["TargetGroupName"]: sorted((d["Target"]["Id"], d["TargetHealth"]["State"]) for d in
                                          elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
                                          ["TargetHealthDescriptions"])
            for tg in elb.describe_target_groups()["TargetGroups"]}
        out["databases"][region] = {
            d["DBInstanceIdentifier"]: {"status": d["DBInstanceStatus"],
                                        "replica_of": d.get("ReadReplicaSourceDBInstanceIdentifier")}
            for d in client("rds", endpoint, region).describe_db_instances()["DBInstances"]}


def set_ttl(endpoint, zone_id, name, set_id, ttl):
    """An operator's edit: one record set's TTL changed, the rest kept."""
    r53 = client("route53", endpoint)
    for s in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if s["Name"] == name and s.get("SetIdentifier") == set_id:
            s["TTL"] = ttl
            upsert(r53, zone_id, [s])
            print(json.dumps({"changed": name}))
            return
    raise SystemExit(f"no record {name} {set_id}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["seed", "dump", "set-ttl", "stop-instances", "standalone", "drift"])
    p.add_argument("--kind")
    p.add_argument("--fix", action="store_true")
    p.add_argument("--db")
    p.add_argument("--region")
    p.add_argument("--count", type=int)
    p.add_argument("--name")
    p.add_argument("--set-id")
    p.add_argument("--ttl", type=int)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--shape", choices=sorted(SHAPES))
    p.add_argument("--zone-id")
    p.add_argument("--distribution-id")
    a = p.parse_args()
    if a.command == "seed":
        print(json.dumps(SHAPES[a.shape](a.endpoint)))
    elif a.command == "drift":
        drift(a.endpoint, a.kind, a.fix, a.zone_id, a.distribution_id)
    elif a.command == "standalone":
        standalone(a.endpoint, a.region, a.db)
    elif a.command == "stop-instances":
        stop_instances(a.endpoint, a.region, a.count)
    elif a.command == "set-ttl":
        set_ttl(a.endpoint, a.zone_id, a.name, a.set_id, a.ttl)
    else:
        dump(a.endpoint, a.zone_id, a.distribution_id)
