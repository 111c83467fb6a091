#!/usr/bin/env python3
"""Checks deploy/compose*.yaml, the Dockerfile and the NATS cluster config
without a Docker engine:

- the compose files parse, name the services regionguard needs, and the
  override files only touch services that exist;
- every regionguard service's command exists in the built binary and starts
  with its mounted config and environment (run here with NATS pointed at a
  dead port: it must stay up waiting for NATS, then stop cleanly on SIGTERM;
  a bad flag or key exits with code 2 and fails the check);
- every health check command parses, and its port is the service's
  metrics (or the gateway's HTTP) port in the config;
- the gateway's published port, the simulator's address and the probers'
  resolver, and the NATS URL agree with the config; all configs share one
  subject prefix;
- every path the Dockerfile copies exists;
- nats-server accepts the cluster config (nats-server -t);
- compose.auth.yaml: every service runs as a user of deploy/nats/auth.conf
  meant for it, the NATS server is given every password auth.conf reads,
  nats-server accepts server-auth.conf with them, and `regionguard
  provision` exists.

Usage: scripts/check_compose.py --bin target/debug/regionguard
"""
import argparse
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
REQUIRED = {"nats", "simulator", "prober-us-east-1", "prober-us-west-2", "prober-eu-west-1",
            "detector", "cascade", "failover", "notifier", "gateway"}
SUBCOMMANDS = {"prober", "simulator", "detector", "cascade", "failover", "notifier", "gateway"}

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL {msg}")


def ok(msg):
    print(f"  ok   {msg}")


def interpolate(value):
    """Compose's ${VAR:-default}, with the default (no variable is set here)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def local_config(env):
    path = env.get("RG_CONFIG", "")
    if not path.startswith("/etc/regionguard/"):
        return None
    return DEPLOY / "config" / path.removeprefix("/etc/regionguard/")


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def starts_and_stops(binary, name, command, env, config):
    """Runs the service against a dead NATS; True when it waits, then stops with 0 on SIGTERM."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    run_env.update({k: interpolate(v) for k, v in env.items()})
    run_env["RG_CONFIG"] = str(config)
    # Here, not in a container: nothing listens on port 1, and every
    # listener takes a free loopback port.
    run_env["RG_NATS__SERVERS"] = '["nats://127.0.0.1:1"]'
    for section in ["prober", "simulator", "detector", "cascade", "gateway", "failover", "notifier"]:
        run_env[f"RG_{section.upper()}__METRICS_LISTEN"] = "127.0.0.1:0"
    run_env["RG_SIMULATOR__LISTEN"] = "127.0.0.1:0"
    run_env["RG_GATEWAY__LISTEN"] = "127.0.0.1:0"
    run_env["RG_GATEWAY__GRPC_LISTEN"] = "127.0.0.1:0"
    run_env["RG_LOG_FORMAT"] = "human"
    p = subprocess.Popen([binary, *command], env=run_env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    if p.poll() is not None:
        out, err = p.communicate()
        fail(f"{name}: `regionguard {' '.join(command)}` exited with {p.returncode} at start:\n{err[-1500:]}")
        return
    p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        fail(f"{name}: did not stop within 20 s of SIGTERM")
        return
    if p.returncode != 0:
        fail(f"{name}: exited with {p.returncode} on SIGTERM:\n{err[-1500:]}")
    else:
        ok(f"{name}: `regionguard {' '.join(command)}` starts with {config.relative_to(ROOT)}, waits for NATS, stops cleanly")


def check_compose(binary):
    print("== deploy/compose.yaml")
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose.get("services", {})
    missing = REQUIRED - set(services)
    if missing:
        fail(f"services missing: {sorted(missing)}")
    else:
        ok(f"services: {', '.join(sorted(services))}")

    configs = {}
    for name, svc in sorted(services.items()):
        if name.startswith("nats"):
            continue
        if interpolate(svc.get("image")) != "regionguard:local" or "build" not in svc:
            fail(f"{name}: not built from deploy/Dockerfile")
        command = svc.get("command") or []
        if not command or command[0] not in SUBCOMMANDS:
            fail(f"{name}: command {command} is not a regionguard service")
            continue
        env = svc.get("environment") or {}
        config = local_config(env)
        if config is None or not config.is_file():
            fail(f"{name}: RG_CONFIG {env.get('RG_CONFIG')} is not a file of deploy/config")
            continue
        if "./config:/etc/regionguard:ro" not in (svc.get("volumes") or []):
            fail(f"{name}: deploy/config is not mounted at /etc/regionguard")
        conf = tomllib.loads(config.read_text())
        configs[config.name] = conf
        starts_and_stops(binary, name, command, env, config)

        # Health check: parses, and points at the right port.
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:4] != ["CMD", "regionguard", "status", "--healthz"] or len(test) != 5:
            fail(f"{name}: health check {test} is not `regionguard status --healthz ADDR`")
        else:
            section = command[0]
            want = conf.get(section, {}).get("listen" if section == "gateway" else "metrics_listen")
            if want is None or port_of(test[4]) != port_of(want):
                fail(f"{name}: health check port {test[4]} is not {section}'s port ({want})")
            r = subprocess.run([binary, "status", "--healthz", "127.0.0.1:1"], capture_output=True, text=True)
            if r.returncode != 1:
                fail(f"{name}: `regionguard status --healthz` exited {r.returncode}: {r.stderr}")
            else:
                ok(f"{name}: health check `{' '.join(test[1:])}` parses and matches the config")

    conf = configs.get("compose.toml", {})
    # The gateway's published port is the one it listens on.
    ports = services.get("gateway", {}).get("ports") or []
    gw = port_of(conf.get("gateway", {}).get("listen", ":0"))
    if not any(str(p).split(":")[-1] == str(gw) for p in ports):
        fail(f"gateway: published ports {ports} do not include its listen port {gw}")
    else:
        ok(f"gateway: publishes {ports} = gateway.listen")
    # The probers ask the simulator, at its fixed address.
    sim_ip = (services.get("simulator", {}).get("networks") or {}).get("regionguard", {}).get("ipv4_address")
    sim_port = port_of(conf.get("simulator", {}).get("listen", ":0"))
    resolvers = conf.get("prober", {}).get("resolvers", [])
    if f"{sim_ip}:{sim_port}" not in resolvers:
        fail(f"prober.resolvers {resolvers} do not name the simulator at {sim_ip}:{sim_port}")
    else:
        ok(f"probers ask the simulator at {sim_ip}:{sim_port}")
    subnet = compose["networks"]["regionguard"]["ipam"]["config"][0]["subnet"]
    if ipaddress.ip_address(sim_ip) not in ipaddress.ip_network(subnet):
        fail(f"the simulator's address {sim_ip} is outside the network {subnet}")
    # NATS: the configured URL names the nats service.
    for file, c in configs.items():
        for url in c.get("nats", {}).get("servers", []):
            host = re.sub(r"^nats://", "", url).split(":")[0]
            if host not in services:
                fail(f"{file}: nats.servers {url} names no compose service")
    prefixes = {c.get("nats", {}).get("prefix", "rg") for c in configs.values()}
    if len(prefixes) != 1:
        fail(f"the configs use different subject prefixes: {prefixes}")
    else:
        ok(f"one subject prefix for every service: {prefixes.pop()}")
    return services


