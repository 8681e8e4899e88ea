"""schemathesis against a live server, on SQLite and on PostgreSQL (the ``backend`` fixture).

Every operation of ``GET /api/openapi.json``, in the coverage, fuzzing and stateful phases
(the document's links: register -> refresh -> logout, project -> files/runs/tickets ->
stream, file -> read/move/delete, run -> get/cancel), authenticated as a fresh user. The
checks: no 5xx, documented status codes, content types and response schemas. Bounded by
``STRETTO_FUZZ_EXAMPLES`` per operation (default 20: about two minutes per backend on two
cores); ``STRETTO_FUZZ_SEED`` picks the seed (fixed by default so that CI is repeatable).

Marked ``fuzz``: not part of the default run; ``.ci/run`` runs it with ``-m fuzz``.
Requests go over keep-alive connections and generated strings may hold NUL and any
code point: an early response closes its connection (server/http) and NUL or a lone
surrogate is a 400 at the edge, so neither needs working around (a timed-out request is a
failure: ``--request-timeout``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from tests.fixtures.server import register_user

if TYPE_CHECKING:
    from tests.fixtures.server import StartServer

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(900)]

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def schemathesis_command(url: str, token: str, report_dir: Path) -> list[str]:
    executable = Path(sys.executable).parent / "schemathesis"
    return [
        str(executable),
        "--no-color",
        "run",
        f"{url}/api/openapi.json",
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        os.environ.get("STRETTO_FUZZ_EXAMPLES", "20"),
        "--seed",
        os.environ.get("STRETTO_FUZZ_SEED", "1"),
        "--workers",
        "2",
        "--request-timeout",
        "15",
        "--header",
        f"Authorization: Bearer {token}",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
        "--output-truncate",
        "true",
    ]


async def test_schemathesis_finds_no_failure(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(sse_max_lifetime_s=2.0, sse_heartbeat_s=1.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register_user(client)
    command = schemathesis_command(server.url, user.access_token, tmp_path / "report")
    result = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output[-12000:]
    assert "Stateful" in output, output[-4000:]  # the links were followed
