"""SSE framing and the event model: pure functions, exact bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.events.model import StoredEvent, dumps, event_data, is_retained, new_event, run_id_of
from server.events.sse import (
    PING_FRAME,
    RETRY_FRAME,
    SSEDecoder,
    encode_frame,
    encode_stored,
    encode_transient,
    parse_last_event_id,
    reset_frame,
)

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_stored_event_frame_is_id_event_data_blank_line() -> None:
    event = StoredEvent("p1", 42, "step.succeeded", '{"type":"step.succeeded","x":1}', AT)
    assert encode_stored(event) == (
        b'id: 42\nevent: step.succeeded\ndata: {"type":"step.succeeded","x":1}\n\n'
    )


def test_transient_frame_has_no_id_line() -> None:
    frame = encode_transient({"type": "step.delta", "project_id": "p", "text": "h\u00e9"})
    expected = 'event: step.delta\ndata: {"type":"step.delta","project_id":"p","text":"hé"}\n\n'
    assert frame == expected.encode()


def test_control_frames() -> None:
    assert RETRY_FRAME == b"retry: 3000\n\n"
    assert PING_FRAME == b": ping\n\n"


def test_multiline_data_becomes_several_data_lines() -> None:
    assert encode_frame("x", "a\nb\r\nc") == b"event: x\ndata: a\ndata: b\ndata: c\n\n"


@pytest.mark.parametrize("bad", ["", "a\nb", "a\rb"])
def test_event_type_that_breaks_framing_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid SSE event type"):
        encode_frame(bad, "{}")


def test_reset_frame_carries_last_seq_as_id() -> None:
    messages = SSEDecoder().feed(reset_frame("p1", 7, "expired"))
    assert len(messages) == 1
    assert messages[0].event == "reset"
    assert messages[0].id == "7"
    data = json.loads(messages[0].data)
    assert data["type"] == "reset"
    assert data["project_id"] == "p1"
    assert data["reason"] == "expired"
    assert data["last_event_id"] == 7
    assert "at" in data


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        (None, None, (False, None)),
        ("", None, (False, None)),
        ("12", None, (True, 12)),
        (" 12 ", "3", (True, 12)),
        (None, "3", (True, 3)),
        ("", "0", (True, 0)),
        ("abc", None, (True, None)),
        ("-1", None, (True, None)),
        ("1.5", None, (True, None)),
        ("\u0661", None, (True, None)),  # a non-ASCII digit
        ("9" * 30, None, (True, None)),
    ],
)
def test_parse_last_event_id(
    header: str | None, query: str | None, expected: tuple[bool, int | None]
) -> None:
    assert parse_last_event_id(header, query) == expected


def test_event_model() -> None:
    data = event_data("file.changed", "p1", path="a.txt")
    assert list(data)[:3] == ["type", "project_id", "at"]
    assert data["path"] == "a.txt"
    event = new_event("step.started", "p1", run_id="r1", step_id="s", attempt=1)
    assert event.type == "step.started"
    assert event.data["run_id"] == "r1"
    with pytest.raises(ValueError, match="transient"):
        new_event("step.delta", "p1", run_id="r1")
    assert not is_retained("step.delta")
    assert is_retained("file.changed")
    assert run_id_of("step.started", dumps({"run_id": "r1"})) == "r1"
    assert run_id_of("step.delta", {"run_id": "r2"}) == "r2"
    assert run_id_of("file.changed", {"run_id": "r1"}) is None
    assert run_id_of("run.created", "not json") is None
    assert run_id_of("run.created", "[1]") is None


def test_decoder_handles_split_chunks_comments_and_retry() -> None:
    decoder = SSEDecoder()
    stream = (
        RETRY_FRAME + PING_FRAME + b"id: 1\nevent: a\ndata: x\ndata: y\n\n" + b"data: z\r\n\r\n"
    )
    messages = []
    for i in range(len(stream)):
        messages += decoder.feed(stream[i : i + 1])
    assert decoder.retry == 3000
    assert decoder.comments == ["ping"]
    assert [(m.id, m.event, m.data) for m in messages] == [
        ("1", "a", "x\ny"),
        (None, "message", "z"),
    ]


_TEXT = st.characters(exclude_categories=["Cs"])


def test_lone_surrogate_does_not_break_publishing() -> None:
    frame = encode_transient({"type": "step.delta", "text": "a\ud800b"})
    assert frame == b'event: step.delta\ndata: {"type":"step.delta","text":"a?b"}\n\n'


@given(
    event_type=st.text(
        st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
        min_size=1,
        max_size=20,
    ),
    payload=st.dictionaries(st.text(_TEXT, max_size=10), st.text(_TEXT, max_size=30), max_size=5),
    seq=st.one_of(st.none(), st.integers(min_value=0, max_value=2**62)),
)
def test_encode_then_decode_round_trips(
    event_type: str, payload: dict[str, str], seq: int | None
) -> None:
    data = dumps(payload)
    messages = SSEDecoder().feed(encode_frame(event_type, data, seq))
    assert len(messages) == 1
    assert json.loads(messages[0].data) == payload
    assert messages[0].id == (None if seq is None else str(seq))