def check_overrides(binary, services):
    for file in ["compose.aws.yaml", "compose.cluster.yaml"]:
        print(f"== deploy/{file}")
        over = yaml.safe_load((DEPLOY / file).read_text())
        extra = set(over.get("services", {})) - set(services)
        allowed = {"nats-2", "nats-3"} if file == "compose.cluster.yaml" else set()
        if extra - allowed:
            fail(f"{file}: overrides unknown services {sorted(extra - allowed)}")
        else:
            ok(f"{file}: overrides known services only")
        for name, svc in (over.get("services") or {}).items():
            env = dict((services.get(name, {}).get("environment") or {}))
            env.update(svc.get("environment") or {})
            if file == "compose.aws.yaml" and name in services and name != "simulator":
                config = local_config(env)
                if config is None or not config.is_file():
                    fail(f"{file}: {name}: RG_CONFIG {env.get('RG_CONFIG')} is not a file of deploy/config")
                    continue
                if name in ("prober-us-east-1", "failover"):
                    starts_and_stops(binary, f"{name} (aws)", services[name]["command"], env, config)
            if file == "compose.cluster.yaml" and name == "detector":
                # The cluster's settings parse: all three URLs, 3 replicas.
                run_env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
                run_env.update({k: interpolate(v) for k, v in env.items()})
                run_env["RG_CONFIG"] = str(local_config(env))
                r = subprocess.run([binary, "check-config"], env=run_env, capture_output=True, text=True)
                if r.returncode != 0 or "nats://nats-3:4222" not in r.stdout:
                    fail(f"{file}: the services' cluster settings do not load: {r.stdout}{r.stderr}")
                else:
                    ok(f"{file}: services load the cluster's three URLs and 3 replicas")
            if file == "compose.cluster.yaml" and name.startswith("nats"):
                conf = DEPLOY / "nats" / "cluster.conf"
                r = subprocess.run(["nats-server", "-t", "-c", str(conf)], capture_output=True, text=True,
                                   env={**os.environ, "NATS_SERVER_NAME": svc["environment"]["NATS_SERVER_NAME"]})
                if r.returncode != 0:
                    fail(f"{name}: nats-server rejects {conf.relative_to(ROOT)}: {r.stderr or r.stdout}")
                routes = re.findall(r"nats-route://([a-z0-9-]+):", conf.read_text())
                if set(routes) - set(services) - allowed:
                    fail(f"cluster.conf routes {routes} name hosts that are not services")
        if file == "compose.cluster.yaml":
            ok("nats-server accepts deploy/nats/cluster.conf for nats, nats-2 and nats-3; routes name the nodes")


