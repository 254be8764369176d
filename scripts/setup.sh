#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian 12 machine (run as root):
# Debian packages, a venv in .venv with the project installed (editable, Rust extension built),
# and Open vSwitch running. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DEB_PACKAGES=(mininet openvswitch-switch iperf3 iputils-ping iproute2 ethtool chromium chromium-driver etcd-server frr tshark)

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (Mininet and Open vSwitch need it)" >&2
    exit 1
fi

missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo python3; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is missing (this machine kind ships it)" >&2; exit 1; }
done

if [ ! -x .venv/bin/python ]; then
    log "creating venv in $ROOT/.venv"
    python3 -m venv .venv
    .venv/bin/pip install -q -U pip
fi
log "installing the project (builds the Rust extension with maturin)"
.venv/bin/pip install -q -e ".[test]"

# Open vSwitch: both daemons, started by its own scripts (no systemd in these machines).
if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
    log "starting Open vSwitch"
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
    ovs-vsctl --timeout=10 show >/dev/null || { echo "setup: Open vSwitch did not start" >&2; exit 1; }
fi
log "ready: $(.venv/bin/python -c 'import pathcore, controller; print("pathcore and controller import")')"
