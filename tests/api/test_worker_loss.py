"""A worker that stops heartbeating is marked dead and its calls run elsewhere."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from tests.support.harness import HeadHarness
from tests.support.store import store_with_key


def test_silent_worker_is_marked_dead_and_its_call_requeued(
    tiny_model: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    store, key = store_with_key(db)
    with HeadHarness(tiny_model, db, workers=2, worker_timeout_s=1.5, delay_s=0.05) as h:
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["r"] = httpx.post(
                h.url + "/chat/completions",
                json={
                    "model": "tiny",
                    "max_tokens": 40,
                    "messages": [{"role": "user", "content": "x"}],
                },
                headers={"Authorization": f"Bearer {key}", "X-Saga-Workflow": "wf-loss"},
                timeout=30,
            )

        client = threading.Thread(target=call)
        client.start()
        deadline = time.monotonic() + 5
        busy = None
        while busy is None and time.monotonic() < deadline:
            busy = next((w for w in h.workers if w.tasks), None)
            time.sleep(0.02)
        assert busy is not None
        metrics = httpx.get(h.base + "/metrics", timeout=5).text
        assert f'saga_worker_calls{{worker="{busy.worker_id}"}} 1.0' in metrics
        busy.die()
        t_dead = time.monotonic()
        client.join(30)
        r = result["r"]
        assert r.status_code == 200, r.text
        survivor = next(w for w in h.workers if w is not busy)
        assert r.headers["x-saga-worker"] == survivor.worker_id
        assert r.json()["usage"]["completion_tokens"] == 40
        assert time.monotonic() - t_dead < 1.5 + 1.0 + 40 * 0.05 + 2  # timeout + detection + rerun
        health = httpx.get(h.base + "/health", timeout=5).json()
        assert health["workers_alive"] == 1
        calls = store.workflow_story("wf-loss").calls
        assert [c.worker for c in calls] == [survivor.worker_id]  # billed once, where it finished
    store.close()


def test_last_worker_lost_answers_retryable_errors_not_hangs(
    tiny_model: Path, tmp_path: Path
) -> None:
    """With no worker left, nothing could ever run a call: each in flight ends
    with a retryable error (status 503, or an error event with code `retryable`
    once tokens streamed) and a new one is refused at once, instead of waiting."""
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    store, key = store_with_key(db)
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "tiny", "max_tokens": 200, "messages": [{"role": "user", "content": "x"}]}
    with HeadHarness(tiny_model, db, workers=1, worker_timeout_s=1.5, delay_s=0.05) as h:
        whole: dict[str, httpx.Response] = {}
        client = threading.Thread(
            target=lambda: whole.update(
                r=httpx.post(h.url + "/chat/completions", json=body, headers=auth, timeout=30)
            )
        )
        client.start()
        events = []
        with httpx.stream(
            "POST",
            h.url + "/chat/completions",
            json=body | {"stream": True},
            headers=auth,
            timeout=30,
        ) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 3:  # role chunk, then tokens: both calls run
                    h.workers[0].die()
        t_dead = time.monotonic()
        client.join(30)
        assert events[-1]["error"]["code"] == "retryable", events[-1]
        r = whole["r"]  # streamed nothing yet: re-queued, then nowhere to run
        assert r.status_code == 503 and r.json()["error"]["code"] == "retryable", r.text
        assert r.headers["retry-after"] == "1"
        assert time.monotonic() - t_dead < 5  # not a hang

        t0 = time.monotonic()
        refused = httpx.post(h.url + "/chat/completions", json=body, headers=auth, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "retryable"
        assert time.monotonic() - t0 < 2
        health = httpx.get(h.base + "/health", timeout=5)
        assert health.status_code == 503 and health.json()["workers_alive"] == 0
        metrics = httpx.get(h.base + "/metrics", timeout=5).text
        assert 'saga_worker_up{worker="w1"} 0.0' in metrics
        assert "saga_interrupted_calls_total 2.0" in metrics
        assert "saga_requeued_calls_total 1.0" in metrics
        assert store.count_calls() == 0  # nothing finished: nothing billed
    store.close()
