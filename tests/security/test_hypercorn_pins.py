"""server.http is written against hypercorn 0.18.0 and h11 0.16.0 internals: this fails
loudly when they move (a version bump, or a patched copy), naming what to re-read.

The fingerprints are sha256 prefixes of the source of every hypercorn function that
server.http copies, overrides or relies on. When one changes, re-read that function
upstream, port the change into server/http/ (or drop the workaround when upstream fixed the
bug: see the notes in server/http/__init__.py), then update the fingerprint.
"""

from __future__ import annotations

import hashlib
import inspect
from importlib.metadata import version
from typing import Any, cast

import pytest
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio import run, tcp_server
from hypercorn.trio.worker_context import EventWrapper

import server.http
from server.config import Settings
from server.http.protocol import EdgeH11Protocol
from server.http.worker import EdgeTCPServer

# hypercorn's own class (install() rebinds the module's name to the subclass).
TCPServer = cast("type[tcp_server.TCPServer]", EdgeTCPServer.__bases__[0])

FINGERPRINTS = {
    "TCPServer.__init__": "4c1d42457bc197b2",
    "TCPServer.run": "fd34b021d1a86c98",
    "TCPServer.protocol_send": "225856426bff7be0",
    "TCPServer._read_data": "7ca747d922c65cf1",
    "TCPServer._close": "bc73c4ae25a1ceec",
    "H11Protocol.__init__": "c7c989fd6a352626",
    "H11Protocol._handle_events": "bd4a76b2837e8722",
    "H11Protocol._send_h11_event": "5e40283daa303ec7",
    "H11Protocol._send_error_response": "58c2b47ae295d000",
    "H11Protocol._maybe_recycle": "3ac53f52bc4e65de",
    "H11Protocol._close_stream": "378930655d7bb41a",
    "H11Protocol.stream_send": "56a36254a368d71a",
    "ProtocolWrapper.__init__": "df25e181b9e2e64d",
    "HTTPStream.app_send": "c806044b99736985",
    "EventWrapper": "7c96abfd4a9ca2dc",
    "worker_serve": "8dc8347a9fc357ca",
}
_OBJECTS: dict[str, Any] = {
    "TCPServer.__init__": TCPServer.__init__,
    "TCPServer.run": TCPServer.run,
    "TCPServer.protocol_send": TCPServer.protocol_send,
    "TCPServer._read_data": TCPServer._read_data,
    "TCPServer._close": TCPServer._close,
    "H11Protocol.__init__": H11Protocol.__init__,
    "H11Protocol._handle_events": H11Protocol._handle_events,
    "H11Protocol._send_h11_event": H11Protocol._send_h11_event,
    "H11Protocol._send_error_response": H11Protocol._send_error_response,
    "H11Protocol._maybe_recycle": H11Protocol._maybe_recycle,
    "H11Protocol._close_stream": H11Protocol._close_stream,
    "H11Protocol.stream_send": H11Protocol.stream_send,
    "ProtocolWrapper.__init__": ProtocolWrapper.__init__,
    "HTTPStream.app_send": HTTPStream.app_send,
    "EventWrapper": EventWrapper,
    "worker_serve": run.worker_serve,
}


def test_installed_versions_are_the_pinned_ones() -> None:
    assert server.http.PINNED == {"hypercorn": "0.18.0", "h11": "0.16.0"}
    for name, pinned in server.http.PINNED.items():
        assert version(name) == pinned, f"{name} moved: re-check server/http against it"
    assert server.http.installed_versions() == server.http.PINNED
    server.http.check_versions()


@pytest.mark.parametrize("name", sorted(FINGERPRINTS))
def test_hypercorn_source_is_the_one_server_http_was_written_against(name: str) -> None:
    digest = hashlib.sha256(inspect.getsource(_OBJECTS[name]).encode()).hexdigest()[:16]
    assert digest == FINGERPRINTS[name], f"hypercorn's {name} changed: re-read it"


def test_the_shapes_server_http_relies_on() -> None:
    # worker_serve builds connections through the module global that install() replaces.
    assert "TCPServer" in run.worker_serve.__code__.co_names
    assert "TCPServer" in vars(run)
    # The SSE direct path checks these by identity: they must stay hypercorn's own.
    assert EdgeH11Protocol.stream_send is H11Protocol.stream_send
    assert "app_send" not in vars(EdgeTCPServer)
    assert issubclass(EdgeTCPServer, TCPServer)
    assert issubclass(EdgeH11Protocol, H11Protocol)
    # The attributes the edge classes read or set on hypercorn's objects.
    source = inspect.getsource(TCPServer.__init__)
    for attribute in ("self.send_lock", "self.stream", "self.context", "self.config"):
        assert attribute in source
    assert "self.connection" in inspect.getsource(H11Protocol.__init__)
    assert "self.protocol = H11Protocol(" in inspect.getsource(ProtocolWrapper.__init__)


def test_install_replaces_the_worker_class_for_hypercorn_and_the_sse_fast_path() -> None:
    import hypercorn.trio.tcp_server
    from hypercorn.config import Config

    config = server.http.install(Config(), Settings(keep_alive_s=7.0))
    assert config.keep_alive_timeout == 7.0
    assert vars(run)["TCPServer"] is EdgeTCPServer
    assert hypercorn.trio.tcp_server.TCPServer is EdgeTCPServer


def test_a_version_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(server.http.PINNED, "h11", "0.0.1")
    with pytest.raises(server.http.UnsupportedVersion, match=r"h11 0\.0\.1"):
        server.http.check_versions()
