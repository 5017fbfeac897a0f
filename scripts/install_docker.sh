#!/bin/sh
# Make a Docker engine available: install Debian's docker.io when dockerd is missing,
# start dockerd in the background when it is not answering, and wait until it does.
# Idempotent: on a machine whose Docker already answers, it changes nothing.
set -eu

WAIT_SECONDS="${ELM_DOCKER_WAIT_SECONDS:-60}"
LOG_FILE="${ELM_DOCKERD_LOG:-/var/log/elm-dockerd.log}"

say() { echo "install_docker: $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if docker info >/dev/null 2>&1; then
    say "Docker is already running; nothing to do"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io from the Debian archive"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $LOG_FILE)"
    # A session of its own, so the daemon outlives the shell (and job) that started it.
    as_root sh -c "setsid nohup dockerd >>'$LOG_FILE' 2>&1 < /dev/null &"
fi

waited=0
until docker info >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
        say "dockerd did not answer within ${WAIT_SECONDS}s; see $LOG_FILE"
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
say "Docker is running"
