#!/usr/bin/env bash
# Installs what regionguard's local run and tests need when it is missing:
# from Debian's packages nats-server (the bus), unbound (a DNS server
# regionguard did not write, for tests), dnsdist (in front of unbound: per-name
# faults and delays for tests), prometheus-alertmanager (the
# notifier's first sink, for tests), dnsperf (the benchmark's peer),
# Node.js with npm (to build the dashboard) and chromium (the dashboard's
# browser test); from PyPI scikit-learn (the anomaly model's reference),
# moto's server (the AWS API for the failover tests) and PyYAML (the
# compose check);
# from npm the dashboard's packages (`npm ci`), then builds the dashboard
# into dashboard/dist, which the gateway serves.
# Safe to run again: it installs only what is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
have nats-server || missing+=(nats-server)
have unbound || missing+=(unbound)
have dnsdist || missing+=(dnsdist)
have dnsperf || missing+=(dnsperf)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
have node || missing+=(nodejs)
have npm || missing+=(npm)
have chromium || missing+=(chromium)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]} from Debian's packages"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d may refuse to start unbound's and alertmanager's system
  # services; regionguard never uses them (tests start their own), so that
  # refusal is harmless.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# scikit-learn: the reference the Isolation Forest is compared with.
if ! python3 -c "import sklearn" >/dev/null 2>&1; then
  echo "install-deps: installing scikit-learn with pip"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore scikit-learn
fi

# moto's server: the AWS API on loopback, for the failover tests.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "install-deps: installing moto[server] with pip"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'moto[server]'
fi

# PyYAML: scripts/check_compose.py reads the compose files with it.
if ! python3 -c "import yaml" >/dev/null 2>&1; then
  echo "install-deps: installing PyYAML with pip"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyyaml
fi

# The dashboard: its npm packages (exactly as locked), then the build.
dashboard="$(dirname "$0")/../dashboard"
if [ ! -d "$dashboard/node_modules/chart.js" ] || [ ! -d "$dashboard/node_modules/playwright-core" ] \
   || [ ! -d "$dashboard/node_modules/axe-core" ] \
   || [ "$dashboard/package-lock.json" -nt "$dashboard/node_modules/.package-lock.json" ]; then
  echo "install-deps: installing the dashboard's npm packages (npm ci)"
  (cd "$dashboard" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install-deps: building the dashboard (dashboard/dist)"
(cd "$dashboard" && npm run --silent build -- --logLevel warn)

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
echo "install-deps: nats-server, unbound, dnsdist, alertmanager, dnsperf, node, chromium, scikit-learn, moto, the dashboard and cargo are ready"
