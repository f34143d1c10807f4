"""Find the processes of an MPI job from the process table, as an admin would:
a rank is the topmost process of the session whose environment names it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_RANK_VARS = (b"OMPI_COMM_WORLD_RANK=", b"PMIX_RANK=")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int
    state: str


def processes() -> dict[int, Proc]:
    """Every process of the machine, zombies included (state "Z")."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        table[pid] = Proc(pid, int(fields[1]), int(fields[3]), fields[0])
    return table


def _rank(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        for var in _RANK_VARS:
            if item.startswith(var):
                return int(item[len(var) :])
    return None


def rank_pids(session: int) -> dict[int, int]:
    """rank -> pid of that rank's process, for the live ranks of a session's job.
    Its engine processes inherit the rank's environment; they are not counted,
    since their parent carries the same rank."""
    table = processes()
    found = {}
    for proc in table.values():
        if proc.session != session or proc.state == "Z":
            continue
        rank = _rank(proc.pid)
        if rank is not None and _rank(proc.ppid) != rank:
            found[rank] = proc.pid
    return found


def descendants(pid: int) -> list[int]:
    """Live processes started by `pid`, directly or not (while it lives)."""
    children: dict[int, list[int]] = {}
    for proc in processes().values():
        if proc.state != "Z":
            children.setdefault(proc.ppid, []).append(proc.pid)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
