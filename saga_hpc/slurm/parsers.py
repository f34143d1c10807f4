"""Pure parsers of Slurm command output (tested on output captured from a real cluster).

Formats are those of Slurm 22.05 (Debian 12) and later:
- `sacctmgr -nP show assoc format=cluster,account,user,parentname,fairshare`
- `sshare -a -P -l` (header line; names indented one space per tree level)
- `squeue --json` (openapi v0.0.38+: `jobs[]` with `job_id`, `job_state`, `time_limit`
  in minutes, epoch `start_time`/`end_time`)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


class SlurmParseError(ValueError):
    """Output that does not look like what the command prints."""


@dataclass(frozen=True)
class Assoc:
    cluster: str
    account: str
    user: str | None  # None: the account's own row
    parent: str | None
    fairshare: int  # RawShares; "parent" counts as 1


@dataclass(frozen=True)
class ShareRow:
    account: str
    user: str | None
    depth: int
    raw_shares: int | None
    norm_shares: float
    raw_usage: float
    effective_usage: float
    fairshare: float | None  # the fair-share factor (users only)


@dataclass(frozen=True)
class Job:
    job_id: int
    name: str
    user: str
    account: str
    state: str
    partition: str
    nodes: str
    time_limit_s: float | None
    start_time: float | None
    end_time: float | None

    def remaining_s(self, now: float) -> float | None:
        if self.state != "RUNNING" or self.end_time is None or self.time_limit_s is None:
            return None
        return max(0.0, self.end_time - now)


def parse_assoc(text: str) -> list[Assoc]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise SlurmParseError(
                f"sacctmgr line {n}: expected 5 fields, got {len(parts)}: {line!r}"
            )
        cluster, account, user, parent, fairshare = parts
        out.append(Assoc(cluster, account, user or None, parent or None, _shares(fairshare)))
    return out


def _shares(text: str) -> int:
    if text in ("", "parent"):
        return 1
    try:
        return int(text)
    except ValueError as exc:
        raise SlurmParseError(f"fairshare {text!r} is not a number") from exc


SSHARE_HEADER = "Account|User|RawShares|NormShares|RawUsage"


def parse_sshare(text: str) -> list[ShareRow]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith(SSHARE_HEADER):
        raise SlurmParseError("sshare output does not start with its -P -l header")
    cols = lines[0].split("|")
    out = []
    for n, line in enumerate(lines[1:], 2):
        fields = dict(zip(cols, line.split("|"), strict=False))
        name = fields.get("Account", "")
        depth = len(name) - len(name.lstrip(" "))
        out.append(
            ShareRow(
                account=name.strip(),
                user=fields.get("User") or None,
                depth=depth,
                raw_shares=int(fields["RawShares"]) if fields.get("RawShares") else None,
                norm_shares=_float(fields.get("NormShares"), n),
                raw_usage=_float(fields.get("RawUsage"), n),
                effective_usage=_float(fields.get("EffectvUsage"), n),
                fairshare=_float(fields["FairShare"], n) if fields.get("FairShare") else None,
            )
        )
    return out


def _float(text: str | None, line: int) -> float:
    if not text:
        return 0.0
    if text == "inf":
        return float("inf")
    try:
        return float(text)
    except ValueError as exc:
        raise SlurmParseError(f"sshare line {line}: {text!r} is not a number") from exc


def parse_squeue_json(text: str) -> list[Job]:
    try:
        doc = json.loads(text)
        jobs = doc["jobs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SlurmParseError(f"squeue --json output is not a jobs document: {exc}") from exc
    out = []
    for j in jobs:
        state = j.get("job_state")
        if isinstance(state, list):  # newer Slurm: a list of flags
            state = state[0] if state else "UNKNOWN"
        limit = _number(j.get("time_limit"))
        out.append(
            Job(
                job_id=int(_number(j.get("job_id")) or 0),
                name=str(j.get("name", "")),
                user=str(j.get("user_name", "")),
                account=str(j.get("account", "")),
                state=str(state),
                partition=str(j.get("partition", "")),
                nodes=str(j.get("nodes", "")),
                time_limit_s=None if limit is None or limit >= 525600 else limit * 60,
                start_time=_number(j.get("start_time")) or None,
                end_time=_number(j.get("end_time")) or None,
            )
        )
    return out


def _number(value: object) -> float | None:
    """Slurm >= 23 wraps numbers as {"set": bool, "infinite": bool, "number": n}."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def parse_version(text: str) -> tuple[int, int]:
    m = re.search(r"(\d+)\.(\d+)", text)
    if m is None:
        raise SlurmParseError(f"no version in {text!r}")
    return int(m.group(1)), int(m.group(2))
