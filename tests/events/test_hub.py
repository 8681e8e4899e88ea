"""EventHub: fan-out on bounded memory channels, ordering, slow subscribers, statistics."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import pytest
import trio

from server.errors import ShuttingDown
from server.events.hub import EventHub, Frame, Subscription
from server.events.model import StoredEvent, dumps

AT = datetime(2026, 1, 2, tzinfo=UTC)


def event(seq: int, project: str = "p1", type_: str = "file.changed", **extra: str) -> StoredEvent:
    data = {"type": type_, "project_id": project, "at": "x", "n": seq, **extra}
    return StoredEvent(project, seq, type_, dumps(data), AT)


def drain(subscription: Subscription) -> list[Frame]:
    frames = []
    while True:
        try:
            frames.append(subscription.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return frames


def seqs(frames: list[Frame]) -> list[int | None]:
    return [f.seq for f in frames]


async def test_fan_out_shares_one_encoded_frame() -> None:
    hub = EventHub(buffer=8)
    with hub.subscribe("p1") as a, hub.subscribe("p1") as b, hub.subscribe("p2") as other:
        hub.publish([event(1), event(2)])
        fa, fb = drain(a), drain(b)
        assert seqs(fa) == [1, 2]
        assert fa[0].data.startswith(b"id: 1\nevent: file.changed\ndata: {")
        assert fa[0] is fb[0]  # the same object, encoded once
        assert fa[0].data is fb[0].data
        assert drain(other) == []
        stats = hub.statistics()
        assert (stats.subscribers, stats.projects, stats.published, stats.delivered) == (3, 2, 2, 4)
    assert hub.statistics().subscribers == 0
    assert hub.statistics().projects == 0


async def test_publish_without_subscribers_is_counted_only() -> None:
    hub = EventHub(buffer=1)
    hub.publish([event(1)])
    hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1"})
    stats = hub.statistics()
    assert (stats.published, stats.delivered) == (2, 0)
    assert hub.take_active_projects() == {"p1"}
    assert hub.take_active_projects() == set()


async def test_slow_subscriber_is_closed_others_keep_receiving() -> None:
    hub = EventHub(buffer=2)
    with hub.subscribe("p1") as slow, hub.subscribe("p1") as fast:
        for seq in range(1, 6):
            hub.publish([event(seq)])
            assert seqs(drain(fast)) == [seq]
        assert slow.closed_as_slow
        assert slow.closed_reason == "slow"
        # The slow one reads what was queued, then its stream ends.
        assert seqs(drain(slow)) == [1, 2]
        with pytest.raises(trio.EndOfChannel):
            slow.receive_nowait()
        assert not fast.closed_as_slow
        stats = hub.statistics()
        assert stats.dropped == 1
        assert stats.subscribers == 1
        hub.publish([event(6)])
        assert seqs(drain(fast)) == [6]


async def test_out_of_order_and_duplicate_publish_delivered_in_order_once() -> None:
    hub = EventHub(buffer=16)
    with hub.subscribe("p1") as sub:
        hub.set_baseline("p1", 0)
        hub.publish([event(1)])
        hub.publish([event(3), event(4)])  # 2 is late: 3 and 4 are held
        assert seqs(drain(sub)) == [1]
        hub.publish([event(1)])  # duplicate (local publish + NOTIFY)
        hub.publish([event(3)])  # duplicate of a held one
        hub.publish([event(2)])
        assert seqs(drain(sub)) == [2, 3, 4]
        hub.publish([event(4), event(2), event(5)])
        assert seqs(drain(sub)) == [5]
        assert hub.statistics().duplicates == 4


async def test_first_event_without_baseline_starts_the_sequence() -> None:
    hub = EventHub(buffer=16)
    with hub.subscribe("p1") as sub:
        hub.publish([event(7), event(8)])
        assert seqs(drain(sub)) == [7, 8]


async def test_gap_never_filled_is_skipped_when_too_many_are_held() -> None:
    hub = EventHub(buffer=64, max_pending=3)
    with hub.subscribe("p1") as sub:
        hub.set_baseline("p1", 0)
        for seq in (2, 3, 4):
            hub.publish([event(seq)])
        assert drain(sub) == []
        hub.publish([event(5)])  # over max_pending: give up on 1, and say so
        frames = drain(sub)
        assert seqs(frames) == [None, 2, 3, 4, 5]
        assert (frames[0].gap_before, frames[0].data) == (2, b"")  # the stream reads it
        hub.publish([event(1)])
        assert drain(sub) == []


async def test_run_filter_and_transient_frames() -> None:
    hub = EventHub(buffer=16)
    with hub.subscribe("p1") as everything, hub.subscribe("p1", run_id="r1") as run1:
        hub.publish(
            [
                event(1, type_="run.created", run_id="r1"),
                event(2, type_="run.created", run_id="r2"),
                event(3, type_="file.changed", run_id="r1"),
                event(4, type_="step.started", run_id="r1"),
            ]
        )
        hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1", "run_id": "r1"})
        hub.publish_transient("p1", {"type": "step.delta", "project_id": "p1", "run_id": "r2"})
        assert seqs(drain(everything)) == [1, 2, 3, 4, None, None]
        filtered = drain(run1)
        assert seqs(filtered) == [1, 4, None]
        assert filtered[2].data.startswith(b"event: step.delta\ndata: ")


async def test_close_project_and_close_all_end_streams() -> None:
    hub = EventHub(buffer=4)
    with hub.subscribe("p1") as a, hub.subscribe("p2") as b:
        hub.publish_transient("p1", {"type": "project.deleted", "project_id": "p1"})
        hub.close_project("p1")
        assert [f.data[:22] for f in drain(a)] == [b"event: project.deleted"]
        with pytest.raises(trio.EndOfChannel):
            await a.receive()
        assert a.closed_reason == "project_deleted"
        hub.close_all()
        with pytest.raises(trio.EndOfChannel):
            await b.receive()
        assert b.closed_reason == "shutdown"
    with pytest.raises(ShuttingDown), hub.subscribe("p1"):
        pass  # pragma: no cover


async def test_memory_stays_bounded_with_a_stalled_subscriber() -> None:
    hub = EventHub(buffer=4)
    with hub.subscribe("p1") as stalled:
        for seq in range(1, 2001):
            hub.publish([event(seq)])
        assert stalled.closed_as_slow
        assert stalled.receive_channel.statistics().current_buffer_used == 4
    gc.collect()
    assert hub.statistics().subscribers == 0
    assert hub.statistics().dropped == 1
