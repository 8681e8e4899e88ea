"""Bad starts of the real ``stretto`` process: one line on stderr naming the cause, the
documented exit code, and nothing written (no data directory, no database, no JWT secret).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from server.runtime.preflight import ExitCode

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow


def stretto(*argv: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRETTO_")}
    env.pop("DATABASE_URL", None)
    prefix: list[str] = []
    if unprivileged and os.geteuid() == 0:
        # Root reads every file: drop the capabilities that let it (see _unprivileged).
        prefix = [_setpriv(), "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "server.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


def _setpriv() -> str:
    path = shutil.which("setpriv")
    if path is None:
        pytest.skip("running as root without setpriv (util-linux): cannot make a dir unreadable")
    return path


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", ["serve", "check"])
def test_port_in_use(command: str, busy_port: int, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = stretto(command, "--port", str(busy_port), "--data-dir", str(data))
    assert one_line(result) == f"stretto: port {busy_port} is in use (127.0.0.1:{busy_port})"
    assert result.returncode == ExitCode.CANNOT_LISTEN
    assert not data.exists()


@pytest.mark.parametrize("command", ["serve", "check", "migrate"])
def test_data_dir_is_a_file(command: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"not a directory")
    result = stretto(command, "--port", "0", "--data-dir", str(data))
    assert one_line(result) == f"stretto: data directory {data} is not a directory"
    assert result.returncode == ExitCode.DATA_DIR_UNUSABLE
    assert data.read_bytes() == b"not a directory"
    assert listing(tmp_path) == ["data"]


@pytest.mark.parametrize("command", ["serve", "check"])
def test_invalid_host(command: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = stretto(command, "--host", "999.1.1.1", "--port", "0", "--data-dir", str(data))
    assert (
        one_line(result) == "stretto: invalid host '999.1.1.1': it does not resolve to an address"
    )
    assert result.returncode == ExitCode.BAD_SETTINGS
    assert not data.exists()


@pytest.mark.parametrize("command", ["serve", "check", "migrate"])
def test_unreadable_data_dir(command: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0)
    try:
        result = stretto(command, "--port", "0", "--data-dir", str(data), unprivileged=True)
        assert one_line(result) == (
            f"stretto: data directory {data} is not readable and writable by this user"
        )
        assert result.returncode == ExitCode.DATA_DIR_UNUSABLE
    finally:
        data.chmod(0o700)
    assert listing(data) == []


@pytest.mark.parametrize("command", ["serve", "check", "migrate"])
def test_closed_database_port(command: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"postgresql://stretto@127.0.0.1:{port}/stretto"
    result = stretto(command, "--port", "0", "--data-dir", str(data), "--database-url", url)
    assert one_line(result) == (
        f"stretto: cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused"
    )
    assert result.returncode == ExitCode.DATABASE_UNREACHABLE
    assert not data.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["serve", "check", "migrate"])
def test_wrong_database_name(command: str, postgres_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    base, _, _ = postgres_url.rpartition("/")
    url = f"{base}/no_such_database"
    result = stretto(command, "--port", "0", "--data-dir", str(data), "--database-url", url)
    address = url.split("@")[-1].rpartition("/")[0]
    assert one_line(result) == (
        f"stretto: cannot reach PostgreSQL at {address}: database 'no_such_database' does not exist"
    )
    assert result.returncode == ExitCode.DATABASE_UNREACHABLE
    assert not data.exists()


def test_check_in_an_empty_directory_says_what_to_run(tmp_path: Path) -> None:
    result = stretto("check", "--port", "0", "--data-dir", str(tmp_path))
    assert "run `stretto migrate`" in one_line(result)
    assert result.returncode == ExitCode.MIGRATIONS_PENDING
    assert listing(tmp_path) == []
