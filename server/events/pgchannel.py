"""The PostgreSQL notification channel: its payloads, and the ``RunControl`` capability.

The one file that knows what travels on ``EVENTS_CHANNEL``; the store writes payloads with
the encoders below (or ``committed_payload_sql`` inside its SQL), the bus
(``server.events.pgbus``) reads them with ``parse``. Payloads:

- ``'<project_id>:<last seq>'``: events up to that seq are committed (``Committed``);
- ``'<project_id>:deleted'``: the project is gone, end its streams (``Deleted``);
- ``'<project_id>:cancel:<run_id>'``: the instance executing the run cancels it (``Cancel``);
- ``'~<project_id>\n<json>'``: a transient event (``step.delta``) as is (``Transient``), sent
  by the bus of the instance that published it; at most ``MAX_PAYLOAD`` bytes (PostgreSQL's
  NOTIFY limit), a larger one is not carried.

Pure: no I/O, no driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

EVENTS_CHANNEL = "stretto_events"
DELETED_TAG = "deleted"
CANCEL_TAG = "cancel"
TRANSIENT_PREFIX = "~"  # never the first character of a project id
MAX_PAYLOAD = 7999  # bytes: PostgreSQL refuses a NOTIFY payload of 8000 or more


@dataclass(frozen=True, slots=True)
class Committed:
    project_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Deleted:
    project_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    project_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Transient:
    project_id: str
    data: str  # the event's JSON, forwarded as is


Notification = Committed | Deleted | Cancel | Transient


def committed_payload_sql(project_expr: str, seq_expr: str) -> str:
    """The SQL expression building a ``Committed`` payload (for ``pg_notify`` in a statement)."""
    return f"{project_expr} || ':' || {seq_expr}"


def encode(note: Notification) -> str:
    if isinstance(note, Committed):
        return f"{note.project_id}:{note.seq}"
    if isinstance(note, Deleted):
        return f"{note.project_id}:{DELETED_TAG}"
    if isinstance(note, Transient):
        return f"{TRANSIENT_PREFIX}{note.project_id}\n{note.data}"
    return f"{note.project_id}:{CANCEL_TAG}:{note.run_id}"


def parse(payload: str) -> Notification | None:
    """The notification a payload carries; None when it is malformed."""
    if payload.startswith(TRANSIENT_PREFIX):
        project_id, sep, data = payload[1:].partition("\n")
        return Transient(project_id, data) if sep and project_id else None
    head, sep, tail = payload.rpartition(":")
    if not sep or not head or not tail:
        return None
    project_id, sep2, tag = head.rpartition(":")
    if sep2 and project_id and tag == CANCEL_TAG:
        return Cancel(project_id, tail)
    if tail == DELETED_TAG:
        return Deleted(head)
    if tail.isascii() and tail.isdigit():
        return Committed(head, int(tail))
    return None


class RunControl(Protocol):
    """Cancel requests between instances: an optional store capability (PostgreSQL).

    ``Store.run_control()`` returns it, or None where one process owns every run (SQLite).
    The requester marks the run and notifies (``request_cancel``); the bus of the instance
    holding the lease hands the notification to ``deliver_cancel_request``, which calls the
    listener the supervisor registered; ``cancel_requests`` is the fallback for a lost one.
    """

    def on_cancel_request(self, listener: Callable[[str], object] | None) -> None:
        """Register who cancels a run of this process when another instance asks (run id)."""

    def deliver_cancel_request(self, run_id: str) -> None:
        """Called by the bus for a ``Cancel`` notification; never raises."""

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the holder of an unfinished run's lease to cancel it. False when the run is
        finished or nobody holds it. Raises ``StoreUnavailable``."""

    async def cancel_requests(self, owner: str) -> list[str]:
        """Ids of the unfinished runs ``owner`` holds whose cancel was requested."""
