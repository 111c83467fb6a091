#!/usr/bin/env bash
# Installs what regionguard's local run and tests need when it is missing:
# from Debian's packages nats-server (the bus), unbound (a DNS server
# regionguard did not write, for tests) and dnsperf (the benchmark's peer);
# from PyPI scikit-learn (the anomaly model's reference).
# Safe to run again: it installs only what is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
have nats-server || missing+=(nats-server)
have unbound || missing+=(unbound)
have dnsperf || missing+=(dnsperf)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]} from Debian's packages"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # policy-rc.d may refuse to start unbound's system service; regionguard
  # never uses it (tests start their own), so that refusal is harmless.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# scikit-learn: the reference the Isolation Forest is compared with.
if ! python3 -c "import sklearn" >/dev/null 2>&1; then
  echo "install-deps: installing scikit-learn with pip"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore scikit-learn
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
echo "install-deps: nats-server, unbound, dnsperf, scikit-learn and cargo are present"
