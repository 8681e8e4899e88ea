"""``content_sha256``: the hex SHA-256 of file contents, off the event loop when large."""

from __future__ import annotations

import hashlib

import trio

_HASH_INLINE_BYTES = 64 * 1024
_hash_limiter = trio.CapacityLimiter(2)


async def content_sha256(content: bytes) -> str:
    """The hex SHA-256 of ``content``; large contents are hashed in a worker thread (hashlib
    releases the GIL), so a 5 MB upload does not hold the event loop."""
    if len(content) <= _HASH_INLINE_BYTES:
        return hashlib.sha256(content).hexdigest()
    return await trio.to_thread.run_sync(
        lambda: hashlib.sha256(content).hexdigest(), limiter=_hash_limiter
    )
