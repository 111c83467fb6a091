#!/usr/bin/env bash
# The gateway's benchmarks (BENCHMARKS.md):
#  1. snapshot build time for 10,000 endpoints (3 vantage points each),
#     beside prost decoding the same round of events in the same run;
#  2. CPU and memory of a real gateway publishing one snapshot per second,
#     first with no client, then with 1,000 WebSocket clients, fed by the
#     simulator and three probers with 10,000 endpoints in all.
#
#   scripts/bench_gateway.sh                  # 30 s per phase
#   BENCH_SECONDS=10 scripts/bench_gateway.sh
#
# The gateway runs on CPU 0, everything else on CPU 1. The machine is
# shared: compare the two phases of the same run, not absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/bench-common.sh
SECS="${BENCH_SECONDS:-30}"

echo "== snapshot build, 10,000 endpoints x 3 vantage points"
taskset -c 0 "$RG" bench snapshot --endpoints 10000 --vantages 3 --iterations 50

nats_port="$(free_port)"; dns_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
cat >"$work/rg.toml" <<CONF
[nats]
servers = ["nats://127.0.0.1:$nats_port"]
[simulator]
listen = "127.0.0.1:$dns_port"
[prober]
interval = "1s"
timeout = "800ms"
# 7 services x 477 names = 3,339 endpoints per region, 10,017 in all.
extra_endpoints_per_service = 476
[gateway]
listen = "127.0.0.1:$http_port"
grpc_listen = "127.0.0.1:$grpc_port"
interval = "1s"
stale_after = "3s"
CONF
export RG_CONFIG="$work/rg.toml" RG_LOG=warn
taskset -c 1 "$(sbin nats-server)" -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
sleep 1
taskset -c 1 "$RG" simulator >"$work/sim.log" 2>&1 &
pids+=($!)
for region in us-east-1 us-west-2 eu-west-1; do
  taskset -c 1 "$RG" prober --region "$region" --vantage "$region-bench" --resolver "127.0.0.1:$dns_port" >"$work/prober-$region.log" 2>&1 &
  pids+=($!)
done
taskset -c 0 "$RG" gateway >"$work/gateway.log" 2>&1 &
gw=$!
pids+=($gw)

# Wait until the gateway's snapshots carry every endpoint.
for _ in $(seq 1 120); do
  total="$(curl -s "http://127.0.0.1:$http_port/api/snapshot" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["summary"]["total_endpoints"])
except Exception: print(0)')"
  [ "$total" -ge 10000 ] && break
  sleep 0.5
done
echo "gateway sees $total endpoints"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
mem() { awk '/^VmRSS|^VmHWM/ {printf "%s %s KiB  ", $1, $2}' "/proc/$gw/status"; echo; }

echo "== gateway, no clients, $SECS s"
t0="$(cpu_ticks)"; sleep "$SECS"; t1="$(cpu_ticks)"
python3 -c "print(f'cpu {($t1-$t0)/100:.2f} s = {($t1-$t0)/100/$SECS*100:.1f} % of a core')"
mem

echo "== gateway, 1,000 WebSocket clients, $SECS s"
taskset -c 1 "$RG" bench ws --gateway "127.0.0.1:$http_port" --clients 1000 --duration "${SECS}s" >"$work/ws.json" &
client=$!
# Measure while all clients listen (they connect in the first seconds).
sleep 3
t0="$(cpu_ticks)"; sleep "$((SECS - 4))"; t1="$(cpu_ticks)"
python3 -c "print(f'cpu {($t1-$t0)/100:.2f} s = {($t1-$t0)/100/($SECS-4)*100:.1f} % of a core')"
mem
wait "$client"
cat "$work/ws.json"
curl -s "http://127.0.0.1:$http_port/metrics" | grep -E "^regionguard_gateway_(snapshots_skipped|watchers_dropped)" || echo "no watcher skipped or dropped"
