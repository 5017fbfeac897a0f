#!/usr/bin/env bash
# Set up elm on a Debian machine (as root): Python venv with the package, Docker engine
# running, sandbox image built. Idempotent: what is already there is left alone.
#   bash scripts/setup.sh          # for running experiments
#   bash scripts/setup.sh --test   # also what the tests and checks need (pytest, ruff, mypy, headless Chromium, gVisor)
#   bash scripts/setup.sh --gvisor # also gVisor's runsc as a Docker runtime (sandbox.runtime: runsc)
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
with_gvisor=0
for option in "$@"; do
    case "$option" in
        --test) with_tests=1 ;;
        --gvisor) with_gvisor=1 ;;
        *) echo "setup: unknown option $option (use --test, --gvisor)" >&2; exit 2 ;;
    esac
done

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing ${missing[*]}" >&2
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv python3-dev
fi
apt_install debootstrap  # builds the sandbox base image offline
[ "$with_tests" = 1 ] && apt_install chromium chromium-driver

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -c 'import torch' 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
extras=""
[ "$with_tests" = 1 ] && extras="[test]"
.venv/bin/pip install -q -e ".${extras}"

bash scripts/install_docker.sh
# The tests run the hostile candidates under both container runtimes: --test brings gVisor
# too, and where it cannot be had the runsc tests skip, naming the reason.
if [ "$with_gvisor" = 1 ]; then
    bash scripts/install_gvisor.sh
elif [ "$with_tests" = 1 ] && ! bash scripts/install_gvisor.sh; then
    echo "setup: warning: gVisor could not be installed; the tests under runsc will skip" >&2
fi
.venv/bin/elm sandbox build
