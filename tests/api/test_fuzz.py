"""Property-based fuzzing of the API from its own OpenAPI schema: no 5xx, ever."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import Service


def test_no_server_errors_on_any_operation(service: Service) -> None:
    schema = schemathesis.openapi.from_url(service.harness.base + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/health"}
    key = {"Authorization": f"Bearer {service.keys['alice@physics']}"}
    failures: list[str] = []
    for op in operations:

        @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            for headers in (key, {}):
                response = case.call(base_url=service.harness.base, headers=headers, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
                    )

        fuzz()
    assert failures == []
