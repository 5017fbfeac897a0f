#!/bin/sh
# Make gVisor's runsc available to Docker as the runtime `runsc`: install Debian's runsc
# package when missing, register it in the daemon's daemon.json (ptrace platform, no
# network), and have dockerd reload its configuration (SIGHUP: running containers go on);
# raise kernel.pid_max where it is low.
# Idempotent: when runsc is installed and registered with these arguments, it changes nothing.
set -eu

DAEMON_JSON="${ELM_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
RUNSC_ARGS='["--platform=ptrace", "--network=none"]'
WAIT_SECONDS=30
PID_MAX=4194304
SYSCTL_FILE=/etc/sysctl.d/60-elm-gvisor.conf

say() { echo "install_gvisor: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v runsc >/dev/null 2>&1; then
    say "installing runsc from the Debian archive"
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ] || as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends runsc
fi
runsc_path="$(command -v runsc)"

# gVisor's ptrace platform holds many host threads per process inside a container (see
# host_pids_limit in elm/sandbox/docker.py); the kernel's classic pid_max of 32768 leaves
# room for few such containers. 4194304 is the kernel's 64-bit ceiling (systemd's default).
# Where /proc/sys is read-only (some containers) it stays as it is: elm then refuses a runsc
# pool that could claim over half of it, saying so.
if [ "$(cat /proc/sys/kernel/pid_max)" -lt "$PID_MAX" ]; then
    if as_root sysctl -q -w "kernel.pid_max=$PID_MAX" 2>/dev/null; then
        echo "kernel.pid_max = $PID_MAX" | as_root tee "$SYSCTL_FILE" >/dev/null
        say "raised kernel.pid_max to $PID_MAX (kept in $SYSCTL_FILE)"
    else
        say "warning: cannot raise kernel.pid_max ($(cat /proc/sys/kernel/pid_max)) here; runsc pools are sized to it"
    fi
fi

# Merge the runtime into daemon.json, keeping every other setting; report whether it changed.
changed="$(as_root python3 - "$DAEMON_JSON" "$runsc_path" "$RUNSC_ARGS" <<'PY'
import json, os, sys
path, runsc, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
settings = {}
if os.path.exists(path):
    with open(path) as file:
        text = file.read().strip()
    settings = json.loads(text) if text else {}
wanted = {"path": runsc, "runtimeArgs": args}
if settings.get("runtimes", {}).get("runsc") == wanted:
    print("no")
    sys.exit(0)
settings.setdefault("runtimes", {})["runsc"] = wanted
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path + ".tmp", "w") as file:
    json.dump(settings, file, indent=2)
    file.write("\n")
os.replace(path + ".tmp", path)
print("yes")
PY
)"

runtime_known() { docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }

if [ "$changed" = "no" ] && runtime_known; then
    say "runsc is installed and registered with Docker; nothing to do"
    exit 0
fi
say "registered runsc in $DAEMON_JSON; reloading dockerd"
# SIGHUP: dockerd rereads daemon.json; running containers go on (never a restart).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    as_root systemctl reload docker
elif [ -s /var/run/docker.pid ]; then
    as_root kill -HUP "$(cat /var/run/docker.pid)"
else
    say "dockerd is not running: start it (scripts/install_docker.sh) and run this again"
    exit 1
fi
waited=0
until runtime_known; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        say "dockerd did not take the runsc runtime within ${WAIT_SECONDS}s (check $DAEMON_JSON and the daemon's log)"
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
say "runsc is registered with Docker"
