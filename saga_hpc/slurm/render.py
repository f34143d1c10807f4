"""Fill the job scripts in `slurm/` from site settings: #SBATCH lines and defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEMPLATES = {
    "service": Path(__file__).resolve().parents[2] / "slurm" / "saga-service.sbatch",
    "agent": Path(__file__).resolve().parents[2] / "slurm" / "agent-job.sbatch",
}


@dataclass(frozen=True)
class SiteSettings:
    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0  # 0: CPU nodes (the embedded default)
    model: str | None = None
    time: str | None = None
    account: str | None = None
    shared: str | None = None
    db: str | None = None


def render(template: str, s: SiteSettings) -> str:
    lines = TEMPLATES[template].read_text().splitlines()
    options: dict[str, str] = {}
    if s.partition:
        options["partition"] = s.partition
    if s.time:
        options["time"] = s.time
    if s.account:
        options["account"] = s.account
    if template == "service":
        options["nodes"] = str(s.nodes)
        # One head rank plus one engine per GPU (one per node on CPU nodes).
        engines = s.nodes * s.gpus_per_node if s.gpus_per_node else s.nodes
        options["ntasks"] = str(engines + 1)
        if s.gpus_per_node:
            options["gpus-per-node"] = str(s.gpus_per_node)
    kept = [ln for ln in lines if not any(ln.startswith(f"#SBATCH --{k}=") for k in options)]
    last_sbatch = max(i for i, ln in enumerate(kept) if ln.startswith("#SBATCH"))
    added = [f"#SBATCH --{k}={v}" for k, v in options.items()]
    env = {"SAGA_MODEL": s.model, "SAGA_SHARED": s.shared, "SAGA_DB": s.db}
    exports = [f'export {k}="${{{k}:-{v}}}"' for k, v in env.items() if v]
    body = kept[: last_sbatch + 1] + added + kept[last_sbatch + 1 :]
    # Defaults go after `set -euo pipefail` so the script reads them as if set by the caller.
    at = next((i for i, ln in enumerate(body) if ln.startswith("set -euo")), len(body) - 1) + 1
    return "\n".join(body[:at] + exports + body[at:]) + "\n"
