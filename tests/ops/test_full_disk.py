"""Subprocess test (slow): SQLite on a small tmpfs that fills up while a run is in flight.

Issue 11 item 4. The disk fills while a step runs: the run's writes fail with "database or
disk is full". They must not decide the run's fate nor crash anything: the writer retries
with backoff, lease maintenance logs rate-limited (no tracebacks). When space returns, the
run finishes ``succeeded`` and its event log (replayed from 0) is well formed.

Needs ``mount -t tmpfs`` (root, or a namespace that allows it); skipped with the reason
otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import subprocess
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.events.sse_client import open_stream
from tests.fixtures.postgres import BackendConfig
from tests.fixtures.server import create_project, register_user
from tests.ops.process import ServerProcess
from tests.ops.test_durable_resume import read_until_run_ends, steps_by_id, wait_for
from tests.workflow.invariants import check_run_log

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.slow

TMPFS_SIZE = "24m"
LATENCY_MS = 1500
# Shorter than the writer's retry window (20 s): the write is retried and the run goes on
# where it was. Longer: the executor leaves the run, and the supervisor resumes it, with
# backoff, once the disk has room again.
OUTAGES_S = {"within-the-retry-window": 5.0, "past-the-retry-window": 25.0}
PLAN = {
    "steps": [
        {"id": "write", "tool": "vfs.write", "args": {"path": "a.txt", "content": "hello"}},
        {"id": "draft", "tool": "ai.generate", "args": {"prompt": "a haiku"}, "needs": ["write"]},
        {"id": "polish", "tool": "ai.generate", "args": {"prompt": "polish"}, "needs": ["draft"]},
    ]
}


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full; return the bytes written."""
    written = 0
    chunk = b"\0" * (256 * 1024)
    with path.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            written += len(chunk)
    return written


@pytest.mark.parametrize("outage_s", list(OUTAGES_S.values()), ids=list(OUTAGES_S))
async def test_a_full_disk_mid_run_does_not_decide_the_run(
    tmp_path: Path, nursery: trio.Nursery, outage_s: float
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        data_dir = disk / "data"
        data_dir.mkdir()
        backend = BackendConfig("sqlite", None, data_dir)
        log = tmp_path / "server.log"
        server = await ServerProcess.start(
            nursery, backend, log, offline_latency_ms=LATENCY_MS, run_lease_s=1.0
        )
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                user = await register_user(client)
                project_id = await create_project(client, user)
                response = await client.post(
                    "/api/workflow/runs",
                    json={"project_id": project_id, "plan": PLAN},
                    headers=user.headers,
                )
                assert response.status_code == 202, response.text
                run_id = response.json()["id"]

                def drafting(run: dict[str, Any]) -> bool:
                    return bool(steps_by_id(run)["draft"]["status"] == "running")

                await wait_for(client, user, run_id, drafting, 30)
                filler = disk / "filler"
                assert fill(filler) > 0
                await trio.sleep(outage_s)  # the draft ends meanwhile: its write fails
                during = await client.get(f"/api/workflow/runs/{run_id}", headers=user.headers)
                assert server.process.returncode is None
                filler.unlink()

                finished = await wait_for(
                    client, user, run_id, lambda r: r["finished_at"] is not None, 120
                )
                async with open_stream(
                    client, project_id, user.headers, params={"last_event_id": "0"}
                ) as stream:
                    events = await read_until_run_ends(stream)
            assert server.process.returncode is None
            server.terminate()
            with trio.fail_after(30):
                assert await server.process.wait() == 0, server.log()
        finally:
            server.ensure_dead()
    text = log.read_text(errors="replace")
    assert during.status_code == 200, during.text  # reads go on while the disk is full
    assert during.json()["finished_at"] is None  # the full disk did not decide the run
    assert finished["status"] == "succeeded", (finished, text[-4000:])
    assert all(s["status"] == "succeeded" for s in finished["steps"])
    check_run_log(d for _, d in events if d.get("run_id") == run_id)
    assert "full" in text  # the failure was reported ...
    assert "Traceback" not in text, text[-4000:]  # ... without tracebacks
    assert json.dumps(events)  # the replay is complete JSON
