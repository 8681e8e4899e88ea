"""Ids and timestamps: UUIDv7 ids (sortable by creation) and RFC 3339 UTC strings."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

SECONDS = 1.0
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
DAYS = 24 * HOURS


_last_ms = 0
_last_counter = 0


def new_id() -> str:
    """A UUIDv7 as a string: time-ordered, so ids sort by creation.

    Within one millisecond the 12-bit ``rand_a`` field is a counter (RFC 9562, method 1),
    so ids made by this process are strictly increasing.
    """
    global _last_ms, _last_counter
    ms = time.time_ns() // 1_000_000
    if ms <= _last_ms:
        ms = _last_ms
        _last_counter += 1
        if _last_counter > 0xFFF:  # counter exhausted: borrow the next millisecond
            ms += 1
            _last_counter = 0
    else:
        _last_counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
    _last_ms = ms
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= _last_counter << 64
    value |= 0b10 << 62
    value |= rand_b
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without building the UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """``2026-11-29T11:18:39.123456Z``: UTC, microseconds, a ``Z`` suffix."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # drops "+00:00"


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
