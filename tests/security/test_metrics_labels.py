"""Issue 12 item 3: unauthenticated requests cannot grow ``/metrics``.

Every label value comes from a closed set: invented methods are counted as ``other``, routes
are templates (``<unmatched>`` when none matched), never raw paths. ``/metrics`` can be put
behind a bearer token (``STRETTO_METRICS_TOKEN``). Requests go out on raw sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.api.test_metrics import samples, value
from tests.security.content_raw import error_code, raw_request

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import RunningServer, StartServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

INVENTED = [f"XMETHOD{i}" for i in range(30)]


async def test_invented_methods_and_raw_paths_do_not_become_labels(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    async def hostile_round(tag: str) -> str:
        for index, method in enumerate(INVENTED):
            target = f"/api/projects/raw-{tag}{index}"
            status, _, _ = await raw_request(server.url, f"{method}{tag}", target)
            assert 400 <= status < 500
            status, _, _ = await raw_request(server.url, "GET", f"/no/such/route-{tag}{index}")
            assert status == 404
        return (await client.get("/metrics")).text

    await client.get("/metrics")  # the scrape's own series exist from here on
    first = await hostile_round("")
    after = await hostile_round("Y")
    # The second round's new methods and paths added no series at all, only counts.
    assert len(after.splitlines()) == len(first.splitlines())
    for index, method in enumerate(INVENTED):
        assert method not in after
        assert f"raw-{index}" not in after
        assert f"route-{index}" not in after
    found = samples(after)
    others = sum(
        v
        for (name, labels), v in found.items()
        if name == "stretto_http_requests_total" and ("method", "other") in labels
    )
    assert others == 2 * len(INVENTED)
    assert value(
        found, "stretto_http_requests_total", method="GET", route="<unmatched>", status="404"
    ) == 2 * len(INVENTED)


async def test_metrics_token_guards_the_scrape(start_server: StartServer) -> None:
    token = "scrape-token-0123456789"
    server = await start_server(metrics_token=token)
    status, _, body = await raw_request(server.url, "GET", "/metrics")
    assert status == 401
    assert error_code(body) == "unauthorized"
    status, _, body = await raw_request(
        server.url, "GET", "/metrics", headers={"Authorization": "Bearer wrong-token"}
    )
    assert status == 401
    status, headers, body = await raw_request(
        server.url, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b"stretto_http_requests_total" in body


async def test_metrics_are_open_without_a_token(server: RunningServer) -> None:
    status, _, body = await raw_request(server.url, "GET", "/metrics")
    assert status == 200
    assert b"stretto_build_info" in body
