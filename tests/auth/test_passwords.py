"""PasswordHasher: argon2id in worker threads, bounded by its limiter."""

from __future__ import annotations

import threading

import trio

from server.auth.passwords import PasswordHasher


def fast_hasher(limiter: trio.CapacityLimiter | None = None) -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, limiter=limiter)


async def test_hash_and_verify() -> None:
    hasher = fast_hasher()
    hashed = await hasher.hash("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert "correct horse" not in hashed
    assert await hasher.verify(hashed, "correct horse battery")
    assert not await hasher.verify(hashed, "correct horse battery!")
    assert await hasher.hash("correct horse battery") != hashed  # salted


async def test_malformed_hash_is_a_mismatch_not_an_error() -> None:
    hasher = fast_hasher()
    assert not await hasher.verify("not-a-hash", "whatever")
    assert not await hasher.verify("", "whatever")


async def test_default_parameters_are_argon2id() -> None:
    hashed = await PasswordHasher().hash("pw-12345678")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not fast_hasher().needs_rehash(await fast_hasher().hash("x"))
    assert PasswordHasher().needs_rehash(await fast_hasher().hash("x"))


async def test_work_runs_off_the_event_loop_thread_under_the_limiter() -> None:
    limiter = trio.CapacityLimiter(1)
    hasher = fast_hasher(limiter)
    loop_thread = threading.get_ident()
    seen: list[int] = []
    inner = hasher._hasher

    class RecordingHasher:
        def hash(self, password: str) -> str:
            seen.append(threading.get_ident())
            assert limiter.borrowed_tokens == 1
            return inner.hash(password)

    hasher._hasher = RecordingHasher()  # type: ignore[assignment]
    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(hasher.hash, f"password-{i}")
    assert len(seen) == 3
    assert loop_thread not in seen


async def test_verify_dummy_spends_a_verify() -> None:
    hasher = fast_hasher()
    calls: list[str] = []
    original = hasher._verify_sync

    def spy(hashed: str, password: str) -> bool:
        calls.append(password)
        return original(hashed, password)

    hasher._verify_sync = spy  # type: ignore[method-assign]
    await hasher.verify_dummy("guess-1")
    await hasher.verify_dummy("guess-2")
    assert calls == ["guess-1", "guess-2"]
