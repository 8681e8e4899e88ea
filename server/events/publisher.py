"""The one publishing interface: what state changes call after their transaction commits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from server.events.model import StoredEvent


class Publisher(Protocol):
    """Fans committed events out to subscribers. Never blocks, never raises for a slow reader."""

    def publish(self, events: Sequence[StoredEvent]) -> None:
        """Deliver events committed to the log (they carry their project ``seq``)."""

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        """Deliver an event that is not retained (``step.delta``): live only, no ``id``."""
