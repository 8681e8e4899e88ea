"""End-to-end: SQLite on a small tmpfs that fills up mid-run, with live SSE clients (slow;
issue 11 item 4).

While the disk is full: a file write answers 503 ``not_ready`` with ``Retry-After`` and
leaves the old content, reads go on, stream (re)connects are never refused. When space
returns, ``Workload.verify`` holds: runs ``succeeded``, the replay equals what the live
clients got, files byte-identical, RSS and fds back. (``test_full_disk.py`` covers an
outage past the run writer's retry window.) Needs ``mount -t tmpfs``; skipped with the
reason otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

from tests.fixtures.postgres import BackendConfig
from tests.ops.faults import Workload
from tests.ops.test_full_disk import fill, small_tmpfs

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

LIVE_CLIENTS = 2
FULL_S = 4.0  # within the run writer's 20 s retry window: runs go on where they were


async def test_a_full_disk_mid_run(tmp_path: Path, nursery: trio.Nursery) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        data = disk / "data"
        data.mkdir()
        backend = BackendConfig("sqlite", None, data)
        work = await Workload.start(nursery, backend, tmp_path / "server.log")
        try:
            await work.put_files()
            await work.wait_finished(await work.submit(0))
            work.measure_baseline()
            with trio.CancelScope() as clients:
                async with trio.open_nursery() as readers:
                    await work.connect_clients(readers, LIVE_CLIENTS)
                    run_id = await work.submit(1)
                    await work.wait_running(run_id)
                    filler = disk / "filler"
                    assert fill(filler) > 0
                    try:
                        path = f"/api/projects/{work.project_id}/files/in/file0.bin"
                        refused = await work.request("PUT", path, content=b"y" * 512 * 1024)
                        assert refused.status_code == 503, refused.text
                        assert refused.json()["error"]["code"] == "not_ready"
                        assert int(refused.headers["Retry-After"]) >= 1
                        kept = await work.request("GET", path)  # reads go on
                        assert kept.status_code == 200
                        assert kept.content == work.files["in/file0.bin"]
                        await trio.sleep(FULL_S)
                    finally:
                        filler.unlink()
                    await work.verify(clients)
            await work.stop()
        finally:
            work.server.ensure_dead()