def check_auth(binary, services):
    print("== deploy/compose.auth.yaml")
    over = yaml.safe_load((DEPLOY / "compose.auth.yaml").read_text())
    auth = (DEPLOY / "nats" / "auth.conf").read_text()
    users = set(re.findall(r"\{\s*user:\s*([a-z]+)", auth))
    variables = set(re.findall(r"\$(RG_[A-Z]+_PASSWORD)", auth))
    extra = set(over.get("services", {})) - set(services) - {"provision"}
    if extra:
        fail(f"compose.auth.yaml: overrides unknown services {sorted(extra)}")
    for name in sorted(set(services) - {"nats"}):
        env = (over.get("services", {}).get(name) or {}).get("environment") or {}
        user = env.get("RG_NATS__USER")
        role = name.split("-")[0]
        if user != role or user not in users:
            fail(f"compose.auth.yaml: {name} runs as {user!r}, not as its own user of auth.conf ({role})")
    ok(f"compose.auth.yaml: every service runs as its own user of auth.conf ({', '.join(sorted(users))})")
    nats_env = (over["services"].get("nats") or {}).get("environment") or {}
    if variables - set(nats_env):
        fail(f"compose.auth.yaml: nats is not given {sorted(variables - set(nats_env))}")
    conf = DEPLOY / "nats" / "server-auth.conf"
    r = subprocess.run(["nats-server", "-t", "-c", str(conf)], capture_output=True, text=True,
                       env={**os.environ, **{v: "x" for v in variables}})
    if r.returncode != 0:
        fail(f"nats-server rejects {conf.relative_to(ROOT)}: {r.stderr or r.stdout}")
    else:
        ok(f"nats-server accepts {conf.relative_to(ROOT)} with the {len(variables)} passwords")
    provision = over["services"].get("provision") or {}
    r = subprocess.run([binary, *provision.get("command", []), "--help"], capture_output=True, text=True)
    if provision.get("command") != ["provision"] or r.returncode != 0:
        fail(f"provision: `regionguard {provision.get('command')}` is not a command: {r.stderr}")
    else:
        ok("provision: `regionguard provision` exists and runs as admin")


def check_dockerfile():
    print("== deploy/Dockerfile")
    text = (DEPLOY / "Dockerfile").read_text()
    for line in text.splitlines():
        m = re.match(r"COPY\s+(?!--from)(.+)\s+(\S+)$", line.strip())
        if not m:
            continue
        for src in m.group(1).split():
            if not (ROOT / src).exists():
                fail(f"Dockerfile copies {src}, which does not exist")
    if 'ENTRYPOINT ["regionguard"]' not in text or "--bin regionguard" not in text:
        fail("Dockerfile does not build and run the regionguard binary")
    m = re.search(r"RG_CONFIG=(\S+)", text)
    if not m or local_config({"RG_CONFIG": m.group(1)}) is None or not local_config({"RG_CONFIG": m.group(1)}).is_file():
        fail("Dockerfile's RG_CONFIG is not a file of deploy/config")
    ok("every COPY source exists; the image runs regionguard with deploy/config")


def check_compose_v1():
    """Debian's docker-compose (v1.29) rejects keys that only Compose v2
    knows; tests/e2e/compose.rs runs the files with it."""
    print("== Compose v1 and v2")
    for path in sorted(DEPLOY.glob("compose*.yaml")):
        doc = yaml.safe_load(path.read_text())
        extra = sorted(k for k in doc if k not in ("services", "volumes", "networks", "secrets", "configs", "version") and not k.startswith("x-"))
        if extra:
            fail(f"{path.name}: top-level {extra}: docker-compose v1 rejects them (deploy/.env names the project)")
        else:
            ok(f"{path.name}: only keys both Compose v1 and v2 read")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target/debug/regionguard"))
    binary = os.path.abspath(ap.parse_args().bin)
    services = check_compose(binary)
    check_overrides(binary, services)
    check_auth(binary, services)
    check_dockerfile()
    check_compose_v1()
    if failures:
        print(f"check_compose: {len(failures)} problem(s)")
        sys.exit(1)
    print("check_compose: compose files, Dockerfile and NATS cluster config agree with the binary and the config")


if __name__ == "__main__":
    main()
