"""A worker that stops heartbeating is marked dead and its calls run elsewhere."""

from __future__ import annotations

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
