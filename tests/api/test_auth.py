"""API keys: no key or an unknown key is 401; a key whose association is gone is 403."""

from __future__ import annotations

import httpx

from tests.api.conftest import Service

BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def post(
    service: Service, headers: dict[str, str], path: str = "/v1/chat/completions"
) -> httpx.Response:
    return httpx.post(service.harness.base + path, json=BODY, headers=headers, timeout=30)


def test_missing_key_is_401(service: Service) -> None:
    r = post(service, {})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "saga-hpc keys create" in r.json()["error"]["message"]


def test_unknown_and_malformed_keys_are_401(service: Service) -> None:
    assert post(service, {"Authorization": "Bearer saga-not-a-key"}).status_code == 401
    assert post(service, {"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert post(service, {"Authorization": "Bearer " + "x" * 5000}).status_code == 401
    assert httpx.get(service.harness.base + "/v1/models", timeout=10).status_code == 401


def test_key_without_association_is_403(service: Service) -> None:
    store = service.store
    store.ensure_account("chemistry")
    store.ensure_user("dave")
    store.ensure_association("dave", "chemistry")
    _, secret = store.create_api_key("dave", "chemistry")
    store.remove_association("dave", "chemistry")
    r = post(service, {"Authorization": f"Bearer {secret}"})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"] == "permission_error"


def test_revoked_key_is_401(service: Service) -> None:
    store = service.store
    key_id, secret = store.create_api_key("alice", "physics")
    store.revoke_api_key(key_id)
    assert post(service, {"Authorization": f"Bearer {secret}"}).status_code == 401


def test_other_accounts_workflow_is_403(service: Service) -> None:
    alice = {
        "Authorization": f"Bearer {service.keys['alice@physics']}",
        "X-Saga-Workflow": "wf-owned",
    }
    bob = {"Authorization": f"Bearer {service.keys['bob@biology']}", "X-Saga-Workflow": "wf-owned"}
    assert post(service, alice).status_code == 200
    r = post(service, bob)
    assert r.status_code == 403
    assert "another account" in r.json()["error"]["message"]


def test_secrets_are_never_echoed(service: Service) -> None:
    secret = service.keys["alice@physics"]
    with service.client() as c:
        r = c.post("/v1/chat/completions", json=BODY)
    assert secret not in r.text
    assert all(secret not in v for v in r.headers.values())
