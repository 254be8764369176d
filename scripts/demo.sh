#!/usr/bin/env bash
# Set up everything, then run the main job on the national backbone.
# Today: the path engine on topologies/national.yaml (latency-bounded routes and latency
# circles). The controller + Mininet lab demo replaces this once the controller lands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cpn-demo "${1:-topologies/national.yaml}"
