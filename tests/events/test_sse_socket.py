"""The socket fast path's dependence on library internals (``server.api.sse_socket``).

These fail loudly, naming the library and its version, when an upgrade of h11, hypercorn,
quart or quart-trio changes something the fast path relies on; the end-to-end tests in
test_sse_direct.py then show whether it still takes the fast path.
"""

from __future__ import annotations

from importlib.metadata import version

import h11
import pytest

from server.api import sse_socket
from server.api.sse_socket import TESTED_VERSIONS, InternalsChanged, check_internals, chunk


def test_installed_libraries_have_the_internals_the_fast_path_uses() -> None:
    try:
        check_internals()
    except InternalsChanged as exc:
        pytest.fail(f"the SSE socket fast path must be reviewed: {exc}")


def test_a_version_outside_the_tested_range_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sse_socket.TESTED_VERSIONS, "h11", "0.99")
    with pytest.raises(InternalsChanged, match=rf"h11 {version('h11')} is installed"):
        check_internals()


def test_tested_versions_match_the_pins() -> None:
    """pyproject.toml pins each library to the minor range of TESTED_VERSIONS, or to one
    release inside it (hypercorn and h11 are pinned exactly for server/http)."""
    import re
    from pathlib import Path

    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    for library, tested in TESTED_VERSIONS.items():
        major, minor = (int(p) for p in tested.split("."))
        ranged = f'"{library}>={tested},<{major}.{minor + 1}"' in pyproject
        exact = re.search(rf'"{re.escape(library)}=={re.escape(tested)}\.\d+"', pyproject)
        assert ranged or exact, library


def test_h11_chunk_framing_is_what_we_write() -> None:
    """h11's own ChunkedWriter frames a body chunk exactly as ``chunk`` does, so a direct
    write and hypercorn's next write (the terminating chunk) make one valid body."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(connection.next_event(), h11.Request)
    connection.send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")]))
    from h11._writers import ChunkedWriter

    assert isinstance(connection._writer, ChunkedWriter)
    assert connection.send(h11.Data(data=b"data: x\n\n")) == chunk(b"data: x\n\n")
    assert connection.send(h11.EndOfMessage()) == b"0\r\n\r\n"
