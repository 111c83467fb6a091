# Sourced by the benchmark scripts: installs what they need, builds the
# release binary, and gives them a work directory whose background
# processes (their pids in `pids`) are stopped on exit.
#   RG         the release binary (RG_BIN=path uses that one instead of
#              building)
#   work       a temporary directory, removed on exit
#   free_port  a TCP port free on 127.0.0.1 now
#   sbin NAME  the path of a program that may live in /usr/sbin
scripts/install-deps.sh >/dev/null
if [ -n "${RG_BIN:-}" ]; then
  RG="$RG_BIN"
else
  cargo build --release --locked -q
  RG="$PWD/target/release/regionguard"
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sbin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }
