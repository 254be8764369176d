#!/usr/bin/env bash
# Set up everything, then run the main job: cpn-controller programs the national backbone
# (topologies/national.yaml) in Mininet on Open vSwitch, and cpnctl shows the latency-bounded
# routes it installed. With a terminal the Mininet CLI opens at the end; exit it to tear down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cpn-demo "$@"
