"""The one-line causes of bad starts, from the driver's errors (no process, no database)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from server.config import Settings
from server.errors import StoreUnavailable
from server.runtime.preflight import ExitCode, StartupError, check_data_dir, describe_store_failure

if TYPE_CHECKING:
    from pathlib import Path

URL = "postgresql://app:s3cret@db.internal:6543/stretto"


class InvalidCatalogNameError(Exception):
    """Named like asyncpg's: the description goes by the class name, not the import."""


def failure(cause: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"cannot connect: {cause}")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("cause", "line"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (socket.gaierror(-2, "Name or service not known"), "the host does not resolve"),
        (TimeoutError(), "timed out"),
        (InvalidCatalogNameError('database "stretto" does not exist'),
         "database 'stretto' does not exist"),
    ],
)  # fmt: skip
def test_connection_failures_name_the_address_not_the_password(
    cause: BaseException, line: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=URL)
    error = describe_store_failure(settings, failure(cause))
    assert str(error) == f"cannot reach PostgreSQL at db.internal:6543: {line}"
    assert error.exit_code == ExitCode.DATABASE_UNREACHABLE
    assert "s3cret" not in str(error)


def test_a_failure_after_connecting_is_not_called_unreachable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=URL)
    error = describe_store_failure(settings, failure(RuntimeError("relation x does not exist")))
    assert str(error) == "PostgreSQL at db.internal:6543: relation x does not exist"


def test_a_missing_data_dir_is_fine_when_it_can_be_created(tmp_path: Path) -> None:
    assert check_data_dir(Settings(data_dir=tmp_path / "a" / "b")) is False
    assert not (tmp_path / "a").exists()
    assert check_data_dir(Settings(data_dir=tmp_path)) is True


def test_a_data_dir_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StartupError) as caught:
        check_data_dir(Settings(data_dir=tmp_path / "file" / "data"))
    assert caught.value.exit_code == ExitCode.DATA_DIR_UNUSABLE
