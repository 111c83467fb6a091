#!/usr/bin/env python3
"""A failover request made 5 s after the server leading a role dies.

Each trial, as a user would run it: three nats-server processes on loopback
(a fresh cluster), `regionguard up` with all three URLs and 3 replicas, then
SIGKILL of the server leading ROLE (a stream or key-value bucket, e.g.
KV_RG_FAILOVER: the failover journal), and `regionguard failover request`
5 s later. Prints how long after the kill the plan came, and what the dead
server led.

    cargo build --locked
    python3 scripts/bench_leader_kill.py --trials 5 [--role KV_RG_FAILOVER]

Needs nats-server on PATH (scripts/install-deps.sh). Uses ports 24222-24224
(clients), 26222-26224 (routes), 28222-28224 (monitoring) and 28080.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLIENT, ROUTE, MON, HTTP = 24222, 26222, 28222, 28080


def led_by(port, name):
    """Streams and durable consumers the server `name` leads."""
    url = f"http://127.0.0.1:{port}/jsz?accounts=true&streams=true&consumers=true"
    data = json.load(urllib.request.urlopen(url, timeout=2))
    led = []
    for account in data.get("account_details", []):
        for s in account.get("stream_detail", []):
            if s.get("cluster", {}).get("leader") == name:
                led.append(s["name"])
            for c in s.get("consumer_detail") or []:
                # Durable names only: the readers' ephemeral ones are random.
                durable = c.get("config", {}).get("durable_name") or c["name"]
                ephemeral = len(durable) == 8 and not durable.islower()
                if not ephemeral and c.get("cluster", {}).get("leader") == name:
                    led.append(f"{s['name']}/{durable}")
    return led


def trial(binary, role, work):
    servers, up = [], None
    try:
        for i in range(3):
            store = os.path.join(work, f"s{i}")
            os.makedirs(store)
            conf = os.path.join(work, f"n{i}.conf")
            routes = ", ".join(f"nats-route://127.0.0.1:{ROUTE + j}" for j in range(3))
            with open(conf, "w") as f:
                f.write(
                    f"server_name: k{i}\nport: {CLIENT + i}\nhttp_port: {MON + i}\n"
                    f"jetstream {{ store_dir: {store} }}\n"
                    f"cluster {{ name: killtrial, port: {ROUTE + i}, routes: [{routes}] }}\n"
                )
            log = open(os.path.join(work, f"n{i}.log"), "w")
            servers.append(subprocess.Popen(["nats-server", "-c", conf], stdout=log, stderr=log))
        # `up` starts a NATS server of its own when none of the configured
        # ones answers: wait for the cluster first.
        for i in range(3):
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{MON + i}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        urls = ",".join(f"nats://127.0.0.1:{CLIENT + i}" for i in range(3))
        config = os.path.join(work, "regionguard.toml")
        with open(config, "w") as f:
            f.write(
                f"[nats]\nservers = {json.dumps(urls.split(','))}\n[nats.streams]\nreplicas = 3\n"
                f"[prober]\ninterval = \"3s\"\n[gateway]\nlisten = \"127.0.0.1:{HTTP}\"\n"
            )
        up_log = open(os.path.join(work, "up.log"), "w")
        up = subprocess.Popen(
            [binary, "up", "--config", config, "--state-dir", os.path.join(work, "state")],
            stdout=up_log, stderr=up_log, start_new_session=True,
        )
        # Up once the failover manager's consumer exists; then find who
        # leads ROLE.
        deadline = time.monotonic() + 90
        victim = None
        while time.monotonic() < deadline and victim is None:
            time.sleep(2)
            if up.poll() is not None:
                sys.exit(f"regionguard up exited; see {work}/up.log")
            leads = {}
            for i in range(3):
                try:
                    leads[i] = led_by(MON + i, f"k{i}")
                except OSError:
                    pass
            if not any("RG_DECISIONS/failover" in led for led in leads.values()):
                continue
            victim = next((i for i, led in leads.items() if role in led), None)
        if victim is None:
            sys.exit(f"no server led {role} within 90 s; see {work}")
        time.sleep(10)  # steady state: every service has read the cluster
        i = victim
        led = led_by(MON + i, f"k{i}")
        killed = time.monotonic()
        servers[i].send_signal(signal.SIGKILL)
        time.sleep(5)
        out = subprocess.run(
            [binary, "failover", "request", "--config", config, "--from", "us-east-1",
             "--reason", "leader kill trial", "--wait", "30s"],
            capture_output=True, text=True,
        )
        took = time.monotonic() - killed
        planned = out.returncode == 0 and "planned" in out.stdout + out.stderr
        return took, planned, f"k{i}", led
    finally:
        if up is not None and up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
        for s in servers:
            s.kill()
            s.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/debug/regionguard")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep every trial's logs (up.log, nX.log)")
    ap.add_argument("--role", default="KV_RG_FAILOVER",
                    help="the stream or bucket whose leader's server is killed")
    args = ap.parse_args()
    if not shutil.which("nats-server"):
        sys.exit("nats-server is not installed: run scripts/install-deps.sh")
    times = []
    for n in range(args.trials):
        work = tempfile.mkdtemp(prefix="rg-leader-kill-")
        took, planned, name, led = trial(os.path.abspath(args.bin), args.role, work)
        print(f"trial {n + 1}: killed {name} (led {', '.join(led)}); "
              f"{'planned' if planned else 'NOT planned'} {took:.1f} s after the kill", flush=True)
        if planned:
            times.append(took)
        if planned and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"  kept {work} for its logs")
    if times:
        print(f"plan after the kill: p50 {statistics.median(times):.1f} s, max {max(times):.1f} s "
              f"({len(times)} of {args.trials} planned; the request is made at 5 s)")


if __name__ == "__main__":
    main()
