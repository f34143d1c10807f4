"""SIGKILL the head (and its workers) under load, restart it on the same store:
every call a client saw complete is billed exactly once, every workflow's AEG is
whole, and the ledger's totals are what the clients received."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from saga_hpc.bench.head_bench import EchoHead, EchoHeadOptions, tenants
from saga_hpc.bench.rawload import RawLoadResult, RawLoadSpec, run_raw_load
from saga_hpc.cli.main import main as cli
from saga_hpc.store.store import Store
from saga_hpc.store.tables import LedgerEntry
from tests.api.conftest import Service
from tests.support.postgres import db_url, pg_database

__all__ = ["db_url", "pg_database"]

CALLS, TURNS, AGENTS = 600, 5, 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_head_killed_under_load_loses_and_duplicates_nothing(
    tiny_model: Path, tmp_path: Path, db_url: str
) -> None:
    store = Store.open(db_url)
    store.upgrade()
    keys = tenants(store)
    opts = EchoHeadOptions(
        model_dir=str(tiny_model), db_url=db_url, slots=64, delay_s=0.002, port=_free_port()
    )
    head = EchoHead(opts, tmp_path / "endpoint.json", tmp_path / "head.log")
    base = head.start()
    spec = RawLoadSpec(
        base_url=base,
        keys=keys,
        workflows=AGENTS,
        calls=CALLS,
        turns=TURNS,
        max_tokens=8,
        deadline_s=240,
        retry_s=120,
        tag="crash",
    )
    result = RawLoadResult()

    def drive() -> None:
        result.__dict__.update(asyncio.run(run_raw_load(spec)).__dict__)

    load = threading.Thread(target=drive)
    load.start()
    try:
        deadline = time.monotonic() + 60
        while store.count_calls() < CALLS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        head.kill()  # mid-load: calls in flight, batches half gathered
        killed_at = store.count_calls()
        assert 0 < killed_at < CALLS, "the kill must land mid-load"
        head.start()
        load.join(300)
        assert not load.is_alive()
    finally:
        head.stop()

    assert result.errors == {}
    assert result.retries > 0  # clients saw the crash and sent their calls again
    got = {c.call_id: c for c in result.completed}
    assert len(result.completed) == CALLS and len(got) == CALLS
    with store.session() as s:
        ledger = s.execute(
            select(
                LedgerEntry.call_id,
                LedgerEntry.prompt_tokens,
                LedgerEntry.cached_tokens,
                LedgerEntry.output_tokens,
            )
        ).all()
        n_rows = s.scalar(select(func.count()).select_from(LedgerEntry))
    assert n_rows == len({r[0] for r in ledger})  # no call billed twice
    assert {r[0] for r in ledger} == set(got)  # none lost, none billed unseen
    for call_id, prompt, cached, output in ledger:  # billed = what the client was told
        c = got[call_id]
        assert (prompt, cached, output) == (c.prompt_tokens, c.cached_tokens, c.output_tokens)

    # Every workflow is whole: its calls in the order the agent made them, a
    # tool edge between each two, finished when its last call was answered.
    turns: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for c in result.completed:
        turns[c.workflow_id].append((c.turn, c.call_id))
    for wf, seen in turns.items():
        story = store.workflow_story(wf)
        assert [c.call_id for c in story.calls] == [cid for _, cid in sorted(seen)]
        assert [(e.from_call, e.to_call) for e in story.edges] == [
            (a.call_id, b.call_id) for a, b in zip(story.calls, story.calls[1:], strict=False)
        ]
        assert all(e.tool == "bash" for e in story.edges)
        assert (story.workflow.finished_at is not None) == (len(seen) == TURNS)
    # Per account, as `saga-hpc report` shows it: agent i bills account bench{i % 2}.
    client_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in result.completed:
        t = client_totals[f"bench{int(c.workflow_id.split('-')[1]) % 2}"]
        t[0] += 1
        t[1] += c.prompt_tokens
        t[2] += c.cached_tokens
        t[3] += c.output_tokens
    billed = {
        u.account: [u.calls, u.prompt_tokens, u.cached_tokens, u.output_tokens]
        for u in store.account_usage()
    }
    assert billed == dict(client_totals)
    store.close()
    assert cli(["workflow", "show", next(iter(turns)), "--db", db_url]) == 0


def test_a_call_retried_with_its_idempotency_key_is_billed_once(service: Service) -> None:
    """The answer to a billed call was lost (the head died after the commit): the
    retry runs again, is not billed again, and answers with what was billed."""
    body = {"model": "tiny", "max_tokens": 3, "messages": [{"role": "user", "content": "hi " * 80}]}
    headers = {"X-Saga-Workflow": "wf-idem", "Idempotency-Key": "wf-idem-0"}
    with service.client() as c:
        first = c.post("/v1/chat/completions", json=body, headers=headers).json()
        again = c.post("/v1/chat/completions", json=body, headers=headers).json()
        with service.client("bob@biology") as other:  # the same key in another account
            theirs = other.post(
                "/v1/chat/completions", json=body, headers=headers | {"X-Saga-Workflow": "wf-b"}
            ).json()
        bad = c.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": "a b"})
    assert again["id"] == first["id"] and again["usage"] == first["usage"]
    assert theirs["id"] != first["id"]
    assert [c.call_id for c in service.store.workflow_story("wf-idem").calls] == [first["id"]]
    assert service.store.billed_tokens(first["id"]) == (
        first["usage"]["prompt_tokens"],
        first["usage"]["prompt_tokens_details"]["cached_tokens"],
        first["usage"]["completion_tokens"],
    )
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]["message"]
