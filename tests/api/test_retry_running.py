"""A call retried with its Idempotency-Key while the first attempt still runs is
told to wait (409, retryable), not run twice; once it finished, the retry gets
the billed answer and nothing more is billed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.support.harness import HeadHarness
from tests.support.store import store_with_key


def test_retry_while_running_is_409_then_the_billed_answer(
    tiny_model: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    store, key = store_with_key(db)
    body = {"model": "tiny", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}
    headers = {
        "Authorization": f"Bearer {key}",
        "X-Saga-Workflow": "wf-retry",
        "Idempotency-Key": "wf-retry-0",
    }
    with HeadHarness(tiny_model, db, workers=1, delay_s=0.05) as h:  # 20 tokens: ~1 s
        first: dict[str, httpx.Response] = {}

        def call() -> None:
            first["r"] = httpx.post(
                h.url + "/chat/completions", json=body, headers=headers, timeout=30
            )

        client = threading.Thread(target=call)
        client.start()
        deadline = time.monotonic() + 5
        while not any(w.tasks for w in h.workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        early = httpx.post(h.url + "/chat/completions", json=body, headers=headers, timeout=30)
        client.join(30)
        late = httpx.post(h.url + "/chat/completions", json=body, headers=headers, timeout=30)
    assert early.status_code == 409, early.text
    assert early.json()["error"]["code"] == "retryable" and "Retry-After" in early.headers
    done = first["r"]
    assert done.status_code == 200, done.text
    assert late.status_code == 200
    assert late.json()["id"] == done.json()["id"]
    assert late.json()["usage"] == done.json()["usage"]
    assert [c.call_id for c in store.workflow_story("wf-retry").calls] == [done.json()["id"]]
    store.close()
