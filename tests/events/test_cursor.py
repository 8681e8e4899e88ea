"""``ReplayCursor`` (pure): arbitrary interleavings of replay pages, live frames, gaps,
duplicates and failed reads give exactly the committed sequence, once, in order."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from server.events.cursor import Fast, ReplayCursor
from server.events.model import StoredEvent, dumps, run_id_of
from server.events.sink import Frame
from server.events.sse import encode_stored

AT = datetime(2026, 1, 2, tzinfo=UTC)
PID = "p1"


def stored(seq: int, run: str | None) -> StoredEvent:
    if run is None:
        data = {"type": "file.changed", "project_id": PID, "at": "x", "path": f"f{seq}"}
        return StoredEvent(PID, seq, "file.changed", dumps(data), AT)
    data = {"type": "run.planning", "project_id": PID, "at": "x", "run_id": run}
    return StoredEvent(PID, seq, "run.planning", dumps(data), AT)


def frame_of(event: StoredEvent) -> Frame:
    return Frame(event.seq, run_id_of(event.type, event.data), encode_stored(event))


def delta(n: int) -> Frame:
    return Frame(None, None, f"event: step.delta\ndata: {n}\n\n".encode())


def parse(out: list[bytes]) -> tuple[list[int], list[int], list[str]]:
    """(committed ids, transient numbers, event types) in the order written."""
    text = b"".join(out).decode()
    ids: list[int] = []
    deltas: list[int] = []
    types: list[str] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        kind = re.search(r"^event: (.*)$", block, re.M)
        assert kind is not None
        types.append(kind.group(1))
        ident = re.search(r"^id: (\d+)$", block, re.M)
        if ident is not None:
            ids.append(int(ident.group(1)))
        else:
            deltas.append(int(block.rsplit("data: ", 1)[1]))
    return ids, deltas, types


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(0, 30))
    runs = draw(st.lists(st.sampled_from([None, "r1", "r2"]), min_size=n, max_size=n))
    log = [stored(i + 1, run) for i, run in enumerate(runs)]
    run_filter = draw(st.sampled_from([None, "r1"]))
    start = draw(st.integers(0, n))  # the client's Last-Event-ID
    subscribed_at = draw(st.integers(0, n))  # the hub's last seq when the stream subscribed
    visible_at_start = draw(st.integers(subscribed_at, n))  # committed when replay begins
    # What the hub delivers after the subscription: every seq after ``subscribed_at`` in
    # order, run-filtered like the hub does, some skipped (announced with a gap notice;
    # unfiltered streams may also see a silent jump), some repeated, transients between.
    live: list[Frame] = []
    skipping = False
    deltas = 0
    for event in log[subscribed_at:]:
        if draw(st.booleans()) and draw(st.booleans()):
            skipping = True
            continue
        if skipping and (run_filter is not None or draw(st.booleans())):
            live.append(Frame(None, None, b"", gap_before=event.seq))
        skipping = False
        frame = frame_of(event)
        if run_filter is None or frame.run_id == run_filter:
            live.append(frame)
            if draw(st.integers(0, 5)) == 0:
                live.append(frame)  # a duplicate
        if draw(st.integers(0, 3)) == 0:
            live.append(delta(deltas))
            deltas += 1
    ops = draw(st.lists(st.sampled_from(["live", "read", "fail"]), max_size=80))
    page_size = draw(st.integers(1, 6))
    return {
        "log": log,
        "run": run_filter,
        "start": start,
        "visible": visible_at_start,
        "live": live,
        "ops": ops,
        "page": page_size,
        "deltas": deltas,
    }


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_exactly_the_committed_sequence_once_in_order(case: dict[str, object]) -> None:
    log: list[StoredEvent] = case["log"]  # type: ignore[assignment]
    live: list[Frame] = list(case["live"])  # type: ignore[call-overload]
    run: str | None = case["run"]  # type: ignore[assignment]
    start: int = case["start"]  # type: ignore[assignment]
    visible: int = case["visible"]  # type: ignore[assignment]
    page_size: int = case["page"]  # type: ignore[assignment]
    cursor = ReplayCursor(PID, run, start)
    out: list[bytes] = []

    def read() -> None:
        after = cursor.position
        page = [e for e in log[:visible] if e.seq > after][:page_size]
        out.extend(cursor.page(page, complete=len(page) < page_size))

    def next_live() -> None:
        nonlocal visible
        frame = live.pop(0)
        # Delivered, so committed; a gap notice: the hub held the seq after the gap.
        visible = max(visible, frame.seq or 0, frame.gap_before or 0)
        if cursor.fast(frame) is Fast.WRITE:  # the direct path, as Subscription.offer does
            out.append(frame.data)
            cursor.advance(frame)
        elif cursor.fast(frame) is Fast.SKIP:
            pass
        else:
            out.extend(cursor.live(frame))

    for op in case["ops"]:  # type: ignore[attr-defined]
        if op == "live" and live:
            next_live()
        elif op == "read":
            read()
        # "fail": a read that raised changes nothing
    while cursor.replaying:
        read()
    while live:
        next_live()
    while cursor.fill_after is not None:
        read()

    ids, deltas, types = parse(out)
    end = max(cursor.position, start)
    expected = [
        e.seq
        for e in log
        if start < e.seq <= end and (run is None or run_id_of(e.type, e.data) == run)
    ]
    assert "reset" not in types  # nothing was trimmed
    assert ids == expected
    assert deltas == list(range(case["deltas"]))  # type: ignore[call-overload]
    last_live = max((f.seq for f in case["live"] if f.seq is not None), default=0)  # type: ignore[attr-defined]
    assert cursor.position >= last_live


def test_a_hole_in_the_log_becomes_a_reset() -> None:
    cursor = ReplayCursor(PID, None, 2)
    out = cursor.page([stored(5, None), stored(6, None)], complete=True)
    assert parse(out)[2] == ["reset", "file.changed", "file.changed"]
    assert cursor.position == 6
    assert not cursor.replaying
    # A gap the log no longer holds (trimmed) is reset too, then the held frame follows.
    assert cursor.live(frame_of(stored(9, None))) == []
    assert cursor.fill_after == 6
    out = cursor.page([], complete=True)
    assert parse(out)[0:2] == ([8, 9], [])
    assert parse(out)[2] == ["reset", "file.changed"]
