"""PNG figures of a benchmark: TCT CDFs, KV memory over time, tenant shares over time."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from saga_hpc.sim.engine import SimResult


def write_plots(
    results: dict[str, dict[str, SimResult]], shares: dict[str, float], out: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for workload, by_system in results.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for system, r in sorted(by_system.items()):
            xs = sorted(r.tct_s.values())
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=system)
        ax.set_xscale("log")
        ax.set_xlabel("task completion time (s)")
        ax.set_ylabel("fraction of tasks")
        ax.set_title(f"TCT CDF, {workload}")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / f"tct_cdf_{workload}.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for system, r in sorted(by_system.items()):
            ax.plot([t for t, _, _ in r.kv_samples], [u for _, _, u in r.kv_samples], label=system)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("useful KV blocks / pool")
        ax.set_title(f"KV memory holding reusable context, {workload}")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / f"kv_memory_{workload}.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        total = sum(shares.values())
        for system in ("saga", "vllm"):
            if system not in by_system:
                continue
            for tenant, (ts, share) in _shares_over_time(by_system[system]).items():
                ax.plot(
                    ts,
                    share,
                    label=f"{system} {tenant}",
                    linestyle="-" if system == "saga" else ":",
                )
        for w in shares.values():
            ax.axhline(w / total, color="grey", linewidth=0.8)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("share of GPU service (60 s windows)")
        ax.set_title(f"Tenant share vs entitlement (grey), {workload}")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"tenant_share_{workload}.png"))
    return written


def _shares_over_time(
    r: SimResult, window: float = 60.0
) -> dict[str, tuple[list[float], list[float]]]:
    service: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for c in r.calls:
        service[int(c.finished // window)][c.tenant] += c.service_s
    tenants = sorted({c.tenant for c in r.calls})
    out: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in tenants}
    for w in sorted(service):
        total = sum(service[w].values())
        for t in tenants:
            out[t][0].append(w * window)
            out[t][1].append(service[w][t] / total if total else 0.0)
    return out


def _save(fig: object, path: Path) -> Path:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(fig)  # type: ignore[arg-type]
    return path
