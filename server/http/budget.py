"""A bound on the request-body bytes that all connections of a worker hold at once.

hypercorn hands every received body chunk to the application at once and quart buffers it
(``request.body``) whether the route reads it yet or not, so a slow or stalled upload holds
its bytes until the request ends. ``BodyBudget`` counts them: a request reserves its
declared ``Content-Length`` when its head arrives (refused when it does not fit), a chunked
body is counted as it arrives, and everything a request held is given back when its stream
closes. Pure bookkeeping: no I/O, no trio.

Memory back to the OS once bodies are gone: glibc raises its mmap threshold after the first
large free, so later large bodies live on the heap, whose free pages it keeps.
``pin_mmap_threshold`` (called once at install) keeps large buffers in their own mappings,
and when the count falls back to zero after large bodies ``malloc_trim`` returns the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

# Trim the heap only after this many body bytes went through since the last trim.
TRIM_AFTER_BYTES: Final = 8 * 1024 * 1024


# glibc's mallopt parameter and its default value (the dynamic threshold starts there).
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 128 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


_LIBC = _libc()


def pin_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at its default (allocations above it get their own mapping,
    unmapped when freed). False where the C library is not glibc."""
    return _LIBC is not None and _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


def malloc_trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class BodyBudget:
    """Body bytes in flight across connections, at most ``limit``.

    ``reserve(n)`` -> False when ``n`` more bytes do not fit (the caller refuses the request);
    ``add(n)`` counts bytes that arrived beyond a reservation and returns False past the limit;
    ``release(n)`` gives bytes back.
    """

    __slots__ = ("_since_trim", "in_flight", "limit", "trims")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.trims = 0
        self._since_trim = 0

    def reserve(self, size: int) -> bool:
        if self.in_flight + size > self.limit:
            return False
        self.in_flight += size
        self._since_trim += size
        return True

    def add(self, size: int) -> bool:
        self.in_flight += size
        self._since_trim += size
        return self.in_flight <= self.limit

    def release(self, size: int) -> None:
        self.in_flight = max(0, self.in_flight - size)
        if self.in_flight == 0 and self._since_trim >= TRIM_AFTER_BYTES:
            self._since_trim = 0
            self.trims += 1
            malloc_trim()
