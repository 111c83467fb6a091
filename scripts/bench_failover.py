#!/usr/bin/env python3
"""The failover manager's figures (BENCHMARKS.md), against moto's server:

- time from approval to completed, per failover (`regionguard failover
  approve` -> the COMPLETED phase), alternating us-east-1 -> us-west-2 and
  back, so that every failover changes Route 53 and CloudFront;
- AWS API calls per failover (reads, changes, INSYNC waits, verification);
- time to roll back: the same failovers verified by DNS against a name
  that never moves, from the failed verification to ROLLED_BACK;
- the peer in the same run: boto3 making the same changes directly
  against the same moto (no plan, no journal, no verification), so the
  manager's overhead is a ratio.

    scripts/bench_failover.py --bin target/release/regionguard --rounds 10

Everything runs on loopback: nats-server, moto_server, the simulator, three
probers and the failover service in approve mode.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ACCOUNT = os.path.join(HERE, "..", "tests", "e2e", "aws_account.py")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start on port {port}")


def quantile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, round((len(v) - 1) * q))]


class Phases:
    """Every failover phase, from `regionguard tail`."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.seen = []
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                m = json.loads(line)["message"]
            except (ValueError, KeyError):
                continue
            with self.lock:
                self.seen.append(m)
                self.lock.notify_all()

    def wait(self, pred, timeout=60):
        end = time.time() + timeout
        with self.lock:
            while True:
                for m in self.seen:
                    if pred(m):
                        return m
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError("phase not seen")
                self.lock.wait(left)


