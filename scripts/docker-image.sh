#!/usr/bin/env bash
# Builds the regionguard:local image (deploy/Dockerfile.host) from a binary
# built on the host, so nothing compiles inside a container:
#
#   scripts/docker-image.sh [--bin PATH] [--tag NAME]
#
# PATH defaults to target/release/regionguard (build it first:
# cargo build --release --locked); the dashboard must be built
# (scripts/install-deps.sh does). Needs a Docker engine and the
# debian:bookworm-slim image (scripts/docker-deps.sh makes both).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/regionguard
tag=regionguard:local
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "docker-image: $bin is missing: build it (cargo build --release --locked) or pass --bin" >&2; exit 1; }
[ -f dashboard/dist/index.html ] || { echo "docker-image: dashboard/dist is missing: run scripts/install-deps.sh" >&2; exit 1; }

context=$(mktemp -d /tmp/regionguard-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/regionguard"
# A debug build carries 1 GB of debug info; the image needs none of it.
if command -v strip >/dev/null 2>&1; then strip --strip-debug "$context/regionguard"; fi
mkdir -p "$context/dashboard"
cp -r dashboard/dist "$context/dashboard/dist"
cp -r deploy/config "$context/config"
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "docker-image: $ca is missing: install ca-certificates on this host (the AWS SDK needs them)" >&2; exit 1; }
cp "$ca" "$context/ca-certificates.crt"
echo "docker-image: building $tag from $bin"
# The classic builder (no BuildKit needed). Newer clients warn that it is
# deprecated, which says nothing about this build: its output is shown only
# when the build fails.
if ! DOCKER_BUILDKIT=0 docker build -f deploy/Dockerfile.host -t "$tag" "$context" >"$context/build.log" 2>&1; then
  cat "$context/build.log" >&2
  echo "docker-image: docker build failed" >&2
  exit 1
fi
echo "docker-image: $tag is $(docker image inspect -f '{{.Id}}' "$tag" | cut -c8-19), $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
