#!/usr/bin/env python3
"""Agreement of regionguard's Isolation Forest with scikit-learn's.

Runs scikit-learn's IsolationForest and `regionguard replay` (batch mode:
fit and score the whole data set, contamination=auto) on the same rows of
several data sets, and compares their ROC AUC against the known labels.
Fails (exit 1) when they differ by more than 0.02 on any data set.

    scripts/compare_sklearn.py [--bin target/debug/regionguard]

It installs scikit-learn with pip when it is missing.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile


def ensure_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("compare: installing scikit-learn with pip", file=sys.stderr)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore", "scikit-learn"]
        )


def health_checks(seed, rounds, anomaly_share, failures):
    """Synthetic health checks: 21 endpoints (3 regions x 7 services) over
    `rounds` rounds of 10 s, lognormal latencies around per-service bases
    with a daily swing; a share of rows are anomalies: failed lookups
    (timeouts at 2 s, when `failures`) and latency spikes of 3-10x."""
    import numpy as np

    rng = np.random.default_rng(seed)
    regions = ["us-east-1", "us-west-2", "eu-west-1"]
    services = ["dynamodb", "ec2", "rds", "elasticloadbalancing", "lambda", "s3", "sqs"]
    base = {s: b for s, b in zip(services, [4, 6, 9, 12, 15, 5, 7])}
    rows = []
    t0 = 1_760_000_000
    for r in range(rounds):
        ts = t0 + r * 10
        hour = (ts // 3600) % 24
        swing = 1.0 + 0.3 * np.sin(2 * np.pi * hour / 24)
        for region in regions:
            for s in services:
                rt = base[s] * swing * rng.lognormal(0.0, 0.15)
                ok, label = 1, 0
                if rng.random() < anomaly_share:
                    label = 1
                    if failures and rng.random() < 0.5:
                        ok, rt = 0, 2000.0
                    else:
                        rt *= rng.uniform(3.0, 10.0)
                rows.append([ts, region, s, f"{s}.{region}.amazonaws.com", ok, round(rt, 3), label])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("RG_BIN", "target/debug/regionguard"))
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()
    ensure_sklearn()
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    work = tempfile.mkdtemp(prefix="rg-compare-")
    results = []

    def compare(name, x, y, replay_args, path):
        sk = IsolationForest(n_estimators=100, max_samples=256, contamination="auto", random_state=0, n_jobs=1)
        sk.fit(x)
        auc_sk = roc_auc_score(y, -sk.score_samples(x))
        out = os.path.join(work, name + ".scores.csv")
        subprocess.run(
            [args.bin, "replay", "--input", path, "--output", out, "--mode", "batch", "--contamination", "auto", *replay_args],
            check=True,
            env={**os.environ, "RG_LOG": "warn"},
            stderr=subprocess.DEVNULL,
        )
        with open(out) as f:
            scores = [float(r["score"]) for r in csv.DictReader(f)]
        if len(scores) != len(y):
            sys.exit(f"compare: {name}: regionguard scored {len(scores)} rows of {len(y)}")
        auc_rg = roc_auc_score(y, -np.array(scores))
        results.append((name, len(y), int(sum(y)), auc_sk, auc_rg))

    # 1. Breast cancer (ships with scikit-learn): malignant subsampled to
    #    about 5 % as the anomalies.
    data = load_breast_cancer()
    rng = np.random.default_rng(7)
    benign = np.where(data.target == 1)[0]
    malignant = rng.choice(np.where(data.target == 0)[0], size=19, replace=False)
    idx = np.concatenate([benign, malignant])
    x, y = data.data[idx], (data.target[idx] == 0).astype(int)
    path = os.path.join(work, "breast_cancer.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        for row, label in zip(x, y):
            w.writerow(list(row) + [label])
    compare("breast_cancer", x, y, ["--format", "features", "--ignore", "label"], path)

    # 2. Wine (ships with scikit-learn): class 2 subsampled to ~8 %.
    data = load_wine()
    normal = np.where(data.target != 2)[0]
    odd = rng.choice(np.where(data.target == 2)[0], size=11, replace=False)
    idx = np.concatenate([normal, odd])
    x, y = data.data[idx], (data.target[idx] == 2).astype(int)
    path = os.path.join(work, "wine.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        for row, label in zip(x, y):
            w.writerow(list(row) + [label])
    compare("wine", x, y, ["--format", "features", "--ignore", "label"], path)

    # 3 and 4. Synthetic health checks: failures and spikes; spikes only.
    for name, failures, share in [("health_failures_spikes", True, 0.03), ("health_spikes_only", False, 0.02)]:
        rows = health_checks(seed=11 if failures else 12, rounds=300, anomaly_share=share, failures=failures)
        path = os.path.join(work, name + ".csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "region", "service", "endpoint", "success", "response_time_ms", "label"])
            w.writerows(rows)
        x = np.array([[r[4], r[5], (r[0] // 3600) % 24] for r in rows], dtype=float)
        y = np.array([r[6] for r in rows])
        compare(name, x, y, ["--batch", "all", "--features", "success,response_time,hour"], path)

    print(f"| data set | rows | anomalies | scikit-learn AUC | regionguard AUC | difference |")
    print("|---|---|---|---|---|---|")
    failed = []
    for name, n, k, a_sk, a_rg in results:
        diff = a_rg - a_sk
        print(f"| {name} | {n} | {k} | {a_sk:.4f} | {a_rg:.4f} | {diff:+.4f} |")
        if abs(diff) > args.tolerance:
            failed.append(name)
    if failed:
        sys.exit(f"compare: AUC differs from scikit-learn's by more than {args.tolerance} on {', '.join(failed)}")
    print(f"compare: every AUC within {args.tolerance} of scikit-learn's")


if __name__ == "__main__":
    main()
