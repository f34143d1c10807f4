#!/usr/bin/env bash
# Set up everything the test suite needs and run it: the venv (scripts/setup.sh),
# PostgreSQL, and a single-node Slurm with accounting when running as root.
# Tests whose environment could not be brought up skip with the reason.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not vllm"`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SAGA_VENV:-/opt/saga-hpc/venv}"
cd "$here"
bash scripts/setup.sh
bash scripts/services-up.sh
if [[ $(id -u) -eq 0 && -x scripts/slurm-up.sh && -z "${SAGA_NO_SLURM:-}" ]]; then
  bash scripts/slurm-up.sh || echo "[test] Slurm did not come up: the slurm-marked tests will skip"
fi
export SAGA_VENV="$venv"
exec "$venv/bin/python" -m pytest -ra "$@"
