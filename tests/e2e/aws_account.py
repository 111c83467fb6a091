#!/usr/bin/env python3
"""A seeded AWS account in moto for the failover tests, through boto3 (which
moto installs): `seed` creates it and prints its ids as JSON, `read` prints
what the failover changes, as JSON.

Seeded: a hosted zone example.test with failover records api.example.test
(PRIMARY -> us-east-1's 192.0.2.10, SECONDARY -> us-west-2's 198.51.100.10);
a CloudFront distribution with origin "app" at use1.origin.example.test and
an origin group "app-group" of the regional origins "use1" and "usw2" (use1
primary); per
region an Auto Scaling group "web" (us-east-1 runs 4, us-west-2 1) and an ECS
service app/web (us-east-1 runs 3, us-west-2 1).
"""
import argparse
import json

import boto3

REGIONS = ["us-east-1", "us-west-2"]
RUNNING = {"us-east-1": (4, 3), "us-west-2": (1, 1)}


def client(name, endpoint, region="us-east-1"):
    return boto3.client(name, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id="emulator", aws_secret_access_key="emulator")


def seed(endpoint):
    r53 = client("route53", endpoint)
    zone = r53.create_hosted_zone(Name="example.test.", CallerReference="rg-test")["HostedZone"]["Id"]
    zone_id = zone.split("/")[-1]
    changes = []
    for set_id, failover, value in [("primary", "PRIMARY", "192.0.2.10"), ("secondary", "SECONDARY", "198.51.100.10")]:
        changes.append({"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.example.test.", "Type": "A", "TTL": 60, "SetIdentifier": set_id,
            "Failover": failover, "ResourceRecords": [{"Value": value}]}})
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})

    cf = client("cloudfront", endpoint)
    def origin(origin_id, domain):
        return {"Id": origin_id, "DomainName": domain,
                "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}
    dist = cf.create_distribution(DistributionConfig={
        "CallerReference": "rg-test", "Comment": "regionguard test", "Enabled": True,
        "Origins": {"Quantity": 3, "Items": [origin("app", "use1.origin.example.test"),
                                             origin("use1", "use1.origin.example.test"),
                                             origin("usw2", "usw2.origin.example.test")]},
        "OriginGroups": {"Quantity": 1, "Items": [{
            "Id": "app-group",
            "FailoverCriteria": {"StatusCodes": {"Quantity": 3, "Items": [500, 502, 503]}},
            "Members": {"Quantity": 2, "Items": [{"OriginId": "use1"}, {"OriginId": "usw2"}]}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "app", "ViewerProtocolPolicy": "allow-all",
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "MinTTL": 0, "TrustedSigners": {"Enabled": False, "Quantity": 0}}})["Distribution"]["Id"]

    for region in REGIONS:
        asg_n, ecs_n = RUNNING[region]
        ec2 = client("ec2", endpoint, region)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
        image = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"})
        asg = client("autoscaling", endpoint, region)
        asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=10, DesiredCapacity=asg_n,
                                      LaunchTemplate={"LaunchTemplateName": "web"}, VPCZoneIdentifier=subnet)
        ecs = client("ecs", endpoint, region)
        ecs.create_cluster(clusterName="app")
        ecs.register_task_definition(family="web", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
                                     cpu="256", memory="512",
                                     containerDefinitions=[{"name": "web", "image": "nginx", "essential": True}])
        ecs.create_service(cluster="app", serviceName="web", taskDefinition="web", desiredCount=ecs_n,
                           launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": {
                               "subnets": [subnet], "securityGroups": [sg]}})
        # moto starts a service with no running task; an update brings the
        # running count to the desired one, as a healthy service has it.
        ecs.update_service(cluster="app", service="web", desiredCount=ecs_n)
    print(json.dumps({"zone_id": zone_id, "distribution_id": dist}))


def read(endpoint, zone_id, distribution_id):
    r53 = client("route53", endpoint)
    records = {}
    for r in r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]:
        if r["Name"] == "api.example.test." and r["Type"] == "A":
            records[r.get("SetIdentifier", "")] = {"role": r.get("Failover"),
                                                  "values": [v["Value"] for v in r.get("ResourceRecords", [])]}
    cf = client("cloudfront", endpoint)
    dc = cf.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    group = next(g for g in dc["OriginGroups"]["Items"] if g["Id"] == "app-group")
    out = {"records": records,
           "origin": {o["Id"]: o["DomainName"] for o in dc["Origins"]["Items"] if o["Id"] == "app"},
           "origin_group": [m["OriginId"] for m in group["Members"]["Items"]],
           "asg": {}, "ecs": {}}
    for region in REGIONS:
        g = client("autoscaling", endpoint, region).describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
        out["asg"][region] = {"min": g["MinSize"], "max": g["MaxSize"], "desired": g["DesiredCapacity"]}
        s = client("ecs", endpoint, region).describe_services(cluster="app", services=["web"])["services"][0]
        out["ecs"][region] = s["desiredCount"]
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["seed", "read"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--zone-id")
    p.add_argument("--distribution-id")
    a = p.parse_args()
    if a.command == "seed":
        seed(a.endpoint)
    else:
        read(a.endpoint, a.zone_id, a.distribution_id)
