"""Coalesced writes: one project's ``step.delta`` frames of one tick go out as one frame per
run, flushed before anything else of the project; one commit's events go to an armed stream
in one write. In publication order, each once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from server.events.coalesce import combined
from server.events.cursor import ReplayCursor
from server.events.hub import EventHub
from server.events.model import NewEvent, StoredEvent, dumps
from server.events.sink import WriteResult
from server.events.sse import encode_stored, encode_transient
from server.events.subscription import FLUSH
from tests.events.sse_client import open_stream
from tests.events.test_hub import drain, event
from tests.events.test_sse_direct import armed
from tests.events.test_sse_endpoint import setup
from tests.events.test_subscription import ScriptedWriter, ready_cursor

if TYPE_CHECKING:
    import httpx

    from tests.fixtures.server import RunningServer


def delta(n: int, run: str = "r1", project: str = "p1") -> dict[str, Any]:
    return {"type": "step.delta", "project_id": project, "run_id": run, "step_id": "s", "n": n}


def test_combined_joins_consecutive_frames_of_one_run_in_order() -> None:
    held = [("r1", b"a"), ("r1", b"b"), ("r2", b"c"), (None, b"d"), ("r1", b"e"), ("r1", b"f")]
    frames = list(combined(held))
    assert [(f.run_id, f.data, f.events, f.seq) for f in frames] == [
        ("r1", b"ab", 2, None),
        ("r2", b"c", 1, None),
        (None, b"d", 1, None),
        ("r1", b"ef", 2, None),
    ]
    assert list(combined([])) == []


async def test_the_deltas_of_one_tick_reach_a_subscriber_as_one_frame() -> None:
    hub = EventHub(buffer=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with hub.subscribe("p1") as sub, hub.subscribe("p1", run_id="r2") as only_r2:
            for n in range(5):
                hub.publish_transient("p1", delta(n))
            hub.publish_transient("p1", delta(5, run="r2"))
            assert drain(sub) == []  # held until the tick ends
            await wait_all_tasks_blocked()
            frames = drain(sub)
            assert [(f.run_id, f.events) for f in frames] == [("r1", 5), ("r2", 1)]
            assert frames[0].data == b"".join(encode_transient(delta(n)) for n in range(5))
            assert [f.data for f in drain(only_r2)] == [encode_transient(delta(5, run="r2"))]
            stats = hub.statistics()
            assert (stats.published, stats.delivered) == (6, 6 + 1)  # per event, per sink
        nursery.cancel_scope.cancel()


async def test_held_deltas_go_before_a_committed_event_published_after_them() -> None:
    hub = EventHub(buffer=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with hub.subscribe("p1") as sub:
            hub.publish_transient("p1", delta(0))
            hub.publish([event(1)])
            hub.publish_transient("p1", delta(1))
            await wait_all_tasks_blocked()
            frames = drain(sub)
            assert [(f.seq, f.data) for f in frames] == [
                (None, encode_transient(delta(0))),
                (1, frames[1].data),
                (None, encode_transient(delta(1))),
            ]
        nursery.cancel_scope.cancel()


async def test_ending_a_project_or_the_hub_flushes_what_is_held() -> None:
    hub = EventHub(buffer=8)
    other = hub.open_subscription("p2")
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        with hub.subscribe("p1") as sub:
            hub.publish_transient("p1", delta(0))
            hub.end_project("p1")
            assert [f.events for f in drain(sub)] == [1]
            assert sub.closed_reason == "project_deleted"
        hub.publish_transient("p2", delta(1, project="p2"))
        nursery.cancel_scope.cancel()  # the hub's service ends: it flushes on the way out
    assert [f.events for f in drain(other)] == [1]
    other.close("unsubscribed")


async def test_without_the_hub_service_each_delta_goes_out_at_once() -> None:
    hub = EventHub(buffer=8)
    with hub.subscribe("p1") as sub:
        hub.publish_transient("p1", delta(0))
        hub.publish_transient("p1", delta(1))
        assert [f.data for f in drain(sub)] == [encode_transient(delta(n)) for n in (0, 1)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the hub's part: one backend
async def test_a_parked_stream_gets_a_tick_of_deltas_and_events_once_in_order(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    # Real server and socket: deltas and a committed event published in one tick reach an
    # idle (parked, direct-write) HTTP/1.1 stream complete, once each, in publication order.
    hub = server.services.hub
    user, pid = await setup(client)
    async with open_stream(client, pid, user.headers) as stream:
        await armed(server)
        body = {"type": "file.changed", "project_id": pid, "at": "x", "path": "a.txt"}
        stored = await server.services.store.append_events([NewEvent(pid, "file.changed", body)])
        before = hub.statistics().direct_writes
        for i in range(4):
            hub.publish_transient(pid, {**delta(i), "project_id": pid})
        hub.publish(stored)
        for i in range(4, 8):
            hub.publish_transient(pid, {**delta(i), "project_id": pid})
        messages = await stream.take(9)
        assert [m.event for m in messages] == ["step.delta"] * 4 + ["file.changed"] + [
            "step.delta"
        ] * 4
        assert [json.loads(m.data)["n"] for m in messages if m.event == "step.delta"] == list(
            range(8)
        )
        assert messages[4].id == str(stored[0].seq)
        assert hub.statistics().direct_writes - before == 9  # counted per event
        await armed(server)  # parked again: nothing was left queued


def stored(seq: int, run: str | None = None) -> StoredEvent:
    type_ = "step.started" if run else "file.changed"
    data = {"type": type_, "project_id": "p1", "at": "x", "n": seq, "run_id": run}
    return StoredEvent("p1", seq, type_, dumps(data), datetime(2026, 1, 2, tzinfo=UTC))


async def test_one_commits_events_go_to_an_armed_stream_in_one_write() -> None:
    hub = EventHub(buffer=8)
    writer = ScriptedWriter(WriteResult.WRITTEN, WriteResult.WRITTEN)
    with hub.subscribe("p1") as sub:
        cursor = ready_cursor(0)
        sub.arm(writer, cursor)
        events = [stored(1), stored(2), stored(3)]
        hub.publish(events)
        assert writer.written == [b"".join(encode_stored(e) for e in events)]
        assert cursor.position == 3
        assert drain(sub) == []
        stats = hub.statistics()
        assert (stats.direct_writes, stats.delivered) == (3, 3)
        hub.publish([stored(4)])  # still armed: the next one goes straight through too
        assert writer.written[-1] == encode_stored(stored(4))


async def test_a_refused_or_partial_joined_write_keeps_every_frame_in_order() -> None:
    hub = EventHub(buffer=8)
    refused = ScriptedWriter(WriteResult.REFUSED)
    held = ScriptedWriter(WriteResult.HELD)
    with hub.subscribe("p1") as a, hub.subscribe("p1") as b:
        cursor_a, cursor_b = ready_cursor(0), ready_cursor(0)
        a.arm(refused, cursor_a)
        b.arm(held, cursor_b)
        hub.publish([stored(1), stored(2)])
        # Refused: nothing went; both queued in order, for the stream's task (cursor kept).
        assert [f.seq for f in drain(a)] == [1, 2]
        assert cursor_a.position == 0
        # Partly written: the writer holds the rest; the stream's task flushes it.
        assert drain(b) == [FLUSH]
        assert cursor_b.position == 2
        hub.publish([stored(3)])  # both disarmed: queued behind
        assert [f.seq for f in drain(a)] == [3]
        assert [f.seq for f in drain(b)] == [3]


async def test_frames_a_stream_cannot_take_in_one_write_go_one_by_one() -> None:
    hub = EventHub(buffer=8)
    behind = ScriptedWriter(WriteResult.WRITTEN, WriteResult.WRITTEN)
    filtered = ScriptedWriter(WriteResult.WRITTEN)
    with hub.subscribe("p1") as sub, hub.subscribe("p1", run_id="r1") as only_r1:
        sub.arm(behind, ready_cursor(1))  # already has seq 1: it is skipped
        r1_cursor = ReplayCursor("p1", "r1", 0)
        assert r1_cursor.page([], complete=True) == []
        only_r1.arm(filtered, r1_cursor)  # other runs' frames are not for it
        hub.publish([stored(1), stored(2, "r1"), stored(3)])
        assert behind.written == [encode_stored(stored(2, "r1")), encode_stored(stored(3))]
        assert filtered.written == [encode_stored(stored(2, "r1"))]