def boto3_peer(endpoint, ids, target_values, domain, rounds):
    """The same changes made directly with boto3; seconds per round."""
    import boto3

    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    r53, cf = boto3.client("route53", **kw), boto3.client("cloudfront", **kw)
    asg = boto3.client("autoscaling", **{**kw, "region_name": "us-west-2"})
    ecs = boto3.client("ecs", **{**kw, "region_name": "us-west-2"})
    times = []
    for i in range(rounds):
        primary, secondary = target_values if i % 2 == 0 else target_values[::-1]
        t = time.perf_counter()
        asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
        asg.update_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=10, DesiredCapacity=4)
        ecs.describe_services(cluster="app", services=["web"])
        ecs.update_service(cluster="app", service="web", desiredCount=3)
        r53.list_resource_record_sets(HostedZoneId=ids["zone_id"], StartRecordName="api.example.test.", StartRecordType="A")
        change = r53.change_resource_record_sets(HostedZoneId=ids["zone_id"], ChangeBatch={"Changes": [
            {"Action": "UPSERT", "ResourceRecordSet": {"Name": "api.example.test.", "Type": "A", "TTL": 60, "SetIdentifier": sid,
                                                       "Failover": fo, "ResourceRecords": [{"Value": v}]}}
            for sid, fo, v in [("primary", "PRIMARY", primary), ("secondary", "SECONDARY", secondary)]]})
        r53.get_change(Id=change["ChangeInfo"]["Id"])
        got = cf.get_distribution_config(Id=ids["distribution_id"])
        conf = got["DistributionConfig"]
        conf["Origins"]["Items"][0]["DomainName"] = domain[i % 2]
        cf.update_distribution(Id=ids["distribution_id"], IfMatch=got["ETag"], DistributionConfig=conf)
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/regionguard")
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    rg = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="rg-bench-failover-")
    procs = []
    try:
        nats_port, moto_port, dns_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", os.path.join(work, "nats")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(nats_port, "nats-server")
        wait_port(moto_port, "moto_server")
        endpoint = f"http://127.0.0.1:{moto_port}"
        ids = json.loads(subprocess.check_output([sys.executable, ACCOUNT, "seed", "--endpoint", endpoint]))
        config = os.path.join(work, "regionguard.toml")
        with open(config, "w") as f:
            f.write(f"""
[nats]
servers = ["nats://127.0.0.1:{nats_port}"]
[simulator]
listen = "127.0.0.1:{dns_port}"
[prober]
interval = "1s"
timeout = "500ms"
[failover]
mode = "approve"
cooldown = "0s"
max_automated_per_hour = 1000
verify_interval = "200ms"
[failover.aws]
endpoint_url = "{endpoint}"
emulator_credentials = true
[[failover.route53]]
zone_id = "{ids['zone_id']}"
name = "api.example.test."
kind = "failover"
values = {{ "us-east-1" = ["192.0.2.10"], "us-west-2" = ["198.51.100.10"] }}
[[failover.cloudfront]]
distribution_id = "{ids['distribution_id']}"
origin_id = "app"
domains = {{ "us-east-1" = "use1.origin.example.test", "us-west-2" = "usw2.origin.example.test" }}
[failover.regions.us-east-1]
autoscaling_groups = ["web"]
ecs_services = [{{ cluster = "app", service = "web" }}]
[failover.regions.us-west-2]
autoscaling_groups = ["web"]
ecs_services = [{{ cluster = "app", service = "web" }}]
""")
        env = {**os.environ, "RG_CONFIG": config, "RG_LOG": "warn"}
        procs.append(subprocess.Popen([rg, "simulator"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(dns_port, "the simulator")
        for region in ["us-east-1", "us-west-2", "eu-west-1"]:
            procs.append(subprocess.Popen([rg, "prober", "--region", region, "--resolver", f"127.0.0.1:{dns_port}"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        failover_log = open(os.path.join(work, "failover.log"), "w")
        failover_proc = subprocess.Popen([rg, "failover"], env=env, stdout=failover_log, stderr=failover_log)
        procs.append(failover_proc)
        phases = Phases([rg, "tail", "rg.decisions.failover.>"], env)
        procs.append(phases.proc)
        time.sleep(6)  # health scores for every region

        took, calls = [], []
        for i in range(a.rounds):
            source = "us-east-1" if i % 2 == 0 else "us-west-2"
            out = subprocess.check_output([rg, "failover", "request", "--from", source], env=env, text=True)
            fid = out.split()[2]
            planned = phases.wait(lambda m: m.get("id") == fid and m.get("phase") in ("FAILOVER_PHASE_PLANNED", "FAILOVER_PHASE_FAILED"))
            if planned["phase"] != "FAILOVER_PHASE_PLANNED":
                sys.exit(f"failover {fid} was not planned: {planned.get('error')}")
            subprocess.check_output([rg, "failover", "approve", fid], env=env)
            approved = phases.wait(lambda m: m.get("id") == fid and m.get("phase") == "FAILOVER_PHASE_APPROVED")
            done = phases.wait(lambda m: m.get("id") == fid and m.get("phase") in ("FAILOVER_PHASE_COMPLETED", "FAILOVER_PHASE_ROLLED_BACK", "FAILOVER_PHASE_FAILED"))
            if done["phase"] != "FAILOVER_PHASE_COMPLETED":
                sys.exit(f"failover {fid} ended {done['phase']}: {done.get('error')}")
            ms = int(done["at_unix_ms"]) - int(approved["at_unix_ms"])
            took.append(ms)
            calls.append(int(done.get("aws_calls", 0)))
            steps = len(done["plan"]["steps"])
            print(f"failover {i + 1}: {source} -> {done['to_region']}: {steps} steps, approval to completed {ms} ms, {calls[-1]} AWS calls", flush=True)

        # Rollbacks: the same failovers, now verified by DNS against the
        # simulator, which answers the application's name with its own
        # address: verification fails after 1 s and every step is undone.
        failover_proc.terminate()
        failover_proc.wait(timeout=15)
        with open(config, "a") as f:
            f.write(f"""
[failover.verify]
name = "dynamodb.us-east-1.amazonaws.com"
resolver = "127.0.0.1:{dns_port}"
""")
        with open(config) as f:
            text = f.read().replace('verify_interval = "200ms"', 'verify_interval = "200ms"\nverify_timeout = "1s"')
        with open(config, "w") as f:
            f.write(text)
        failover_proc = subprocess.Popen([rg, "failover"], env=env, stdout=failover_log, stderr=failover_log)
        procs.append(failover_proc)
        time.sleep(3)
        rollback_ms = []
        for i in range(max(3, a.rounds // 2)):
            out = subprocess.check_output([rg, "failover", "request", "--from", "us-east-1"], env=env, text=True)
            fid = out.split()[2]
            phases.wait(lambda m: m.get("id") == fid and m.get("phase") == "FAILOVER_PHASE_PLANNED")
            subprocess.check_output([rg, "failover", "approve", fid], env=env)
            rolled = phases.wait(lambda m: m.get("id") == fid and m.get("phase") in ("FAILOVER_PHASE_ROLLED_BACK", "FAILOVER_PHASE_COMPLETED", "FAILOVER_PHASE_FAILED"))
            if rolled["phase"] != "FAILOVER_PHASE_ROLLED_BACK":
                sys.exit(f"failover {fid} was expected to roll back, ended {rolled['phase']}")
            failed = phases.wait(lambda m: m.get("id") == fid and m.get("phase") == "FAILOVER_PHASE_STEP"
                                 and m["plan"]["steps"][int(m.get("step_index", 0))].get("status") == "STEP_STATUS_FAILED")
            ms = int(rolled["at_unix_ms"]) - int(failed["at_unix_ms"])
            undone = sum(1 for st in rolled["plan"]["steps"] if st.get("status") == "STEP_STATUS_ROLLED_BACK")
            rollback_ms.append(ms)
            print(f"rollback {i + 1}: {undone} steps undone in {ms} ms", flush=True)

        peer = boto3_peer(endpoint, ids, ("198.51.100.10", "192.0.2.10"), ("usw2.origin.example.test", "use1.origin.example.test"), a.rounds)
        peer_ms = [t * 1000 for t in peer]
        report = {
            "failovers": a.rounds,
            "approval_to_completed_ms": {"p50": quantile(took, 0.5), "p95": quantile(took, 0.95), "max": max(took)},
            "aws_calls_per_failover": {"first": calls[0], "later_p50": quantile(calls[1:] or calls, 0.5)},
            "peer_boto3_same_changes_ms": {"p50": round(quantile(peer_ms, 0.5), 1), "p95": round(quantile(peer_ms, 0.95), 1)},
            "ratio_p50": round(quantile(took, 0.5) / max(quantile(peer_ms, 0.5), 1e-9), 2),
            "rollback_ms": {"p50": quantile(rollback_ms, 0.5), "max": max(rollback_ms)},
        }
        print(json.dumps(report))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
