"""The load client's summary: what the handover test reads from it."""

from __future__ import annotations

from saga_hpc.client.loadgen import LoadResult


def test_service_jobs_are_listed_in_the_order_they_first_answered() -> None:
    result = LoadResult()
    for workflow, job in [("a", "9"), ("b", "9"), ("a", "10"), ("b", "10"), ("c", "10")]:
        result.saw_job(workflow, job)
    summary = result.summary()
    assert summary["service_jobs"] == ["9", "10"]  # sorted as strings, "10" came first
    assert summary["workflows_across_jobs"] == 2
