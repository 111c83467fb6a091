#!/usr/bin/env bash
# The test command of the README and of CI: install what the tests need,
# check formatting and lints, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Docker engine, docker-compose and the base images (stand-ins built from
# Debian's packages where none can be pulled), for tests/e2e/compose.rs.
scripts/docker-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== Isolation Forest against scikit-learn (ROC AUC within 0.02)"
python3 scripts/compare_sklearn.py --bin target/debug/regionguard

echo "== docker compose files, Dockerfile and NATS cluster config (no Docker engine needed)"
python3 scripts/check_compose.py --bin target/debug/regionguard
