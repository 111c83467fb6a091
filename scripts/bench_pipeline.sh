#!/usr/bin/env bash
# The whole pipeline under load (BENCHMARKS.md): `regionguard up` with its
# own nats-server, the simulator and 3 regions x 1,001 endpoints probed
# every second, the detector, cascade, failover (plan mode) and gateway;
# then `regionguard bench pipeline` injects a DynamoDB empty answer in
# us-east-1 again and again and times the first critical health event, the
# threshold alert, the cascade alert and the failover request, counts lost
# health events, reads each service's CPU and peak memory, and measures raw
# JetStream with messages of the same size in the same run.
#
#   scripts/bench_pipeline.sh                      # 30 injections, 1 s rounds, 1,001 endpoints a region
#   INJECTIONS=20 INTERVAL=10s EXTRA=0 scripts/bench_pipeline.sh
#   CONFIRM=0 ...                                  # confirmation bursts off
#
# Environment: INJECTIONS (30), INTERVAL (1s), EXTRA extra names per service
# (142: 7 x 143 = 1,001 endpoints a region), CONFIRM re-probes per burst (3;
# 0 = off), RAW messages for the raw JetStream peer (200000).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/bench-common.sh
INJECTIONS="${INJECTIONS:-30}"
INTERVAL="${INTERVAL:-1s}"
EXTRA="${EXTRA:-142}"
CONFIRM="${CONFIRM:-3}"
RAW="${RAW:-200000}"

nats_port="$(free_port)"; dns_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
timeout="$(python3 -c "
import re,sys
v=sys.argv[1]; m=re.fullmatch(r'(\d+)(ms|s)', v)
ms=int(m.group(1))*(1 if m.group(2)=='ms' else 1000)
print(f'{int(ms*0.8)}ms')" "$INTERVAL")"
cat >"$work/rg.toml" <<CONF
[nats]
servers = ["nats://127.0.0.1:$nats_port"]
[simulator]
listen = "127.0.0.1:$dns_port"
[prober]
interval = "$INTERVAL"
timeout = "$timeout"
extra_endpoints_per_service = $EXTRA
[prober.confirm]
count = $CONFIRM
[cascade.failover]
# One request per injection: no cooldown between them.
cooldown = "1s"
[gateway]
listen = "127.0.0.1:$http_port"
grpc_listen = "127.0.0.1:$grpc_port"
interval = "$INTERVAL"
CONF
export RG_LOG=warn
echo "== regionguard up: 3 regions x $((7 * (EXTRA + 1))) endpoints every $INTERVAL, confirmation count $CONFIRM"
"$RG" up --config "$work/rg.toml" --state-dir "$work/state" >"$work/up.out" 2>"$work/up.log" &
up=$!
pids+=($up)
for _ in $(seq 1 240); do
  grep -q "regionguard is up" "$work/up.out" && break
  if ! kill -0 "$up" 2>/dev/null; then cat "$work/up.out" "$work/up.log"; exit 1; fi
  sleep 0.5
done
grep -q "regionguard is up" "$work/up.out" || { cat "$work/up.out"; tail -20 "$work/up.log"; exit 1; }
# A few rounds first: every service has seen the region healthy.
sleep 5

echo "== bench pipeline: $INJECTIONS injections"
"$RG" bench pipeline --config "$work/rg.toml" --injections "$INJECTIONS" \
  --up-pid "$up" --raw-messages "$RAW" --stage-timeout 90s
