"""/metrics: the families API.md and the ops issue list, fed by real traffic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from tests.ai.test_e2e_prompt_runs import run_prompt
from tests.fixtures.server import create_project, register_user

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import RunningServer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_runs_steps_and_model_calls(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    user = await register_user(client)
    pid = await create_project(client, user)
    await client.put(f"/api/projects/{pid}/files/notes.md", content=b"hello", headers=user.headers)
    run, _ = await run_prompt(client, user, pid, "summarize notes.md")
    assert run["status"] == "succeeded"

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    route = "/api/projects/<project_id>/files/<vfspath:path>"
    assert value(found, "stretto_http_requests_total", method="PUT", route=route, status="201") == 1
    assert value(found, "stretto_runs_total", status="succeeded") == 1
    assert value(found, "stretto_runs_total", status="pending") == 1
    steps_ok = sum(
        v
        for (name, labels), v in found.items()
        if name == "stretto_steps_total" and ("status", "succeeded") in labels
    )
    assert steps_ok == len(run["steps"])
    model_calls = sum(v for (name, _), v in found.items() if name == "stretto_model_calls_total")
    assert model_calls >= 2  # intent + plan at least
    assert value(found, "stretto_events_published_total") > 0
    if server.settings.database_url is not None:
        assert value(found, "stretto_db_pool_max_connections") == server.settings.db_pool_size
