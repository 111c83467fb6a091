#!/usr/bin/env python3
"""Readiness figures (BENCHMARKS.md), against moto's server:

- per readiness run of 3 regions (`regionguard failover readiness
  --json`): AWS API calls and time per region and per run, as the failover
  service reports them;
- the peer in the same run: boto3 reading the same resources once
  (records, Auto Scaling groups, instance status checks, target groups,
  load balancers, target health, DB instances of the 3 regions), with no
  plan built, so the cost of building every plan is a ratio.

    scripts/bench_readiness.py --bin target/release/regionguard --runs 10

Everything runs on loopback: nats-server, moto_server (seeded with
`tests/e2e/aws_shapes.py --shape deep-health`), the simulator, three
probers and the failover service in plan mode.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_failover import free_port, quantile, wait_port  # noqa: E402

SHAPES = os.path.join(HERE, "..", "tests", "e2e", "aws_shapes.py")
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]


def boto3_peer(endpoint, zone_id, runs):
    """The same resources read once per run with boto3; seconds per run."""
    import boto3

    kw = dict(endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x")
    r53 = boto3.client("route53", region_name="us-east-1", **kw)
    per = {r: {name: boto3.client(name, region_name=r, **kw) for name in ["autoscaling", "ec2", "elbv2", "rds"]}
           for r in REGIONS}
    times, calls = [], 0
    for _ in range(runs):
        t, calls = time.perf_counter(), 0
        r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName="api.deep.test.", StartRecordType="A")
        calls += 1
        for r in REGIONS:
            c = per[r]
            ids = [i["InstanceId"] for i in c["autoscaling"].describe_auto_scaling_groups(
                AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"]]
            c["ec2"].describe_instance_status(InstanceIds=ids, IncludeAllInstances=True)
            tg = c["elbv2"].describe_target_groups(Names=["web"])["TargetGroups"][0]
            c["elbv2"].describe_load_balancers(LoadBalancerArns=tg["LoadBalancerArns"])
            c["elbv2"].describe_target_health(TargetGroupArn=tg["TargetGroupArn"])
            db = "orders" if r == "us-east-1" else {"us-west-2": "orders-usw2", "eu-west-1": "orders-euw1"}[r]
            c["rds"].describe_db_instances(DBInstanceIdentifier=db)
            calls += 6
        times.append(time.perf_counter() - t)
    return times, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/regionguard")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    rg = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="rg-bench-readiness-")
    procs = []
    try:
        nats_port, moto_port, dns_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", os.path.join(work, "nats")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(nats_port, "nats-server")
        wait_port(moto_port, "moto_server")
        endpoint = f"http://127.0.0.1:{moto_port}"
        ids = json.loads(subprocess.check_output([sys.executable, SHAPES, "seed", "--endpoint", endpoint, "--shape", "deep-health"]))
        config = os.path.join(work, "regionguard.toml")
        regions = "".join(f"""
[failover.regions.{r}]
autoscaling_groups = ["web"]
target_groups = ["web"]
{'db_instances = ["orders"]' if r == "us-east-1" else f'promote_replicas = ["orders-{ {"us-west-2": "usw2", "eu-west-1": "euw1"}[r] }"]'}
""" for r in REGIONS)
        with open(config, "w") as f:
            f.write(f"""
[nats]
servers = ["nats://127.0.0.1:{nats_port}"]
request_timeout = "60s"
[simulator]
listen = "127.0.0.1:{dns_port}"
[prober]
interval = "1s"
timeout = "500ms"
[failover]
mode = "plan"
readiness_interval = "0s"
standby_order = ["us-west-2", "eu-west-1"]
[failover.aws]
endpoint_url = "{endpoint}"
emulator_credentials = true
[[failover.route53]]
zone_id = "{ids['zone_id']}"
name = "api.deep.test."
kind = "simple"
values = {{ "us-east-1" = ["192.0.2.60"], "us-west-2" = ["198.51.100.60"], "eu-west-1" = ["203.0.113.60"] }}
{regions}""")
        env = {**os.environ, "RG_CONFIG": config, "RG_LOG": "warn"}
        procs.append(subprocess.Popen([rg, "simulator"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(dns_port, "the simulator")
        for region in REGIONS:
            procs.append(subprocess.Popen([rg, "prober", "--region", region, "--resolver", f"127.0.0.1:{dns_port}"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log = open(os.path.join(work, "failover.log"), "w")
        procs.append(subprocess.Popen([rg, "failover"], env=env, stdout=log, stderr=log))
        time.sleep(6)  # health scores for every region

        per_run_ms, per_run_calls, per_region_ms = [], [], []
        for _ in range(a.runs):
            t = time.perf_counter()
            out = subprocess.run([rg, "failover", "readiness", "--json"], env=env, text=True, capture_output=True)
            wall = (time.perf_counter() - t) * 1000
            if out.returncode != 0:
                sys.exit(f"readiness exited {out.returncode}: {out.stdout}{out.stderr}")
            rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
            if len(rows) != 3 or not all(r["ready"] and not r["problems"] for r in rows):
                sys.exit(f"not every region is ready: {rows}")
            per_run_calls.append(sum(int(r["aws_calls"]) for r in rows))
            per_run_ms.append(wall)
            per_region_ms += [int(r["duration_ms"]) for r in rows]
        peer_s, peer_calls = boto3_peer(endpoint, ids["zone_id"], a.runs)
        peer_ms = [s * 1000 for s in peer_s]
        med = statistics.median
        print(f"readiness run of 3 regions ({a.runs} runs): AWS calls {min(per_run_calls)}..{max(per_run_calls)} "
              f"({per_run_calls[0] / 3:.0f} per region); time p50 {med(per_run_ms):.0f} ms, p95 {quantile(per_run_ms, 0.95):.0f} ms "
              f"(CLI included); per region p50 {med(per_region_ms):.0f} ms")
        print(f"boto3 peer, every resource read once: {peer_calls} calls, p50 {med(peer_ms):.0f} ms, p95 {quantile(peer_ms, 0.95):.0f} ms")
        print(f"ratio regionguard / peer: calls {per_run_calls[0] / peer_calls:.1f}x, time {med(per_run_ms) / med(peer_ms):.1f}x")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
