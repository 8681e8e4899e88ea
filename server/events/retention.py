"""Event-log retention: a service that trims each active project's log, cheaply.

Every ``interval_s`` it trims the projects that committed events since the previous pass
(``EventHub.take_active_projects``): events beyond the newest ``keep_last`` AND older than
``max_age_s`` are deleted (``Store.trim_events`` only ever deletes a prefix, so what stays
is gap-free). A project that is idle is not visited again until it commits new events.
Clients whose ``Last-Event-ID`` was trimmed get ``event: reset``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

from server.errors import AppError
from server.timeutil import MINUTES, utc_now

if TYPE_CHECKING:
    from server.config import Settings
    from server.events.hub import EventHub
    from server.store.protocol import Store

log = logging.getLogger("stretto.events.retention")


class EventRetention:
    """Owns nothing but its loop; ``run`` is a service, ``trim_once`` one pass."""

    def __init__(
        self,
        *,
        store: Store,
        hub: EventHub,
        keep_last: int,
        max_age_s: float,
        interval_s: float = 1 * MINUTES,
    ) -> None:
        self._store = store
        self._hub = hub
        self._keep_last = keep_last
        self._max_age = timedelta(seconds=max_age_s)
        self._interval_s = interval_s

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, hub: EventHub) -> EventRetention:
        return cls(
            store=store,
            hub=hub,
            keep_last=settings.event_retention_count,
            max_age_s=settings.event_retention_s,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._interval_s)
            await self.trim_once()

    async def trim_once(self) -> int:
        """Trim every project active since the last pass; the number of events deleted."""
        deleted = 0
        older_than = utc_now() - self._max_age
        for project_id in sorted(self._hub.take_active_projects()):
            try:
                deleted += await self._store.trim_events(project_id, self._keep_last, older_than)
            except AppError as exc:
                log.warning("trimming events of project %s failed: %s", project_id, exc)
        return deleted
