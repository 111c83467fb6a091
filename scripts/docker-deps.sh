#!/usr/bin/env bash
# Makes docker compose runnable on a Debian host that cannot pull images:
#
#   1. installs docker.io, docker-compose (v1.29) and debootstrap from
#      Debian's packages when they are missing;
#   2. starts dockerd when no Docker engine answers (as root);
#   3. for each base image the compose files and Dockerfiles name that is
#      absent here and cannot be pulled, builds a stand-in from Debian's
#      packages (debootstrap + docker import), labelled
#      org.regionguard.stand-in=true. An image that exists is never replaced.
#
# Stand-ins: debian:bookworm-slim (a minbase Debian 12) and nats:2.10-alpine
# (Debian's nats-server, with an entrypoint that behaves like the official
# image's: arguments starting with "-" go to nats-server, no arguments run
# it with /etc/nats/nats-server.conf; and the wget its health checks call).
# The regionguard image itself is built by scripts/docker-image.sh from a
# binary built on the host.
#
# Safe to run again. Environment: RG_DEBIAN_MIRROR overrides the mirror
# (default: the one apt on this machine uses).
set -euo pipefail

log() { echo "docker-deps: $*"; }
die() { echo "docker-deps: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# 1. The packages.
missing=()
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The engine.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting dockerd needs root: start it (sudo dockerd &) and run this again"
  log "no Docker engine answers: starting dockerd (log: /var/log/regionguard-dockerd.log)"
  nohup /usr/sbin/dockerd >/var/log/regionguard-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 30 s; see /var/log/regionguard-dockerd.log"
fi
log "Docker engine $(docker version --format '{{.Server.Version}}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"

# 3. The base images.
mirror() {
  if [ -n "${RG_DEBIAN_MIRROR:-}" ]; then echo "$RG_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

present() { docker image inspect "$1" >/dev/null 2>&1; }

# Tries a pull; a host with no registry fails in well under a second.
pulled() {
  log "$1 is not here: trying to pull it"
  timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

work=""
cleanup() { if [ -n "$work" ]; then $SUDO rm -rf "$work"; fi; }
trap cleanup EXIT

# Makes $work/rootfs once (not in a subshell: it sets $work).
ensure_rootfs() {
  if [ -z "$work" ]; then
    work=$(mktemp -d /tmp/regionguard-standin.XXXXXX)
    local m
    m=$(mirror)
    log "making a Debian 12 root file system with debootstrap from $m"
    $SUDO debootstrap --variant=minbase bookworm "$work/rootfs" "$m" >"$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    $SUDO chroot "$work/rootfs" apt-get clean
  fi
}

standin_debian() {
  ensure_rootfs
  local root="$work/rootfs"
  log "building a stand-in for debian:bookworm-slim"
  $SUDO tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'LABEL org.regionguard.stand-in=true' \
    - debian:bookworm-slim >/dev/null
}

standin_nats() {
  ensure_rootfs
  local root="$work/rootfs" nats="$work/nats"
  log "building a stand-in for nats:2.10-alpine from Debian's nats-server"
  $SUDO cp -a "$root" "$nats"
  $SUDO chroot "$nats" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO chroot "$nats" \
    apt-get install -y -qq --no-install-recommends nats-server wget >/dev/null
  $SUDO chroot "$nats" apt-get clean
  $SUDO rm -rf "$nats/var/lib/apt/lists"
  $SUDO mkdir -p "$nats/etc/nats"
  # What the official image runs without arguments: a plain server with
  # monitoring, ready to be clustered.
  $SUDO tee "$nats/etc/nats/nats-server.conf" >/dev/null <<'EOF'
port: 4222
http_port: 8222
cluster {
  name: "NATS"
  port: 6222
}
EOF
  # The official entrypoint's rule: a first argument that is a flag (or
  # none) runs nats-server with it; anything else is run as a command.
  $SUDO tee "$nats/usr/local/bin/docker-entrypoint.sh" >/dev/null <<'EOF'
#!/bin/sh
set -e
if [ "$#" -eq 0 ]; then
  set -- nats-server --config /etc/nats/nats-server.conf
elif [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
EOF
  $SUDO chmod 755 "$nats/usr/local/bin/docker-entrypoint.sh"
  $SUDO ln -sf /usr/sbin/nats-server "$nats/usr/local/bin/nats-server"
  $SUDO tar -C "$nats" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'EXPOSE 4222 6222 8222' \
    --change 'LABEL org.regionguard.stand-in=true' \
    - nats:2.10-alpine >/dev/null
}

for image in debian:bookworm-slim nats:2.10-alpine; do
  if present "$image"; then
    continue
  fi
  if pulled "$image"; then
    log "pulled $image"
    continue
  fi
  case "$image" in
    debian:bookworm-slim) standin_debian ;;
    nats:2.10-alpine) standin_nats ;;
  esac
done
log "images ready: debian:bookworm-slim, nats:2.10-alpine$(present regionguard:local && echo ', regionguard:local')"
