"""The OpenAI-compatible routes through a real head, with fake engines."""

from __future__ import annotations

import json

import openai
import pytest

from tests.api.conftest import Service


def chat(n: int = 4, **extra: object) -> dict[str, object]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": "fix the test"}],
        "max_tokens": n,
    } | extra


def test_chat_completion_whole(service: Service) -> None:
    with service.client() as c:
        r = c.post("/v1/chat/completions", json=chat(5))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "tok " * 5
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] > 0
    assert r.headers["x-saga-worker"] in {"w1", "w2"}


def test_chat_completion_streams_chunks_then_done(service: Service) -> None:
    with (
        service.client() as c,
        c.stream(
            "POST",
            "/v1/chat/completions",
            json=chat(3, stream=True, stream_options={"include_usage": True}),
        ) as r,
    ):
        assert r.status_code == 200
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln.removeprefix("data: ")) for ln in lines[:-1]]
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == "tok " * 3
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_text_completion_with_openai_client(service: Service) -> None:
    client = openai.OpenAI(base_url=service.url, api_key=service.keys["bob@biology"])
    out = client.completions.create(model="tiny", prompt="def test", max_tokens=2)
    assert out.choices[0].text == "tok tok "
    stream = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=2, stream=True)
    assert "".join(ch.choices[0].text for ch in stream) == "tok tok "


def test_models_and_health(service: Service) -> None:
    with service.client() as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["tiny"]
        health = c.get("/health").json()
    assert health["workers_alive"] == 2


def test_workflow_calls_become_an_aeg(service: Service) -> None:
    headers = {"X-Saga-Workflow": "wf-aeg-1", "X-Saga-Next-Tool": "pytest"}
    with service.client() as c:
        assert c.post("/v1/chat/completions", json=chat(2), headers=headers).status_code == 200
        r = c.post(
            "/v1/chat/completions",
            json=chat(2, metadata={"workflow_id": "wf-aeg-1", "workflow_done": "true"}),
        )
    assert r.status_code == 200
    story = service.store.workflow_story("wf-aeg-1")
    assert [call.output_tokens for call in story.calls] == [2, 2]
    assert [edge.tool for edge in story.edges] == ["pytest"]
    assert story.edges[0].duration_s >= 0
    assert all(call.account == "physics" for call in story.calls)


def test_ledger_row_exists_when_response_arrives(service: Service) -> None:
    with service.client("carol@physics") as c:
        r = c.post("/v1/chat/completions", json=chat(3), headers={"X-Saga-Workflow": "wf-ledger"})
    call_id = r.json()["id"]
    calls = service.store.workflow_story("wf-ledger").calls
    assert [c.call_id for c in calls] == [call_id]


def test_metrics_expose_counts_not_prompts(service: Service) -> None:
    secret_prompt = "the-secret-prompt-text-42"
    with service.client() as c:
        c.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": secret_prompt}],
            },
        )
        text = c.get("/metrics").text
    assert "saga_calls_total" in text
    assert secret_prompt not in text
    assert service.keys["alice@physics"] not in text


@pytest.mark.parametrize("stream", [False, True])
def test_same_prompt_is_cached_only_within_an_account(service: Service, stream: bool) -> None:
    prompt = {
        "model": "tiny",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": f"stream={stream} " + "word " * 200}],
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }
    prompt = {k: v for k, v in prompt.items() if v is not None}
    cached = {}
    for who in ("alice@physics", "bob@biology", "carol@physics"):
        client = openai.OpenAI(base_url=service.url, api_key=service.keys[who])
        if stream:
            chunks = list(client.chat.completions.create(**prompt))  # type: ignore[call-overload]
            usage = chunks[-1].usage
        else:
            usage = client.chat.completions.create(**prompt).usage  # type: ignore[call-overload]
        cached[who] = usage.prompt_tokens_details.cached_tokens
    # bob (biology) must not hit physics' blocks; carol shares physics' salt.
    assert cached["bob@biology"] == 0
    assert cached["carol@physics"] > 0


def test_prefix_hashes_chain_and_salt() -> None:
    from saga_hpc.head.prompts import prefix_hashes

    ids = list(range(100))
    a = prefix_hashes(ids, 32, "acct-a")
    assert len(a) == 3  # only full blocks
    assert (
        prefix_hashes(ids[:64] + [7] * 36, 32, "acct-a")[:2] == a[:2]
    )  # shared prefix, same hashes
    assert prefix_hashes(ids[:64] + [7] * 36, 32, "acct-a")[2] != a[2]
    assert (
        prefix_hashes([9, *ids[1:]], 32, "acct-a")[1] != a[1]
    )  # chained: block 1 depends on block 0
    assert not set(prefix_hashes(ids, 32, "acct-b")) & set(a)  # salts never match
