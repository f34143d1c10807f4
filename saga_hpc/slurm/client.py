"""One small class for everything saga-hpc asks of Slurm.

The CLI backend (sacctmgr, sshare, squeue, sbatch, scancel) is the primary one
and always tested. pyslurm is used only when it is installed *and* built for
the cluster's Slurm major.minor (PyPI ships 25.11; Debian 12 runs 22.05), and
only for reads; `backend_reason` says which was chosen and why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from saga_hpc.slurm.parsers import (
    Assoc,
    Job,
    ShareRow,
    parse_assoc,
    parse_squeue_json,
    parse_sshare,
    parse_version,
)


class SlurmError(RuntimeError):
    """A Slurm command is missing or failed; the message carries its stderr."""


class SlurmClient:
    def __init__(self, cluster: str | None = None, timeout_s: float = 30.0) -> None:
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.backend, self.backend_reason = self._choose_backend()

    # --------------------------------------------------------------- probes

    @staticmethod
    def available() -> str | None:
        """None when a controller answers; else why not (for skips and errors)."""
        conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
        if shutil.which("sinfo") is None:
            return "Slurm client commands not installed (run scripts/slurm-up.sh)"
        if not Path(conf).exists():  # sinfo would retry for 60 s
            return f"no Slurm config at {conf} (run scripts/slurm-up.sh)"
        try:
            r = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"sinfo failed: {exc}"
        if r.returncode != 0:
            return f"slurmctld not reachable: {r.stderr.strip() or r.stdout.strip()}"
        # Node states (idle, mixed, completing...) do not matter here: accounts and
        # shares only need the controller and slurmdbd.
        return None

    def version(self) -> tuple[int, int]:
        return parse_version(self._run(["sinfo", "--version"]))

    def _choose_backend(self) -> tuple[str, str]:
        try:
            import pyslurm
        except ImportError:
            return "cli", "pyslurm not installed"
        try:
            cluster = self.version()
            built = parse_version(str(getattr(pyslurm, "__version__", "")))
        except (SlurmError, ValueError) as exc:
            return "cli", f"cannot compare pyslurm and Slurm versions: {exc}"
        if built != cluster:
            return (
                "cli",
                f"pyslurm {built[0]}.{built[1]} does not match Slurm {cluster[0]}.{cluster[1]}",
            )
        return "pyslurm", f"pyslurm {built[0]}.{built[1]} matches the cluster"

    # ---------------------------------------------------------------- reads

    def associations(self) -> list[Assoc]:
        where = ["where", f"cluster={self.cluster}"] if self.cluster else []
        out = self._run(
            [
                "sacctmgr",
                "-nP",
                "show",
                "assoc",
                *where,
                "format=cluster,account,user,parentname,fairshare",
            ]
        )
        return parse_assoc(out)

    def shares(self) -> list[ShareRow]:
        return parse_sshare(self._run(["sshare", "-a", "-P", "-l"]))

    def jobs(self, user: str | None = None) -> list[Job]:
        # Slurm 22.05's `squeue --json` ignores -u (and -j): it lists every job,
        # so the filter is applied here too.
        jobs = parse_squeue_json(self._run(["squeue", "--json", *(["-u", user] if user else [])]))
        return [j for j in jobs if user is None or j.user == user]

    def job(self, job_id: int) -> Job | None:
        jobs = parse_squeue_json(
            self._run(["squeue", "--json", "-j", str(job_id)], ok_codes=(0, 1))
        )
        return next((j for j in jobs if j.job_id == job_id), None)

    # --------------------------------------------------------------- writes

    def submit(
        self,
        script: str | Path,
        *,
        account: str,
        user: str | None = None,
        extra: Sequence[str] = (),
    ) -> int:
        """sbatch a script (as `user` via runuser when given); returns the job id."""
        cmd = ["sbatch", "--parsable", f"--account={account}", *extra, str(script)]
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        out = self._run(cmd).strip()
        try:
            return int(out.split(";")[0])
        except ValueError as exc:
            raise SlurmError(f"sbatch printed {out!r}, not a job id") from exc

    def cancel(self, job_id: int, signal: str | None = None) -> None:
        self._run(["scancel", *([f"--signal={signal}"] if signal else []), str(job_id)])

    def _run(self, cmd: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
        if shutil.which(cmd[0]) is None:
            raise SlurmError(f"{cmd[0]} not found: is Slurm installed here?")
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{' '.join(cmd[:3])} timed out after {self.timeout_s:.0f} s") from exc
        if r.returncode not in ok_codes:
            line = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise SlurmError(f"{cmd[0]} failed: {line[-1] if line else f'exit {r.returncode}'}")
        return r.stdout
