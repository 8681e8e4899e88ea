"""The bench's sans-IO wire code: response heads, chunked bodies, SSE frames."""

from __future__ import annotations

import pytest

from server.bench.errors import BenchError
from server.bench.wire import (
    ChunkedDecoder,
    FrameSplitter,
    count_comments,
    has_retry,
    last_event_id,
    parse_events,
    parse_head,
    request_bytes,
)


def test_parse_head_reads_status_and_lowercases_headers() -> None:
    head = parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
    )
    assert head.status == 200
    assert head.headers["content-type"] == "text/event-stream"
    assert head.chunked
    assert head.keep_alive
    assert head.content_length is None


def test_parse_head_refuses_garbage() -> None:
    with pytest.raises(BenchError):
        parse_head(b"SSH-2.0-OpenSSH")


def test_request_bytes_sets_length_for_bodies() -> None:
    raw = request_bytes("PUT", "/f", "h:1", [("X-A", "b")], b"abc")
    assert raw == b"PUT /f HTTP/1.1\r\nHost: h:1\r\nX-A: b\r\nContent-Length: 3\r\n\r\nabc"
    assert b"Content-Length" not in request_bytes("GET", "/", "h")


def test_chunked_decoder_handles_any_split() -> None:
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nworld, SSE!\r\n0\r\n\r\n"
    for size in (1, 2, 3, 7, len(body)):
        decoder = ChunkedDecoder()
        out = b"".join(decoder.feed(body[i : i + size]) for i in range(0, len(body), size))
        assert out == b"hello world, SSE!"
        assert decoder.done


def test_chunked_decoder_rejects_bad_size() -> None:
    with pytest.raises(BenchError):
        ChunkedDecoder().feed(b"zz\r\n")


def test_frame_splitter_returns_only_whole_frames_and_normalises_crlf() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"retry: 3000\r") == b""
    assert splitter.feed(b"\n\r\nid: 1\ndata: {}") == b"retry: 3000\n\n"
    assert splitter.feed(b"\n\n: ping\n\n") == b"id: 1\ndata: {}\n\n: ping\n\n"


def test_frame_helpers() -> None:
    frames = b'retry: 3000\n\n: ping\n\nid: 7\nevent: file.changed\ndata: {"path":"a"}\n\n'
    assert has_retry(frames)
    assert not has_retry(b"data: retry:\n\n")
    assert count_comments(frames) == 1
    assert last_event_id(frames) == "7"
    assert last_event_id(b": ping\n\n") is None


def test_parse_events_decodes_json_and_skips_comments() -> None:
    frames = (
        b"retry: 3000\n\n: ping\n\n"
        b'id: 1\nevent: run.started\ndata: {"run_id": "r"}\n\n'
        b"data: line one\ndata: line two\n\n"
    )
    events = parse_events(frames)
    assert [(e.event, e.id) for e in events] == [("run.started", "1"), ("message", None)]
    assert events[0].data == {"run_id": "r"}
    assert events[1].data == "line one\nline two"
