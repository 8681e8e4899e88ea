"""End-to-end faults of PostgreSQL under a real ``stretto serve`` (slow, postgres; issue 11).

On a cluster of this module's own (``module_cluster``, synchronous commits): restarts
(``pg_ctl restart -m fast`` and ``-m immediate``) and ``pg_terminate_backend`` on stretto's
connections, each repeated several times mid-run so a one-in-several failure cannot hide;
PostgreSQL stopped for a while (8 s here: longer than every deadline, shorter than the run
writer's 20 s retry window, so in-flight runs go on where they were), and frozen with
SIGSTOP. Live SSE clients read throughout. ``Workload.verify`` (``tests/ops/faults.py``)
asserts what must hold after each: the process alive, no 500, every run ``succeeded`` with
a well-formed log, the replay equal to what the clients got, files byte-identical, RSS and
fds back within a bound.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
import trio

from tests.fixtures.postgres import BackendConfig, _admin_execute
from tests.ops.faults import Workload

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fixtures.postgres import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LIVE_CLIENTS = 3
REPEATS = 4  # restarts per test: a 1-in-6 failure shows with probability > 50 %
OUTAGE_S = 8.0  # "PostgreSQL stopped for 20 s" of the issue, shortened (see the docstring)
FROZEN_S = 5.0
OUTAGE_LOG_LINES = 80  # the whole server log of one outage test (an 8 s outage: ~40)
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


async def started(
    nursery: trio.Nursery, database: tuple[LocalCluster, str], tmp_path: Path
) -> Workload:
    """A server on the test's database with files in place and one run done (warm-up),
    its baseline taken."""
    _, url = database
    data = tmp_path / "data"
    data.mkdir()
    backend = BackendConfig("postgres", url, data)
    work = await Workload.start(nursery, backend, tmp_path / "server.log")
    await work.put_files()
    await work.wait_finished(await work.submit(0))
    work.measure_baseline()
    return work


async def fault(kind: str, cluster: LocalCluster, url: str) -> None:
    if kind == "terminate":
        for _ in range(5):
            await trio.to_thread.run_sync(_admin_execute, url, TERMINATE)
            await trio.sleep(0.05)
        return
    await trio.to_thread.run_sync(cluster.pg_ctl, "restart", kind)


@pytest.mark.parametrize("kind", ["fast", "immediate", "terminate"])
async def test_restarts_mid_run(
    cluster_database: tuple[LocalCluster, str],
    tmp_path: Path,
    nursery: trio.Nursery,
    kind: str,
) -> None:
    cluster, url = cluster_database
    work = await started(nursery, cluster_database, tmp_path)
    try:
        with trio.CancelScope() as clients:
            async with trio.open_nursery() as readers:
                await work.connect_clients(readers, LIVE_CLIENTS)
                for index in range(1, REPEATS + 1):
                    await work.wait_running(await work.submit(index))
                    await fault(kind, cluster, url)
                await work.verify(clients)
        # The faults were real: the event listener's own connection was lost each time.
        assert work.server.log().count("event listener connection lost") >= 1
        await work.stop()
    finally:
        work.server.ensure_dead()


async def assert_not_ready(work: Workload, run_id: str) -> None:
    """While the database is away: 503 ``not_ready`` with ``Retry-After``, no address; a
    stream (re)connect gets 200 with ``retry:`` and an ended stream."""
    for path in ("/api/ready", f"/api/workflow/runs/{run_id}"):
        with trio.fail_after(10):  # the 1 s database deadline, plus slack: never a hang
            response = await work.request("GET", path)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "not_ready"
        assert int(response.headers["Retry-After"]) >= 1
        assert "asyncpg" not in response.text
        assert "127.0.0.1" not in response.text
    with trio.fail_after(10):  # a stream (re)connect: come back later, never a 503
        response = await work.request("GET", f"/api/sse/projects/{work.project_id}")
    assert response.status_code == 200, response.text
    assert response.text.startswith("retry: ")


@pytest.mark.parametrize("how", ["stopped", "frozen"])
async def test_database_away_mid_run(
    cluster_database: tuple[LocalCluster, str],
    tmp_path: Path,
    nursery: trio.Nursery,
    how: str,
) -> None:
    cluster, _ = cluster_database
    work = await started(nursery, cluster_database, tmp_path)
    try:
        with trio.CancelScope() as clients:
            async with trio.open_nursery() as readers:
                await work.connect_clients(readers, LIVE_CLIENTS)
                run_id = await work.submit(1)
                await work.wait_running(run_id)
                if how == "stopped":
                    await trio.to_thread.run_sync(cluster.pg_ctl, "stop", "fast")
                else:
                    cluster.signal(signal.SIGSTOP)
                try:
                    await assert_not_ready(work, run_id)
                    await trio.sleep(OUTAGE_S if how == "stopped" else FROZEN_S)
                    await assert_not_ready(work, run_id)
                finally:
                    if how == "stopped":
                        await trio.to_thread.run_sync(cluster.pg_ctl, "start")
                    else:
                        cluster.signal(signal.SIGCONT)
                await work.verify(clients)
        await work.stop()
    finally:
        work.server.ensure_dead()
    # The outage is in the log in a few lines, without tracebacks (issue 11 item 11).
    text = work.server.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-6000:]
    assert len(text.splitlines()) < OUTAGE_LOG_LINES, text[-6000:]
