"""One ``info`` line per run outcome (succeeded, failed, cancelled), whoever finished it.

``RunOutcomeLog`` wraps the publisher the supervisor and executor publish through: every
terminal run event committed by this process passes here once, so the log says how each
run ended without the workflow code knowing about logging.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from server.events.model import EventType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from server.events.model import StoredEvent
    from server.events.publisher import Publisher

log = logging.getLogger("stretto.runs")

_OUTCOMES: dict[str, str] = {
    EventType.RUN_SUCCEEDED: "succeeded",
    EventType.RUN_FAILED: "failed",
    EventType.RUN_CANCELLED: "cancelled",
}


class RunOutcomeLog:
    """A ``Publisher`` that logs terminal run events, then hands everything to ``inner``."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner

    def publish(self, events: Sequence[StoredEvent]) -> None:
        for event in events:
            outcome = _OUTCOMES.get(event.type)
            if outcome is not None:
                _log_outcome(outcome, event)
        self.inner.publish(events)

    def publish_transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        self.inner.publish_transient(project_id, data)


def _log_outcome(outcome: str, event: StoredEvent) -> None:
    try:
        data = json.loads(event.data)
    except ValueError:
        data = {}
    fields: dict[str, Any] = {
        "run_id": data.get("run_id"),
        "project_id": event.project_id,
        "outcome": outcome,
    }
    error = data.get("error")
    if isinstance(error, dict):
        fields["error_code"] = error.get("code")
    for key in ("reason", "duration_ms"):
        if key in data:
            fields[key] = data[key]
    log.info("run %s %s", fields["run_id"], outcome, extra=fields)
