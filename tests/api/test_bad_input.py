"""Bad requests get a 4xx with a message naming the problem, never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import Service

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "tiny"}, 400, "messages"),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        ({"model": "tiny", "messages": "hi"}, 400, "messages"),
        ({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({"model": "tiny", "messages": MSG, "max_tokens": -1}, 400, "max_tokens"),
        ({"model": "tiny", "messages": MSG, "max_tokens": 10**9}, 400, "max_tokens"),
        ({"model": "tiny", "messages": MSG, "max_tokens": 4090}, 400, "context"),
        ({"model": "tiny", "messages": MSG, "max_tokens": "ten"}, 400, "max_tokens"),
        ({"model": "tiny", "messages": MSG, "temperature": 9}, 400, "temperature"),
        ({"model": "tiny", "messages": MSG, "n": 2}, 400, "n"),
        ({"model": "gpt-9", "messages": MSG}, 404, "does not exist"),
        (
            {"model": "tiny", "messages": MSG, "metadata": {"workflow_id": "bad id!"}},
            400,
            "workflow id",
        ),
        (
            {"model": "tiny", "messages": [{"role": "user", "content": "word " * 5000}]},
            400,
            "context",
        ),
        (
            {"model": "tiny", "messages": MSG, "metadata": {"workflow_done": "maybe"}},
            400,
            "true or false",
        ),
        ([1, 2, 3], 400, "valid dictionary"),
    ],
)
def test_bad_chat_bodies(service: Service, body: object, status: int, needle: str) -> None:
    with service.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] or needle == err["param"], err


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "tiny", "prompt": ""}, "empty"),
        ({"model": "tiny", "prompt": [999999]}, "vocabulary"),
        ({"model": "tiny", "prompt": []}, "prompt"),
        ({"model": "tiny", "prompt": "x", "echo": True}, "echo"),
    ],
)
def test_bad_completion_bodies(service: Service, body: object, needle: str) -> None:
    with service.client() as c:
        r = c.post("/v1/completions", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'\xff\xfe{"model": 1}',
        b"",
        b"null",
        b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff"}]}',
    ],
)
def test_undecodable_bodies(service: Service, raw: bytes) -> None:
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_bad_workflow_header(service: Service) -> None:
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": MSG},
            headers={"X-Saga-Workflow": "x" * 300},
        )
    assert r.status_code == 400


def test_oversize_header_is_rejected(service: Service) -> None:
    with service.client() as c:
        r = c.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": MSG},
            headers={"X-Junk": "y" * 100_000},
        )
    assert 400 <= r.status_code < 500


def test_unknown_route_and_method(service: Service) -> None:
    with service.client() as c:
        assert c.get("/v1/nothing").status_code == 404
        assert c.get("/v1/chat/completions").status_code == 405
