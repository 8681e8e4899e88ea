"""The load-test client (``server.bench``) stands alone: importing it, or the CLI that ships
it as ``stretto bench``, pulls in none of the server's runtime (asyncio bridge, web stack,
database driver)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SERVER_RUNTIME = ("trio_asyncio", "quart", "quart_trio", "hypercorn", "asyncpg", "google.genai")


@pytest.mark.parametrize("module", ["server.bench", "server.bench.cli", "server.cli.main"])
def test_importing_leaves_the_server_runtime_out(module: str) -> None:
    code = (
        f"import sys, {module}\nprint(','.join(m for m in {SERVER_RUNTIME!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""


def test_the_check_sees_an_import() -> None:
    code = "import sys, server.store.factory\nprint('trio_asyncio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"
