"""What a simulation run produced (`SimResult`): its call records, kept by column.

An hour on 64 GPUs ends millions of calls. The simulator appends each call's
figures to one column per field (cheaper than an object per call; numbers in
`array`s, stored inline as they come, so the metrics read them as numpy
arrays without a copy), and `CallRecord` objects are built only when someone
asks for records (tests, the bench's per-task figures), once, all at a time.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, MutableSequence, Sequence
from dataclasses import dataclass, fields
from typing import Any, overload

from saga_hpc.nogc import collector_paused


@dataclass(slots=True)
class CallRecord:
    task_id: str
    tenant: str
    arrived: float
    ttft_s: float
    tpot_s: float
    finished: float
    prompt: int
    hit: int
    out: int
    service_s: float


FIELDS = tuple(f.name for f in fields(CallRecord))
# array typecode of each numeric field: doubles and 64-bit ints, exact both ways
TYPECODES = {"arrived": "d", "ttft_s": "d", "tpot_s": "d", "finished": "d", "service_s": "d"}
TYPECODES |= {"prompt": "q", "hit": "q", "out": "q"}


def new_column(name: str) -> MutableSequence[Any]:
    code = TYPECODES.get(name)
    return [] if code is None else array(code)


class CallRecords(Sequence[CallRecord]):
    """Records in completion order; `columns[name]` is one field of every record."""

    def __init__(self) -> None:
        self.columns: dict[str, MutableSequence[Any]] = {name: new_column(name) for name in FIELDS}
        self._rows: list[CallRecord] | None = None

    def rows(self) -> list[CallRecord]:
        """The records as objects, built on first use (millions, no cycles)."""
        if self._rows is None or len(self._rows) != len(self):
            with collector_paused():
                self._rows = list(map(CallRecord, *(self.columns[n] for n in FIELDS)))
        return self._rows

    def __len__(self) -> int:
        return len(self.columns["task_id"])

    @overload
    def __getitem__(self, i: int) -> CallRecord: ...

    @overload
    def __getitem__(self, i: slice) -> list[CallRecord]: ...

    def __getitem__(self, i: int | slice) -> CallRecord | list[CallRecord]:
        return self.rows()[i]

    def __iter__(self) -> Iterator[CallRecord]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallRecords):
            return self.columns == other.columns
        if isinstance(other, Sequence):
            return self.rows() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list


@dataclass
class SimResult:
    """What a run produced: its calls and tasks, KV samples and counters."""

    system: str
    gpus: int
    calls: Sequence[CallRecord]  # a CallRecords from a run: by column, records on demand
    tct_s: dict[str, float]  # task id -> completion time
    tenants: dict[str, str]  # task id -> tenant
    kv_samples: list[tuple[float, float, float]]  # (time, used fraction, useful fraction)
    retention_misses: int
    recomputed_tokens: int
    events: int
    wall_s: float = 0.0
    makespan_s: float = 0.0
