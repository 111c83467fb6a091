#!/usr/bin/env python3
"""Isolation Forest fit + score: regionguard against scikit-learn.

For each size (rows of four health-check features: success, response time,
hour, normalized latency), writes the rows to a CSV, then times in separate
processes, on the same rows and in the same run:

- scikit-learn's IsolationForest (100 trees, 256 rows each, n_jobs=1):
  fit(X) then score_samples(X);
- `regionguard bench forest --single-thread`, and with every core.

Reports seconds, the ratio scikit-learn / regionguard, and each process's
peak resident memory. Loading the CSV is not timed.

    scripts/bench_forest.py [--sizes 1000,10000,100000,1000000] [--bin target/release/regionguard]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

SKLEARN_CHILD = r"""
import json, resource, sys, time
import numpy as np
from sklearn.ensemble import IsolationForest
x = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
start = time.perf_counter()
model = IsolationForest(n_estimators=100, max_samples=256, contamination="auto", random_state=0, n_jobs=1).fit(x)
fitted = time.perf_counter()
scores = model.score_samples(x)
done = time.perf_counter()
print(json.dumps({"fit_s": fitted - start, "score_s": done - fitted, "total_s": done - start,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "mean_score": float(scores.mean())}))
"""


def ensure_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--root-user-action=ignore", "scikit-learn"])


def write_rows(path, n, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    ts = 1_760_000_000 + (np.arange(n) // 21) * 10
    success = (rng.random(n) > 0.01).astype(float)
    base = rng.choice([4.0, 6.0, 9.0, 12.0, 15.0, 5.0, 7.0], n)
    rt = np.where(success == 1, base * rng.lognormal(0, 0.15, n), 2000.0)
    spikes = rng.random(n) < 0.01
    rt[spikes] *= rng.uniform(3, 10, spikes.sum())
    hour = (ts // 3600) % 24
    norm = rt / base
    np.savetxt(path, np.column_stack([success, rt, hour, norm]), delimiter=",", header="success,response_time,hour,norm_latency",
               comments="", fmt="%.6g")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--bin", default=os.environ.get("RG_BIN", "target/release/regionguard"))
    args = parser.parse_args()
    ensure_sklearn()
    work = tempfile.mkdtemp(prefix="rg-bench-forest-")
    print("| rows | scikit-learn s (1 thread) | regionguard s (1 thread) | ratio | regionguard s (all cores) | ratio | sklearn peak MiB | regionguard peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",")]:
        path = os.path.join(work, f"rows-{n}.csv")
        write_rows(path, n, seed=n)
        sk = json.loads(subprocess.check_output([sys.executable, "-c", SKLEARN_CHILD, path]))
        one = json.loads(subprocess.check_output([args.bin, "bench", "forest", "--input", path, "--single-thread"],
                                                 env={**os.environ, "RG_LOG": "warn"}))
        allc = json.loads(subprocess.check_output([args.bin, "bench", "forest", "--input", path],
                                                  env={**os.environ, "RG_LOG": "warn"}))
        print(f"| {n:,} | {sk['total_s']:.3f} | {one['total_s']:.3f} | {sk['total_s'] / one['total_s']:.1f}x "
              f"| {allc['total_s']:.3f} | {sk['total_s'] / allc['total_s']:.1f}x "
              f"| {sk['peak_rss_kib'] / 1024:.0f} | {one['peak_rss_kib'] / 1024:.0f} |", flush=True)
        os.remove(path)


if __name__ == "__main__":
    main()
