"""RemoteKeySet on a mock clock: the JWKS endpoint is an ``httpx.MockTransport`` handler
(a fake server the real client talks to). The end-to-end cases with a socket server and a
running stretto are in test_jwks_url.py; here the rules are pinned exactly."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from server.auth.jwks import MAX_JWKS_BYTES, RemoteKeySet, parse_jwks, select_key
from server.errors import Unauthorized
from tests.auth import keys

KEY_A, KEY_B = keys.ec_key(), keys.ec_key()
TTL_S, MIN_REFRESH_S, TIMEOUT_S = 300.0, 10.0, 3.0


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class FakeAuthService:
    """Serves ``keys``; ``reply`` overrides the answer; ``delay`` seconds before it."""

    def __init__(self) -> None:
        self.keys = [keys.public_jwk(KEY_A, "a")]
        self.reply: httpx.Response | None = None
        self.delay = 0.0
        self.requests = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await trio.sleep(self.delay)
        if self.reply is not None:
            return self.reply
        return httpx.Response(200, json={"keys": self.keys})

    def key_set(self) -> RemoteKeySet:
        return RemoteKeySet(
            "https://auth.example/jwks",
            "ES256",
            ttl_s=TTL_S,
            min_refresh_s=MIN_REFRESH_S,
            timeout_s=TIMEOUT_S,
            transport=httpx.MockTransport(self),
        )


async def test_concurrent_unknown_kids_share_one_fetch(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    await nursery.start(remote.run)
    assert (service.requests, remote.kids) == (1, ["a"])
    service.keys.append(keys.public_jwk(KEY_B, "b"))
    service.delay = 1.0
    found: list[Any] = []

    async def ask() -> None:
        found.append(await remote.key_for("b"))

    async with trio.open_nursery() as inner:
        for _ in range(20):
            inner.start_soon(ask)
    assert len(found) == 20
    assert all(key.public_numbers() == KEY_B.public_key().public_numbers() for key in found)
    assert service.requests == 2


async def test_unknown_kids_are_refused_at_once_within_the_interval(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    await nursery.start(remote.run)
    with pytest.raises(Unauthorized):
        await remote.key_for("x1")  # one refresh, still unknown
    assert service.requests == 2
    for kid in ("x2", "x3", "x4"):
        started = trio.current_time()
        with pytest.raises(Unauthorized):
            await remote.key_for(kid)
        assert trio.current_time() == started  # no wait at all (mock clock)
    assert service.requests == 2
    await trio.sleep(MIN_REFRESH_S)
    with pytest.raises(Unauthorized):
        await remote.key_for("x5")
    assert service.requests == 3


async def test_a_hanging_fetch_is_bounded_and_keeps_the_keys(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    await nursery.start(remote.run)
    service.delay = 3600.0
    started = trio.current_time()
    with pytest.raises(Unauthorized):
        await remote.key_for("b")
    assert trio.current_time() - started <= TIMEOUT_S + 0.01
    assert remote.lookup("a") is not None
    await trio.sleep(0.01)  # the fetch's own timeout may fire just after the waiter's
    assert remote.failures == 1


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(500, json={"error": "down"}),
        httpx.Response(404, text="not here"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"no": "keys"}),
        httpx.Response(200, json={"keys": [keys.public_jwk(keys.rsa_key(), "rsa")]}),
        httpx.Response(200, content=b" " * (MAX_JWKS_BYTES + 1)),
    ],
)
async def test_bad_answers_keep_the_last_good_set(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, reply: httpx.Response
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    await nursery.start(remote.run)
    service.reply = reply
    await trio.sleep(TTL_S + 1)  # the background refresh ran and failed
    assert (service.requests, remote.failures, remote.kids) == (2, 1, ["a"])
    await trio.sleep(MIN_REFRESH_S + 1)  # after a failure it retries sooner than the TTL
    assert service.requests == 3
    assert remote.lookup("a") is not None


async def test_the_set_is_refreshed_every_ttl(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    await nursery.start(remote.run)
    service.keys = [keys.public_jwk(KEY_B, "b")]
    await trio.sleep(TTL_S - 1)
    assert remote.kids == ["a"]
    await trio.sleep(2)
    assert (service.requests, remote.kids) == (2, ["b"])


async def test_waiters_are_released_when_the_refresher_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service = FakeAuthService()
    remote = service.key_set()
    outcome: list[str] = []

    async def ask() -> None:
        try:
            await remote.key_for("b")
        except Unauthorized:
            outcome.append("unauthorized")

    async with trio.open_nursery() as nursery:
        refresher = trio.CancelScope()

        async def refresh(task_status: trio.TaskStatus[None]) -> None:
            with refresher:
                await remote.run(task_status=task_status)

        await nursery.start(refresh)
        service.delay = 3600.0
        nursery.start_soon(ask)
        await trio.sleep(0.5)
        refresher.cancel()
    assert outcome == ["unauthorized"]
    with pytest.raises(Unauthorized):  # not running: no refresh, refused at once
        await remote.key_for("b")


def test_parse_and_select() -> None:
    document = json.loads(
        json.dumps({"keys": [keys.public_jwk(KEY_A, "a"), {"kty": "oct", "k": "c2VjcmV0"}]})
    )
    found = parse_jwks(document, "ES256", "test")
    assert list(found) == ["a"]
    assert select_key(found, "a") is found["a"]
    assert select_key(found, None) is found["a"]  # one key: a token without kid uses it
    assert select_key(found, "b") is None
    two = {**found, "b": found["a"]}
    assert select_key(two, None) is None
