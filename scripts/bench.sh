#!/usr/bin/env bash
# The prober's benchmark (BENCHMARKS.md): probes per second that one prober
# sustains against the DNS simulator and against Debian's unbound, side by
# side with dnsperf against the same server in the same run, plus lookup
# latency at a fixed rate and the memory of a prober with 10,000 endpoints.
#
#   scripts/bench.sh                  # 10 s per measurement
#   BENCH_SECONDS=5 scripts/bench.sh  # shorter
#
# Servers run on CPU 0, the load generator (prober or dnsperf) on CPU 1, so
# "the prober on one core" is literal. The machine is shared: compare the
# ratio, not the absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/bench-common.sh
SECS="${BENCH_SECONDS:-10}"
RATE="${BENCH_RATE:-2000}"
NAMES="${BENCH_NAMES:-1001}"

# The names both tools ask for: the regional endpoint of each service and
# e<i>. names below it, exactly as `bench probe --endpoints N` generates.
python3 - "$work/names.txt" "$work/zone.conf" "$NAMES" <<'EOF'
import sys, math
names_path, zone_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
services = ["dynamodb", "ec2", "rds", "elasticloadbalancing", "lambda", "s3", "sqs"]
per = math.ceil(n / len(services))
names = []
for s in services:
    base = f"{s}.us-east-1.amazonaws.com"
    names.append(base)
    names += [f"e{i}.{base}" for i in range(1, per)]
with open(names_path, "w") as f:
    f.writelines(f"{x} A\n" for x in names)
with open(zone_path, "w") as f:
    f.write('  local-zone: "amazonaws.com." static\n')
    for i, x in enumerate(names):
        f.write(f'  local-data: "{x}. 60 IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"\n')
EOF

# The simulator, fault control off (no NATS needed).
sim_port="$(free_port)"
RG_LOG=warn RG_SIMULATOR__CONTROL=false taskset -c 0 "$RG" simulator --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
pids+=($!)

# unbound serving the same names from a static local zone.
ub_port="$(free_port)"
cat >"$work/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$ub_port
  port: $ub_port
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "$work"
  pidfile: "$work/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  module-config: "iterator"
$(cat "$work/zone.conf")
remote-control:
  control-enable: no
EOF
taskset -c 0 "$(sbin unbound)" -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
pids+=($!)
sleep 1

dnsperf_run() { # name port [rate]
  local out="$work/dnsperf-$1-${3:-max}.out" extra=()
  [ -n "${3:-}" ] && extra=(-Q "$3")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$2" -d "$work/names.txt" -l "$SECS" -q 256 "${extra[@]}" >"$out" 2>&1
}
prober_run() { # name port [rate]
  local out="$work/prober-$1-${3:-max}.json" extra=()
  [ -n "${3:-}" ] && extra=(--rate "$3")
  RG_LOG=warn taskset -c 1 "$RG" bench probe --resolver "127.0.0.1:$2" --duration "${SECS}s" \
    --endpoints "$NAMES" --concurrency 256 --json "${extra[@]}" >"$out" 2>"$work/prober-$1.err"
}

for target in "simulator:$sim_port" "unbound:$ub_port"; do
  name="${target%%:*}"; port="${target##*:}"
  echo "bench: $name flat out (dnsperf, then prober, ${SECS}s each)" >&2
  dnsperf_run "$name" "$port"
  prober_run "$name" "$port"
  echo "bench: $name at $RATE queries/s (latency)" >&2
  dnsperf_run "$name" "$port" "$RATE"
  prober_run "$name" "$port" "$RATE"
done

# Memory of a real prober process with 10,000 endpoints, publishing to a
# nats-server of its own, after a few rounds against the simulator.
echo "bench: memory of a prober with 10,000 endpoints" >&2
nats_port="$(free_port)"
"$(sbin nats-server)" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
sleep 1
RG_LOG=warn RG_PROBER__EXTRA_ENDPOINTS_PER_SERVICE=1428 RG_PROBER__INTERVAL=2s RG_PROBER__TIMEOUT=1s \
  taskset -c 1 "$RG" prober --nats "nats://127.0.0.1:$nats_port" --region us-east-1 --vantage bench-mem \
  --resolver "127.0.0.1:$sim_port" >"$work/prober-mem.log" 2>&1 &
mem_pid=$!
pids+=($mem_pid)
sleep 8
grep -E '^(VmRSS|VmHWM)' "/proc/$mem_pid/status" >"$work/mem.txt"
kill "$mem_pid"

python3 - "$work" "$SECS" "$RATE" <<'EOF'
import json, re, sys, pathlib
work, secs, rate = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def dnsperf(path):
    text = path.read_text()
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", text).group(1))
    lat = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", text).group(1)) * 1000
    lost = re.search(r"Queries lost:\s+(\d+)", text).group(1)
    return qps, lat, lost
print(f"| server | dnsperf q/s | prober probes/s | ratio | prober CPU (cores) | dnsperf mean ms @{rate}/s | prober mean ms @{rate}/s | diff ms |")
print("|---|---|---|---|---|---|---|---|")
for name in ["simulator", "unbound"]:
    dq, _, _ = dnsperf(work / f"dnsperf-{name}-max.out")
    p = json.loads((work / f"prober-{name}-max.json").read_text())
    _, dl, _ = dnsperf(work / f"dnsperf-{name}-{rate}.out")
    pr = json.loads((work / f"prober-{name}-{rate}.json").read_text())
    print(f"| {name} | {dq:,.0f} | {p['probes_per_second']:,.0f} | {p['probes_per_second']/dq:.2f} | {p['cpu_cores']:.2f} "
          f"| {dl:.3f} | {pr['mean_latency_ms']:.3f} | {pr['mean_latency_ms']-dl:+.3f} |")
mem = dict(l.split(":") for l in (work / "mem.txt").read_text().splitlines())
print()
print(f"prober with 10,000 endpoints (1 resolver, 2 s rounds, publishing): "
      f"resident {mem['VmRSS'].strip()}, peak {mem['VmHWM'].strip()}")
EOF
