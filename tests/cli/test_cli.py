"""The ``stretto`` command's exit codes: settings errors, check, migrate, version."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
import trio

from server.cli.main import main
from server.runtime.preflight import ExitCode

if TYPE_CHECKING:
    from pathlib import Path


def run_cli(*argv: str) -> int:
    # main() calls trio.run itself: run it on a worker thread, away from the test's loop.
    return main(list(argv))


async def cli(*argv: str) -> int:
    return await trio.to_thread.run_sync(run_cli, *argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "port: expected int"),
        (["--port", "70000"], "is not a TCP port"),
        (["--jwt-secret", "short"], "at least 32 bytes"),
        (["--jwt-algorithm", "none"], "jwt_algorithm"),
        (["--database-url", "mysql://x"], "DATABASE_URL"),
        (["--jwt-algorithm", "RS256"], "set exactly one of"),
    ],
)
async def test_invalid_settings_exit_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli("check", "--port", "0", "--data-dir", str(tmp_path), *argv)
    assert code == ExitCode.BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


async def test_environment_settings_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRETTO_PORT", "not-a-port")
    assert await cli("check", "--data-dir", str(tmp_path)) == ExitCode.BAD_SETTINGS
    assert "port" in capsys.readouterr().err


async def test_check_then_migrate_then_check(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert await cli("check", "--port", "0", "--data-dir", data) == ExitCode.MIGRATIONS_PENDING
    assert await cli("migrate", "--data-dir", data) == ExitCode.OK
    assert await cli("check", "--port", "0", "--data-dir", data) == ExitCode.OK
    assert await cli("migrate", "--data-dir", data) == ExitCode.OK


async def test_check_reports_unreachable_database(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://nobody@127.0.0.1:{port}/nothing"
    assert (
        await cli("check", "--port", "0", "--data-dir", str(tmp_path), "--database-url", url)
        == ExitCode.DATABASE_UNREACHABLE
    )


async def test_version_prints_version(capsys: pytest.CaptureFixture[str]) -> None:
    from server import __version__

    assert await cli("version") == ExitCode.OK
    assert __version__ in capsys.readouterr().out


async def test_serve_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        await cli("serve", "--help")
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "STRETTO_SSE_MAX_LIFETIME_S" in out  # its help holds a literal '%'
    assert "DATABASE_URL" in out
