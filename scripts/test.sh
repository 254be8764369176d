#!/usr/bin/env bash
# Set up and run every test: Rust checks (fmt, clippy, cargo test), ruff, mypy, then pytest
# (unit tests, API tests against the real HTTP server, web map tests in headless Chromium,
# then integration tests on real Open vSwitch + Mininet).
# Exits non-zero when any stage fails; a stage that collects no tests is not a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
failed=()
stage() {
    local name=$1; shift
    printf '\n===== %s =====\n' "$name"
    "$@"
    local rc=$?
    if [ "$name" != "${name#pytest}" ] && [ $rc -eq 5 ]; then
        echo "($name collected no tests)"; rc=0
    fi
    [ $rc -eq 0 ] || failed+=("$name (exit $rc)")
}

stage "cargo fmt" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --all-targets -q -- -D warnings
stage "cargo clippy (python)" cargo clippy -p pathcore --features python -q -- -D warnings
stage "cargo test" cargo test -q
stage "ruff" .venv/bin/ruff check controller pathcore tests benchmarks topologies
stage "mypy" .venv/bin/mypy
# the unit tests are independent (free ports, temporary directories): one worker per core
stage "pytest unit" .venv/bin/python -m pytest -q -n 2 tests/unit
stage "pytest api" .venv/bin/python -m pytest -q tests/api
stage "pytest browser" .venv/bin/python -m pytest -q tests/browser
stage "pytest integration" .venv/bin/python -m pytest -q --durations=15 tests/integration

printf '\n===== summary =====\n'
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all stages passed"
