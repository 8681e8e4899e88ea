"""Ids and timestamps (``server.timeutil``): the formats other parts parse and sort on."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

from server.timeutil import new_id, parse_rfc3339, rfc3339


def test_new_id_is_a_canonical_uuidv7_ordered_by_creation() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]  # many within one millisecond: the counter runs
    after_ms = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert [str(u) for u in parsed] == ids  # canonical: lower-case hex, dashes at 8-4-4-4-12
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    stamps = [u.int >> 80 for u in parsed]
    assert before_ms <= stamps[0]
    assert stamps[-1] <= after_ms + 2  # 5,000 ids borrow at most 2 ms (4,096 per ms)


def test_rfc3339_is_utc_with_microseconds_and_z() -> None:
    moment = datetime(2026, 11, 29, 11, 18, 39, 123456, tzinfo=UTC)
    assert rfc3339(moment) == "2026-11-29T11:18:39.123456Z"
    assert rfc3339(moment.replace(microsecond=0)) == "2026-11-29T11:18:39.000000Z"
    local = moment.astimezone(timezone(timedelta(hours=2)))  # the same instant elsewhere
    assert rfc3339(local) == "2026-11-29T11:18:39.123456Z"
    assert parse_rfc3339(rfc3339(local)) == moment
