"""Which workflow a call belongs to, and whether the caller may add to it.

A call names its workflow by header (`X-Saga-Workflow`) or body metadata
(`metadata.workflow_id`); the header wins. It may also declare the tool the
agent runs next (`X-Saga-Next-Tool` / `metadata.next_tool`) and that this is
the last call (`X-Saga-Workflow-End: true` / `metadata.workflow_done`). A call
without a workflow is a workflow of one call.

`Idempotency-Key` names the call itself: a call retried with the same key (its
answer was lost when the head died) gets the same call id, so the ledger bills
it once however often it is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from saga_hpc.api.errors import ApiError
from saga_hpc.head.ledger import LedgerWriter
from saga_hpc.store.store import Principal, WorkflowOpen

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
_TOOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


@dataclass(frozen=True)
class WorkflowFields:
    workflow_id: str | None
    next_tool: str | None
    done: bool
    task_class: str
    idempotency_key: str | None = None


def read_fields(headers: dict[str, str], metadata: dict[str, str] | None) -> WorkflowFields:
    meta = metadata or {}
    wf = headers.get("x-saga-workflow") or meta.get("workflow_id")
    tool = headers.get("x-saga-next-tool") or meta.get("next_tool")
    end = (headers.get("x-saga-workflow-end") or meta.get("workflow_done") or "").strip().lower()
    task_class = meta.get("task_class") or headers.get("x-saga-task-class") or "default"
    if wf is not None and not _ID.match(wf):
        raise ApiError(
            400,
            "workflow id must be 1-128 characters of letters, digits and ._:@/-",
            param="metadata.workflow_id",
        )
    if tool is not None and not _TOOL.match(tool):
        raise ApiError(
            400,
            "next tool must be 1-64 characters of letters, digits and ._:/-",
            param="metadata.next_tool",
        )
    if end not in _TRUE | _FALSE:
        raise ApiError(
            400, "workflow end flag must be true or false", param="metadata.workflow_done"
        )
    if not _TOOL.match(task_class):
        raise ApiError(
            400,
            "task class must be 1-64 characters of letters, digits and ._:/-",
            param="metadata.task_class",
        )
    key = headers.get("idempotency-key")
    if key is not None and not _ID.match(key):
        raise ApiError(
            400,
            "Idempotency-Key must be 1-128 characters of letters, digits and ._:@/-",
            param="Idempotency-Key",
        )
    return WorkflowFields(wf, tool, end in _TRUE, task_class, key)


class WorkflowGate:
    """Opens workflows in the store once, and keeps tenants out of each other's workflows."""

    def __init__(self, ledger: LedgerWriter, max_entries: int = 200_000) -> None:
        self.ledger = ledger
        self.max_entries = max_entries
        self._owner: dict[str, str] = {}  # workflow id -> account

    def known(self, workflow_id: str) -> bool:
        """This head has served the workflow already."""
        return workflow_id in self._owner

    async def admit(self, workflow_id: str, principal: Principal, now: float) -> None:
        owner = self._owner.get(workflow_id)
        if owner is None:
            op = WorkflowOpen(workflow_id, principal.account, principal.user, now)
            owner = await self.ledger.open_workflow(op)
            if len(self._owner) >= self.max_entries:
                self._owner.clear()
            self._owner[workflow_id] = owner
        if owner != principal.account:
            # Same answer whether the id exists or not would leak less, but the
            # client must learn to pick another id; say only that it is taken.
            raise ApiError(
                403, f"workflow '{workflow_id}' belongs to another account", param="workflow_id"
            )
