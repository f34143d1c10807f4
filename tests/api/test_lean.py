"""The lean front of the completion routes (api/lean.py): what it does not
accept goes to FastAPI, and a streaming client that leaves stops its call."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from saga_hpc.store.store import Store
from tests.api.conftest import Service
from tests.support.harness import HeadHarness

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.api+json", 200),
        ("text/plain", 400),  # FastAPI does not parse it: not a JSON object
        (None, 400),
    ],
)
def test_content_type_decides_as_fastapi_does(
    service: Service, content_type: str | None, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with service.client() as c:
        r = c.post("/v1/chat/completions", content=json.dumps(CHAT).encode(), headers=headers)
    assert r.status_code == status, r.text
    if status == 400:
        assert "valid dictionary" in r.json()["error"]["message"]


def test_json_the_front_rejects_but_fastapi_accepts_is_served(service: Service) -> None:
    # A NaN literal: pydantic's JSON parser takes it; json.loads too. Whichever
    # front answers, the call is served.
    raw = json.dumps(CHAT)[:-1] + ', "unknown_field": NaN}'
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "tok tok "


def test_chunked_body_over_the_limit_is_413(service: Service) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    with service.client() as c:
        r = c.post(
            "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 413, r.text
    assert "larger than" in r.json()["error"]["message"]


@pytest.fixture(scope="module")
def slow_head(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HeadHarness, str]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('lean') / 'saga.db'}"
    store = Store.open(db)
    store.upgrade()
    store.ensure_account("physics")
    store.ensure_user("alice")
    store.ensure_association("alice", "physics")
    key = store.create_api_key("alice", "physics")[1]
    store.close()
    with HeadHarness(tiny_model, db, workers=1, delay_s=0.02) as harness:
        yield harness, key


def test_streaming_client_that_leaves_cancels_its_call(slow_head: tuple[HeadHarness, str]) -> None:
    harness, key = slow_head
    worker = harness.workers[0]
    body = json.dumps(CHAT | {"max_tokens": 500, "stream": True}).encode()
    port = int(harness.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert b"200 OK" in sock.recv(4096)  # headers, then the call streams (500 x 20 ms)
        assert worker.tasks  # the worker is generating
    deadline = time.monotonic() + 5
    while (worker.tasks or harness.runtime.head.calls) and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    assert not worker.tasks, "the worker still runs the call of a client that left"
    assert not harness.runtime.head.calls  # type: ignore[union-attr]
    assert worker.served == 0
    # The head goes on serving.
    with httpx.Client(base_url=harness.base, timeout=30) as c:
        r = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
