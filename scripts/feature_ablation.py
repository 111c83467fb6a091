#!/usr/bin/env python3
"""What each anomaly feature does to detection.

Generates two days of synthetic health checks (21 endpoints, 10 s rounds,
a daily latency swing) with three kinds of trouble in known rounds:

- failures: one region's lookups fail (timeouts at 2 s) for 5 minutes;
- spikes: single endpoints 3-10x slower, now and then;
- drift: every endpoint 30 % slower at once for 10 minutes;

then replays it with `regionguard replay --mode baseline` (the service's
default) once per feature set and reports, per kind, the share of troubled
rounds that alerted, and the share of normal rounds that alerted.

    scripts/feature_ablation.py [--bin target/release/regionguard]
"""

import argparse
import csv
import math
import os
import random
import subprocess
import tempfile

SERVICES = ["dynamodb", "ec2", "rds", "elasticloadbalancing", "lambda", "s3", "sqs"]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
BASE = dict(zip(SERVICES, [4, 6, 9, 12, 15, 5, 7]))
T0 = 1_760_000_000  # a 10 s boundary


def generate(path, rounds, seed=5):
    rng = random.Random(seed)
    kinds = {}
    fail_start, drift_start = rounds // 2, rounds // 2 + 2000
    for r in range(rounds):
        kind = None
        if fail_start <= r < fail_start + 30:
            kind = "failures"
        elif drift_start <= r < drift_start + 60:
            kind = "drift"
        elif r > 500 and rng.random() < 0.01:
            kind = "spikes"
        kinds[r] = kind
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "region", "service", "endpoint", "success", "response_time_ms", "trouble"])
        for r in range(rounds):
            ts = T0 + r * 10
            swing = 1.0 + 0.3 * math.sin(2 * math.pi * ((ts / 3600) % 24) / 24)
            spiked = rng.randrange(21) if kinds[r] == "spikes" else -1
            for i, (region, s) in enumerate((g, s) for g in REGIONS for s in SERVICES):
                rt = BASE[s] * swing * rng.lognormvariate(0, 0.1)
                ok, trouble = 1, "none"
                if kinds[r] == "failures" and region == "us-east-1":
                    ok, rt, trouble = 0, 2000.0, "failures"
                elif kinds[r] == "drift":
                    rt, trouble = rt * 1.3, "drift"
                elif i == spiked:
                    rt, trouble = rt * rng.uniform(3, 10), "spikes"
                w.writerow([ts, region, s, f"{s}.{region}.amazonaws.com", ok, round(rt, 3), trouble])
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("RG_BIN", "target/release/regionguard"))
    parser.add_argument("--rounds", type=int, default=2 * 8640)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="rg-ablation-")
    data = os.path.join(work, "checks.csv")
    kinds = generate(data, args.rounds)
    sets = [
        "success,response_time",
        "success,response_time,hour",
        "success,response_time,norm_latency",
        "success,response_time,hour,norm_latency",
    ]
    print("| features | failed rows flagged | failure rounds alerting | spiked rows flagged | drift rows flagged | drift rounds alerting | normal rows flagged | normal rounds alerting |")
    print("|---|---|---|---|---|---|---|---|")
    troubles = {}
    with open(data) as f:
        for i, row in enumerate(csv.DictReader(f)):
            troubles[i] = row["trouble"]
    for features in sets:
        out = os.path.join(work, "scores.csv")
        subprocess.run([args.bin, "replay", "--input", data, "--output", out, "--mode", "baseline",
                        "--batch", "10s", "--features", features], check=True,
                       env={**os.environ, "RG_LOG": "warn"}, stderr=subprocess.DEVNULL)
        flagged, alerted = {}, {}
        with open(out) as f:
            for i, row in enumerate(csv.DictReader(f)):
                r = (int(row["timestamp_ms"]) // 1000 - T0) // 10
                if r < 200:
                    continue  # warm-up
                flagged[i] = row["flagged"] == "1"
                alerted[r] = row["batch_alert"] == "1"

        def rows(kind):
            sel = [i for i, t in troubles.items() if t == kind and i in flagged]
            return sum(flagged[i] for i in sel) / max(len(sel), 1)

        def rounds(kind):
            rs = [r for r, k in kinds.items() if k == kind and r in alerted]
            return sum(alerted[r] for r in rs) / max(len(rs), 1)

        print(f"| {features} | {rows('failures'):.0%} | {rounds('failures'):.0%} | {rows('spikes'):.0%} | {rows('drift'):.0%} "
              f"| {rounds('drift'):.0%} | {rows('none'):.2%} | {rounds(None):.2%} |", flush=True)


if __name__ == "__main__":
    main()
