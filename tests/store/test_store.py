"""The store on SQLite and PostgreSQL: keys, AEG recording, the ledger, usage."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sqlalchemy import text

from saga_hpc.errors import Forbidden, NotFound
from saga_hpc.store.store import CallRecord, LedgerBatch, Store, WorkflowOpen


def rec(
    call_id: str,
    wf: str = "wf1",
    account: str = "physics",
    user: str = "alice",
    *,
    at: float = 100.0,
    dur: float = 1.0,
    next_tool: str | None = "bash",
    prompt: int = 100,
    cached: int = 0,
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        workflow_id=wf,
        account=account,
        user=user,
        model="tiny",
        worker="w1",
        prompt_tokens=prompt,
        cached_tokens=cached,
        output_tokens=8,
        arrived_at=at,
        dispatched_at=at + 0.01,
        first_token_at=at + 0.1,
        finished_at=at + dur,
        worker_time_s=dur - 0.02,
        next_tool=next_tool,
    )


def test_upgrade_is_idempotent(db_url: str) -> None:
    s = Store.open(db_url)
    s.upgrade()
    s.upgrade()
    with s.engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0002"
    s.close()


def test_keys_are_stored_hashed(store: Store) -> None:
    key_id, secret = store.create_api_key("alice", "physics")
    with store.engine.connect() as conn:
        rows = conn.execute(text("select * from api_keys")).all()
    assert secret not in repr(rows)
    assert secret.startswith(f"saga-{key_id}-")
    assert store.authenticate(secret).principal is not None


def test_key_needs_an_association(store: Store) -> None:
    with pytest.raises(Forbidden):
        store.create_api_key("alice", "biology")


def test_authenticate_tells_401_from_403(store: Store) -> None:
    key_id, secret = store.create_api_key("alice", "physics")
    ok = store.authenticate(secret)
    assert ok.principal is not None and (ok.principal.user, ok.principal.account) == (
        "alice",
        "physics",
    )
    for bad in (
        "",
        "saga-",
        "nonsense",
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "saga-zzzzzzzzzzzz-x",
    ):
        result = store.authenticate(bad)
        assert result.principal is None and not result.forbidden
    assert store.remove_association("alice", "physics")
    removed = store.authenticate(secret)
    assert removed.principal is None and removed.forbidden
    store.ensure_association("alice", "physics")
    store.revoke_api_key(key_id)
    revoked = store.authenticate(secret)
    assert revoked.principal is None and not revoked.forbidden and "revoked" in revoked.reason


def test_expired_key_is_refused(store: Store) -> None:
    _, secret = store.create_api_key("alice", "physics", ttl_days=1e-9)
    assert "expired" in store.authenticate(secret).reason


def test_revoking_unknown_key(store: Store) -> None:
    with pytest.raises(NotFound):
        store.revoke_api_key("nope")


def test_record_call_builds_the_aeg(store: Store) -> None:
    store.open_workflow("wf1", "physics", "alice", 99.0)
    assert store.record_call(rec("c1", at=100.0, dur=1.0, next_tool="pytest"))
    assert store.record_call(rec("c2", at=104.5, dur=2.0, next_tool=None, cached=96))
    story = store.workflow_story("wf1")
    assert [c.call_id for c in story.calls] == ["c1", "c2"]
    assert [c.seq for c in story.calls] == [0, 1]
    assert story.calls[1].cached_tokens == 96
    assert len(story.edges) == 1
    edge = story.edges[0]
    assert (edge.from_call, edge.to_call, edge.tool) == ("c1", "c2", "pytest")
    assert edge.duration_s == pytest.approx(3.5)


def test_engine_timings_are_kept_per_call_and_listed_by_finish_time(store: Store) -> None:
    timed = dataclasses.replace(
        rec("late", at=200.0), engine_queue_s=0.1, prefill_s=0.2, decode_s=0.5, preemptions=1
    )
    store.record_call(timed)
    store.record_call(rec("early", wf="wf2", at=100.0))  # an engine without stats
    calls = store.list_calls()
    assert [c.call_id for c in calls] == ["early", "late"]
    assert (calls[0].prefill_s, calls[0].preemptions) == (None, None)
    late = calls[1]
    assert (late.engine_queue_s, late.prefill_s, late.decode_s, late.preemptions) == (
        0.1,
        0.2,
        0.5,
        1,
    )
    assert [c.call_id for c in store.list_calls(start=150.0)] == ["late"]
    assert [c.call_id for c in store.list_calls(end=150.0)] == ["early"]


def test_record_call_is_idempotent(store: Store) -> None:
    assert store.record_call(rec("c1"))
    assert not store.record_call(rec("c1"))
    usage = store.account_usage()
    assert [(u.account, u.calls, u.prompt_tokens) for u in usage] == [("physics", 1, 100)]


def test_workflow_belongs_to_its_account(store: Store) -> None:
    store.open_workflow("shared-id", "physics", "alice", 1.0)
    store.open_workflow("shared-id", "physics", "alice", 2.0)  # idempotent
    with pytest.raises(Forbidden):
        store.open_workflow("shared-id", "biology", "bob", 3.0)


def test_unknown_workflow(store: Store) -> None:
    with pytest.raises(NotFound):
        store.workflow_story("nope")
    assert store.get_workflow("nope") is None


def test_account_usage_and_tct(store: Store) -> None:
    for i, (account, user) in enumerate(
        [("physics", "alice"), ("physics", "alice"), ("biology", "bob")]
    ):
        wf = f"wf{i}"
        store.record_call(rec(f"{wf}-a", wf, account, user, at=100.0, dur=1.0))
        store.record_call(rec(f"{wf}-b", wf, account, user, at=103.0 + i, dur=1.0, next_tool=None))
        store.finish_workflow(wf, 104.0 + i)
    rows = {u.account: u for u in store.account_usage()}
    assert rows["physics"].tasks == 2 and rows["physics"].calls == 4
    assert rows["physics"].output_tokens == 32
    assert rows["physics"].tct_median_s == pytest.approx(4.5)  # TCTs 4 and 5
    assert rows["biology"].tct_p99_s == pytest.approx(6.0)
    only = store.account_usage(start=0, end=102.0)
    assert sum(u.calls for u in only) == 3  # the first calls finished at 101
    assert [u.user for u in store.account_usage(by_user=True, account="biology")] == ["bob"]


def test_shares_follow_fairshare(store: Store) -> None:
    assert store.shares() == pytest.approx({"physics": 0.75, "biology": 0.25})


def test_concurrent_record_calls_lose_nothing(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(15):
                store.record_call(rec(f"t{t}-c{i}", wf=f"wf-t{t}", at=100.0 + i * 2, dur=1.0))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_calls() == 120
    assert sum(u.calls for u in store.account_usage()) == 120
    assert len(store.workflow_story("wf-t3").edges) == 14


def test_finishes_in_one_batch_keep_each_workflows_first_finish(store: Store) -> None:
    opens = [WorkflowOpen(wf, "physics", "alice", 1.0) for wf in ("wa", "wb", "wc")]
    store.write_batch(LedgerBatch(opens=opens))
    store.write_batch(LedgerBatch(finishes=[("wa", 10.0), ("wb", 11.0), ("wa", 12.0)]))
    store.finish_workflow("wa", 20.0)
    finished = {wf: store.get_workflow(wf).finished_at for wf in ("wa", "wb", "wc")}  # type: ignore[union-attr]
    assert finished == {"wa": 10.0, "wb": 11.0, "wc": None}
