"""HTTPS for the API (`serve --tls-cert --tls-key`): the head serves calls over
TLS with the given certificate, refuses plain HTTP, and clients that do not
trust the certificate cannot talk to it. Real head, real TLS, echo workers."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.harness import HeadHarness
from tests.support.store import store_with_keys


def self_signed(where: Path) -> tuple[str, str]:
    cert, key = where / "cert.pem", where / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    argv += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture(scope="module")
def https(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HeadHarness, str, str]]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(where)
    db = f"sqlite:///{where / 'saga.db'}"
    store, keys = store_with_keys(db, {"physics": "alice"})
    with HeadHarness(tiny_model, db, workers=1, tls=(cert, key)) as harness:
        yield harness, cert, keys["physics"]
    store.close()


def test_calls_are_served_over_https_to_clients_that_trust_the_certificate(
    https: tuple[HeadHarness, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, cert, secret = https
    assert harness.url.startswith("https://127.0.0.1:")
    # The way docs/users.md tells agents to trust a cluster's own certificate.
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    client = openai.OpenAI(base_url=harness.url, api_key=secret)
    answer = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert answer.usage is not None and answer.usage.completion_tokens == 4


def test_plain_http_and_untrusting_clients_get_nothing(
    https: tuple[HeadHarness, str, str],
) -> None:
    harness, _, secret = https
    headers = {"Authorization": f"Bearer {secret}"}
    plain = harness.base.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/health", headers=headers, timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(harness.base + "/health", headers=headers, timeout=10)
    trusted = ssl.create_default_context(cafile=https[1])
    assert httpx.get(harness.base + "/health", verify=trusted, timeout=10).status_code == 200
