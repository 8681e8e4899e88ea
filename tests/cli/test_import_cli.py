"""``stretto import`` as a real subprocess next to a running server, on both databases: a
directory and an archive become a project byte for byte; a refused archive leaves nothing."""

from __future__ import annotations

import io
import sys
import tarfile
from typing import TYPE_CHECKING

import trio

from tests.api.test_import_export import FILES, project_files
from tests.fixtures.server import register_user
from tests.ops.process import free_port, server_env

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from tests.fixtures.postgres import BackendConfig
    from tests.fixtures.server import AuthedUser, RunningServer


async def stretto_import(backend: BackendConfig, *args: str) -> tuple[int, str, str]:
    done = await trio.run_process(
        [sys.executable, "-m", "server", "import", *args],
        env=server_env(backend, free_port()),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def projects_named(client: httpx.AsyncClient, user: AuthedUser) -> dict[str, str]:
    listing = (await client.get("/api/projects", headers=user.headers)).json()["items"]
    return {p["name"]: p["id"] for p in listing}


async def test_directory_and_archive_imports(
    backend: BackendConfig, server: RunningServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    user = await register_user(client)
    tree = tmp_path / "legacy-app"
    for path, content in FILES.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(content)
    code, out, err = await stretto_import(backend, str(tree), "--owner", user.email)
    assert code == 0, err
    assert "imported 5 files" in out
    named = await projects_named(client, user)
    assert await project_files(client, user, named["legacy-app"]) == FILES

    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path, content in FILES.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    code, _, err = await stretto_import(
        backend, str(archive), "--owner", user.user_id, "--project", "from tar"
    )
    assert code == 0, err
    named = await projects_named(client, user)
    assert await project_files(client, user, named["from tar"]) == FILES


async def test_refusals_leave_nothing(
    backend: BackendConfig, server: RunningServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    user = await register_user(client)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        for name in ("ok.txt", "../../etc/cron.d/x"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    code, _, err = await stretto_import(backend, str(evil), "--owner", user.email)
    assert code == 1
    assert "../../etc/cron.d/x" in err
    assert await projects_named(client, user) == {}  # the new project was removed again
    code, _, err = await stretto_import(backend, str(evil), "--owner", "nobody@example.com")
    assert code == 4
    assert "no user" in err
    code, _, _ = await stretto_import(backend, str(tmp_path / "missing"), "--owner", user.email)
    assert code == 2
