"""The fair limiter's core (pure, hypothesis) and its trio wrapper (mock clock)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from server.fairness import FairLimiter, FairQueue

USERS = ["a", "b", "c", "d"]

op = st.one_of(
    st.tuples(st.just("req"), st.sampled_from(USERS)),
    st.tuples(st.just("rel"), st.integers(0, 1000)),
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
)


@settings(max_examples=400, deadline=None)
@given(total=st.integers(1, 4), backlog=st.integers(0, 40), ops=st.lists(op, max_size=120))
def test_a_backlog_delays_a_first_acquisition_by_at_most_one_turnover(
    total: int, backlog: int, ops: list[tuple[str, object]]
) -> None:
    """User ``a`` queues ``backlog`` requests; then anything happens. Whenever a user holding
    no slot asks for one, it is granted within 1 + k releases, where k counts the other
    slot-less users already waiting: never later because of how much anyone queued."""
    queue: FairQueue[int] = FairQueue(total)
    ids = itertools.count()
    holders: list[str] = []  # one entry per held slot
    waiting: dict[int, str] = {}
    # token -> (releases still allowed before it must be granted)
    promises: dict[int, int] = {}

    def check_invariants() -> None:
        stats = queue.statistics()
        assert stats.borrowed == len(holders) <= total
        assert sum(stats.held_by.values()) == stats.borrowed
        assert stats.waiting == len(waiting)
        if stats.borrowed < total:
            assert stats.waiting == 0  # never a free slot while someone waits

    def request(user: str) -> None:
        token = next(ids)
        slotless_waiting = {u for u in waiting.values() if queue.held(u) == 0} - {user}
        first = queue.held(user) == 0 and user not in waiting.values()
        if queue.request(user, token):
            holders.append(user)
            return
        waiting[token] = user
        if first:
            promises[token] = 1 + len(slotless_waiting)

    def release(index: int) -> None:
        if not holders:
            return
        user = holders.pop(index % len(holders))
        granted = queue.release(user)
        for token in promises:
            promises[token] -= 1
        if granted is not None:
            granted_user, token = granted
            assert waiting.pop(token) == granted_user
            holders.append(granted_user)
            promises.pop(token, None)
        for token, left in promises.items():
            assert left > 0, f"{waiting[token]} waited past its bound"

    for _ in range(backlog):
        request("a")
    check_invariants()
    for kind, arg in ops:
        if kind == "req":
            assert isinstance(arg, str)
            request(arg)
        elif kind == "rel":
            assert isinstance(arg, int)
            release(arg)
        else:
            assert isinstance(arg, int)
            if waiting:
                token = sorted(waiting)[arg % len(waiting)]
                assert queue.cancel(waiting.pop(token), token)
                promises.pop(token, None)
        check_invariants()


def test_each_user_is_served_in_its_own_arrival_order() -> None:
    queue: FairQueue[str] = FairQueue(1)
    assert queue.request("a", "a0")
    for token in ("a1", "a2", "a3"):
        assert not queue.request("a", token)
    assert not queue.request("b", "b1")
    assert not queue.request("b", "b2")
    order = []
    user = "a"
    while (granted := queue.release(user)) is not None:
        user, token = granted
        order.append(token)
    assert order == ["b1", "a1", "b2", "a2", "a3"]  # alternating; FIFO within a user


def test_release_without_a_slot_is_a_bug() -> None:
    queue: FairQueue[str] = FairQueue(2)
    with pytest.raises(RuntimeError):
        queue.release("nobody")
    with pytest.raises(ValueError, match="at least one slot"):
        FairQueue(0)


async def test_trio_limiter_serves_the_idle_user_next_and_survives_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = FairLimiter(1)
    started: list[str] = []

    async def work(user: str, name: str) -> None:
        async with limiter.slot(user):
            started.append(name)
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(work, "flood", f"flood{i}")
            await trio.testing.wait_all_tasks_blocked()
        cancelled = trio.CancelScope()

        async def doomed() -> None:
            with cancelled:
                await work("flood", "doomed")

        nursery.start_soon(doomed)
        await trio.sleep(0.5)
        nursery.start_soon(work, "victim", "victim")
        await trio.sleep(0.1)
        cancelled.cancel()  # a waiter leaves: nothing is lost
    assert started[:2] == ["flood0", "victim"]
    assert "doomed" not in started
    assert sorted(started) == sorted([*(f"flood{i}" for i in range(5)), "victim"])
    assert limiter.statistics().borrowed == 0


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)
