"""The run writer: grouped, shielded, deadline-bounded, retried commits of a run's records.

``RunWriter.commit(records)`` writes records (``workflow/transitions.py``) with one
``store.write_run_state`` and publishes the stored events after commit. Group commit: records
asked for while another write is in flight (steps started or finished together) are written
together in the next transaction, in the order asked, and published in that order.

Failures. A transient store error (``StoreUnavailable``/``NotReady``: connection lost,
database restarting, disk full) or an attempt past ``WritePolicy.attempt_deadline_s`` is
retried with backoff (``server.backoff``) within ``WritePolicy.window_s``. Before a retry
the writer looks for the batch's events in the log (a write whose answer was lost may have
committed), so no event is written twice. When the window closes the writer raises
``WriteAbandoned`` and stays broken: the caller stops writing and leaves the run to be
resumed from what the store holds. Any other error is raised as is (and breaks the writer).
Every write runs in a shielded scope so a cancelled caller never leaves it half-known;
the shield is bounded by the window.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from server.backoff import Backoff
from server.errors import NotReady, StoreUnavailable
from server.store.models import RunChange, StateWrite, StepChange, StepStatus
from server.workflow.transitions import Records

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from server.events.model import NewEvent, StoredEvent
    from server.events.publisher import Publisher
    from server.store.protocol import Store

log = logging.getLogger("stretto.workflow")

WRITE_BACKOFF = Backoff(0.1, 2.0)
LOOKBACK_EVENTS = 2000  # how far back a lost write's events are looked for


class WorkflowObserver(Protocol):
    """Told of every committed status change (``server.observability.metrics.Metrics``)."""

    def run_status(self, status: str) -> None: ...

    def step_finished(self, tool: str, status: str, seconds: float | None = None) -> None: ...


class WriteAbandoned(StoreUnavailable):
    """Transient store errors outlasted the retry window; nothing more is written.
    A ``StoreUnavailable``: where it reaches a client (a cancel) it is a 503."""


@dataclass(frozen=True)
class WritePolicy:
    """Deadlines and retries of run writes (seconds)."""

    attempt_deadline_s: float = 10.0
    window_s: float = 20.0
    backoff: Backoff = WRITE_BACKOFF


def is_transient(exc: BaseException) -> bool:
    """A store failure that may pass: retry it, and never let it decide a run's fate.
    A ``StoreUnavailable`` says so itself (``retryable``): a damaged file (``StoreCorrupt``)
    or a newer schema (``SchemaTooNew``) will not pass."""
    if isinstance(exc, StoreUnavailable):
        return exc.retryable
    return isinstance(exc, NotReady | trio.TooSlowError)


@dataclass
class _Batch:
    records: Records = field(default_factory=Records)
    parts: list[Records] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    error: Exception | None = None

    def add(self, records: Records) -> None:
        self.records.merge(records)
        self.parts.append(records)


class RunWriter:
    """Writes one run's records. Not shared between runs."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        run_id: str,
        project_id: str,
        *,
        policy: WritePolicy | None = None,
        observer: WorkflowObserver | None = None,
        tool_of: Callable[[str], str] = lambda _step_id: "unknown",
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.run_id = run_id
        self.project_id = project_id
        self.policy = policy or WritePolicy()
        self.observer = observer
        self.tool_of = tool_of
        self.rng = rng or random.Random()
        self.broken: Exception | None = None
        self.retries = 0  # transient failures retried (statistics, tests)
        self._batch: _Batch | None = None
        self._writing = False
        self._last_seq: int | None = None  # newest seq this writer saw committed

    async def commit(self, records: Records) -> None:
        """Commit ``records`` (grouped with concurrent ones), then publish. Raises
        ``WriteAbandoned`` or the store's non-transient error; then every later call raises
        it too. Shielded from cancellation for at most the policy's window."""
        if self.broken is not None:
            raise self.broken
        with trio.CancelScope(shield=True):
            batch = self._batch or _Batch()
            self._batch = batch
            batch.add(records)
            if self._writing:
                await batch.done.wait()  # the writing task writes this batch next
            else:
                self._writing = True
                try:
                    # Let the steps woken in this scheduler tick join the first batch.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    while self._batch is not None:
                        current, self._batch = self._batch, None
                        await self._write(current)
                finally:
                    self._writing = False
        if batch.error is not None:
            raise batch.error

    async def _write(self, batch: _Batch) -> None:
        """Write one batch (retrying transient errors), publish it, wake its callers."""
        try:
            if self.broken is not None:
                raise self.broken
            stored = await self._write_retrying(batch.records)
        except Exception as exc:
            batch.error = self.broken = exc
        else:
            if stored:
                self._last_seq = stored[-1].seq
            self.publisher.publish(stored)
            for part in batch.parts:
                self._observe(part)
        finally:
            batch.done.set()

    async def _write_retrying(self, records: Records) -> list[StoredEvent]:
        policy = self.policy
        with trio.move_on_after(policy.window_s) as window:
            failures = 0
            while True:
                try:
                    if failures and records.events:
                        found = await self._committed(records.events)
                        if found is not None:
                            log.info("run %s: a lost write had committed", self.run_id)
                            return found
                    with trio.fail_after(policy.attempt_deadline_s):
                        return await self._write_once(records)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    failures += 1
                    self.retries += 1
                    if failures == 1:
                        log.warning("run %s: store write failed (%s); retrying", self.run_id, exc)
                    await trio.sleep(policy.backoff.delay(failures, None, self.rng))
        assert window.cancelled_caught
        log.error(
            "run %s: the store stayed unavailable for %gs; leaving the run to be resumed",
            self.run_id,
            policy.window_s,
        )
        raise WriteAbandoned(f"store unavailable for {policy.window_s:g}s")

    def state_write(self, records: Records) -> StateWrite:
        """``records`` as the store's change (to commit in another unit: ``create_run``)."""
        return StateWrite(
            run=RunChange(self.run_id, records.run) if records.run else None,
            new_steps=records.new_steps,
            steps=[StepChange(self.run_id, sid, f) for sid, f in records.steps],
            events=records.events,
        )

    def committed_elsewhere(self, records: Records, stored: Sequence[StoredEvent]) -> None:
        """``records`` were committed by another unit (``stored``: that unit's events, which
        its caller publishes): note them as this writer's own commit would."""
        if stored:
            self._last_seq = stored[-1].seq
        self._observe(records)

    async def _write_once(self, records: Records) -> list[StoredEvent]:
        change = self.state_write(records)
        return await self.store.write_run_state(
            run=change.run, new_steps=change.new_steps, steps=change.steps, events=change.events
        )

    async def _committed(self, events: Sequence[NewEvent]) -> list[StoredEvent] | None:
        """The stored events of a write whose answer was lost, when it did commit."""
        wanted = [(e.type, _normal(e.data)) for e in events]
        first, last = await self.store.event_bounds(self.project_id)
        after = self._last_seq if self._last_seq is not None else last - LOOKBACK_EVENTS
        after = max(after, first - 1, 0)
        while after < last:
            page = await self.store.events_after(self.project_id, after, LOOKBACK_EVENTS)
            if not page:
                return None
            for i, event in enumerate(page):
                if (event.type, json.loads(event.data)) == wanted[0]:
                    found = page[i : i + len(wanted)]
                    if len(found) < len(wanted):
                        found = await self.store.events_after(
                            self.project_id, event.seq - 1, len(wanted)
                        )
                    if [(e.type, json.loads(e.data)) for e in found] == wanted:
                        return found
            after = page[-1].seq
        return None

    def _observe(self, records: Records) -> None:
        observer = self.observer
        if observer is None:
            return
        if "status" in records.run:
            observer.run_status(str(records.run["status"]))
        for step_id, fields in records.steps:
            status = fields.get("status")
            if status is None or not StepStatus(status).finished:
                continue
            duration_ms = fields.get("duration_ms")
            seconds = duration_ms / 1000 if duration_ms is not None else None
            observer.step_finished(self.tool_of(step_id), str(status), seconds)


def _normal(data: Any) -> Any:
    """``data`` as it reads back from the log's JSON text."""
    return json.loads(json.dumps(data, default=str))


async def record_end(
    store: Store, publisher: Publisher, records: Records, run_id: str, project_id: str
) -> None:
    """Write records computed from the store's view (``transitions.end_stored``) with the
    same deadline and retries as a run's writes. Raises ``WriteAbandoned`` or ``AppError``."""
    writer = RunWriter(store, publisher, run_id, project_id)
    await writer.commit(records)
