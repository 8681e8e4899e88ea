"""Users and refresh tokens: the contract on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import trio

from server.errors import EmailTaken
from server.store.models import RefreshOutcome, RefreshUse
from server.timeutil import new_id, utc_now

if TYPE_CHECKING:
    from server.store.models import User
    from server.store.protocol import Store


async def test_create_and_get_user(store: Store) -> None:
    created = await store.create_user("  Ada@Example.COM ", "argon2-hash", "Ada")
    assert created.email == "ada@example.com"
    assert created.created_at.utcoffset() == timedelta(0)
    fetched = await store.get_user(created.id)
    assert fetched == created
    by_email = await store.get_user_by_email("ADA@example.com")
    assert by_email is not None
    assert by_email.password_hash == "argon2-hash"
    assert await store.get_user(new_id()) is None
    assert await store.get_user_by_email("nobody@example.com") is None


async def test_duplicate_email_is_taken(store: Store, user: User) -> None:
    with pytest.raises(EmailTaken):
        await store.create_user("OWNER@example.com", None, None)


async def test_ensure_user_creates_once(store: Store) -> None:
    user_id = new_id()
    first = await store.ensure_user(user_id, "ext@example.com", "External")
    again = await store.ensure_user(user_id, "ext@example.com", "Renamed")
    assert first == again
    assert first.id == user_id
    assert first.password_hash is None
    with pytest.raises(EmailTaken):
        await store.ensure_user(new_id(), "ext@example.com", None)


async def _token(
    store: Store, user: User, *, ttl: timedelta = timedelta(days=1)
) -> tuple[str, str]:
    token_id, family_id = new_id(), new_id()
    await store.create_refresh_token(token_id, user.id, family_id, utc_now() + ttl)
    return token_id, family_id


async def test_refresh_first_use_ok_then_reuse_revokes_family(store: Store, user: User) -> None:
    token_id, family_id = await _token(store, user)
    sibling = new_id()  # the rotated token of the same family
    await store.create_refresh_token(sibling, user.id, family_id, utc_now() + timedelta(days=1))

    assert await store.use_refresh_token(token_id, utc_now()) == RefreshUse(
        RefreshOutcome.OK, user.id, family_id
    )
    reused = await store.use_refresh_token(token_id, utc_now())
    assert reused.outcome is RefreshOutcome.REUSED
    assert reused.family_id == family_id
    # the whole family is revoked: the sibling no longer works
    assert (await store.use_refresh_token(sibling, utc_now())).outcome is RefreshOutcome.INVALID


async def test_refresh_invalid_cases(store: Store, user: User) -> None:
    assert (await store.use_refresh_token("unknown", utc_now())).outcome is RefreshOutcome.INVALID
    expired, _ = await _token(store, user, ttl=timedelta(seconds=-1))
    assert (await store.use_refresh_token(expired, utc_now())).outcome is RefreshOutcome.INVALID
    revoked, family = await _token(store, user)
    await store.revoke_refresh_family(family)
    assert (await store.use_refresh_token(revoked, utc_now())).outcome is RefreshOutcome.INVALID


async def test_concurrent_double_use_yields_one_ok(store: Store, user: User) -> None:
    token_id, family_id = await _token(store, user)
    sibling = new_id()
    await store.create_refresh_token(sibling, user.id, family_id, utc_now() + timedelta(days=1))
    outcomes: list[RefreshOutcome] = []

    async def use() -> None:
        outcomes.append((await store.use_refresh_token(token_id, utc_now())).outcome)

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(use)
    assert sorted(outcomes) == sorted([RefreshOutcome.OK] + [RefreshOutcome.REUSED] * 3)
    assert (await store.use_refresh_token(sibling, utc_now())).outcome is RefreshOutcome.INVALID


async def test_logout_revokes_only_own_family(store: Store, user: User, other: User) -> None:
    mine, _ = await _token(store, user)
    theirs, _ = await _token(store, other)
    await store.revoke_refresh_token_family_of(theirs, user.id)  # not user's token: no effect
    assert (await store.use_refresh_token(theirs, utc_now())).outcome is RefreshOutcome.OK
    await store.revoke_refresh_token_family_of(mine, user.id)
    assert (await store.use_refresh_token(mine, utc_now())).outcome is RefreshOutcome.INVALID


async def test_refresh_family_active_follows_rotation_logout_and_expiry(
    store: Store, user: User, other: User
) -> None:
    now = utc_now()
    later = now + timedelta(days=1)
    family = new_id()
    assert not await store.refresh_family_active(family, user.id, now)  # no such family
    await store.create_refresh_token("t1", user.id, family, later)
    assert await store.refresh_family_active(family, user.id, now)
    assert not await store.refresh_family_active(family, other.id, now)  # not theirs
    assert not await store.refresh_family_active(family, user.id, later)  # expired
    assert (await store.use_refresh_token("t1", now)).outcome is RefreshOutcome.OK
    assert await store.refresh_family_active(family, user.id, now)  # mid-rotation: alive
    await store.create_refresh_token("t2", user.id, family, later)  # the rotation's new token
    assert await store.refresh_family_active(family, user.id, now)
    await store.revoke_refresh_token_family_of("t2", user.id)  # logout
    assert not await store.refresh_family_active(family, user.id, now)
    reused = new_id()
    await store.create_refresh_token("r1", user.id, reused, later)
    await store.use_refresh_token("r1", now)
    assert (await store.use_refresh_token("r1", now)).outcome is RefreshOutcome.REUSED
    assert not await store.refresh_family_active(reused, user.id, now)  # reuse revokes
