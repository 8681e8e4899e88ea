"""End-to-end: SSE clients that never read, on a real ``stretto serve`` (slow; issue 11 item 10).

Fifty clients open a stream, read its head and never read again, while runs publish large
events (model answers of ~19 KB each). The hub drops them as slow, and the server closes its
side of each connection although the clients still hold theirs: the server's file
descriptors come back to the baseline. Live clients (readers, which may be dropped too on
this small buffer) reconnect with their last id and miss nothing; ``Workload.verify``
checks that, the runs, the files, and RSS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.events.sse_client import connect, read_head
from tests.fixtures.postgres import BackendConfig
from tests.ops.faults import FD_SLACK, Workload, proc_status

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

STALLED = 50
LIVE_CLIENTS = 2
BIG_RUNS = 3


def big_plan(index: int) -> dict[str, Any]:
    """Eight model calls whose answers (the offline provider echoes the prompt) are ~19 KB."""
    prompt = f"run {index} " + "x" * 19_000
    return {
        "steps": [
            {"id": f"s{i}", "tool": "ai.generate", "args": {"prompt": prompt}} for i in range(8)
        ]
    }


async def dropped(work: Workload) -> float:
    """Subscribers the hub dropped as slow (``/metrics``)."""
    response = await work.request("GET", "/metrics")
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("stretto_events_dropped"):
            return float(line.split()[-1])
    raise AssertionError("no stretto_events_dropped metric")


async def test_non_reading_clients_are_dropped_and_their_sockets_closed(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    backend = BackendConfig("sqlite", None, data)
    work = await Workload.start(
        nursery, backend, tmp_path / "server.log", sse_buffer=8, offline_latency_ms=50
    )
    stalled: list[trio.SocketStream] = []
    try:
        await work.put_files()
        await work.wait_finished(await work.submit(0))
        work.measure_baseline()
        target = f"/api/sse/projects/{work.project_id}"
        with trio.CancelScope() as clients:
            async with trio.open_nursery() as readers:
                await work.connect_clients(readers, LIVE_CLIENTS)
                for _ in range(STALLED):
                    stream = await connect(work.server.url, target, work.user.headers, 4096)
                    stalled.append(stream)
                    status, _, _ = await read_head(stream)
                    assert status == 200
                _, fds = proc_status(work.server.process.pid)
                assert fds >= work.baseline[1] + STALLED  # the server's end of each
                for index in range(1, BIG_RUNS + 1):
                    await work.submit(index, plan=big_plan(index))
                with trio.fail_after(60):  # hang guard: every stalled client dropped as slow
                    while await dropped(work) < STALLED:  # noqa: ASYNC110 - a metric
                        await trio.sleep(0.1)
                # verify: the runs end, the clients catch up, and the server's fds come
                # back although the stalled clients still hold their ends open.
                await work.verify(clients)
        _, fds = proc_status(work.server.process.pid)
        assert fds <= work.baseline[1] + FD_SLACK
        await work.stop()
    finally:
        for stream in stalled:
            await stream.aclose()
        work.server.ensure_dead()
