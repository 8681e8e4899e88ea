"""Request ids, per-route metrics and the access line, through a real QuartTrio app."""

from __future__ import annotations

import io
import json
import logging

from quart_trio import QuartTrio

from server.config import Settings
from server.observability.http import REQUEST_ID_HEADER, install_request_observability
from server.observability.logging import configure_logging
from server.observability.metrics import Metrics


def make_app(metrics: Metrics) -> QuartTrio:
    app = QuartTrio(__name__)
    log = logging.getLogger("stretto.test")

    @app.get("/api/items/<item_id>")
    async def item(item_id: str) -> dict[str, str]:
        log.info("serving item")
        return {"id": item_id}

    install_request_observability(app, metrics)
    return app


async def test_request_ids_metrics_and_access_log() -> None:
    metrics = Metrics(process_metrics=False)
    stream = io.StringIO()
    # Access lines are debug-level (one per request costs too much at info on a busy server).
    handler = configure_logging(Settings(log_level="debug"), stream=stream)
    try:
        client = make_app(metrics).test_client()
        echoed = await client.get(
            "/api/items/7?ticket=tkt_secret", headers={REQUEST_ID_HEADER: "abc-1"}
        )
        fresh = await client.get("/api/items/8")
        missing = await client.get("/nowhere", headers={REQUEST_ID_HEADER: "bad id <script>"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert echoed.headers[REQUEST_ID_HEADER] == "abc-1"
    assert fresh.headers[REQUEST_ID_HEADER] not in ("", "abc-1")
    assert missing.status_code == 404
    assert missing.headers[REQUEST_ID_HEADER] != "bad id <script>"

    exposition = metrics.render().decode()
    assert 'route="/api/items/<item_id>",status="200"} 2.0' in exposition
    assert 'route="<unmatched>",status="404"} 1.0' in exposition

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    app_line = next(line for line in lines if line["msg"] == "serving item")
    assert app_line["request_id"] == "abc-1"
    access = [line for line in lines if line["logger"] == "stretto.access"]
    assert [a["status"] for a in access] == [200, 200, 404]
    assert access[0]["route"] == "/api/items/<item_id>"
    assert access[0]["request_id"] == "abc-1"
    assert "tkt_secret" not in stream.getvalue()
