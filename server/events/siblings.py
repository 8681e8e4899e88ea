"""Events and cancels between the worker processes of one ``stretto serve --workers N`` (SQLite).

On PostgreSQL the event bus (``server.events.pgbus``) carries everything between processes;
SQLite has no notifications, so the workers of one server tell each other. The parent
(``server.runtime.workers``) creates one ``AF_UNIX`` datagram socketpair per worker before
it forks: worker ``i`` reads its pair's ``inbox`` end and writes to the other pairs' ends
(``peers``). Private to the process group: no path, nothing to clean up, no other user can
write to them.

``SiblingNotifier`` is the hub's ``HubRelay`` and the store's ``RunControl``. One datagram
per message (UTF-8):

- ``C<project>\\n<seq>``: events up to ``seq`` are committed: the hub reads the log for
  what its subscribers have not seen (``EventHub.notify_committed``, the gap fill);
- ``T<project>\\n<json>``: a transient event (``step.delta``), forwarded as is;
- ``D<project>``: the project was deleted: its streams here end;
- ``X<run_id>``: cancel this run if this worker executes it.

Sends never block: a full peer queue keeps the latest committed seq per project for a
retry (``RETRY_S``); a transient event that does not fit is dropped and counted (live only,
like a slow subscriber's). ``run`` is the receiving service task.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from server.events.hub import EventHub
    from server.store.protocol import Store

log = logging.getLogger("stretto.events.siblings")

MAX_DATAGRAM = 128 * 1024  # a larger transient event is dropped (logged)
SOCKET_BUFFER = 1024 * 1024  # each inbox's kernel buffer: the bound on what waits for a worker
RETRY_S = 0.05  # how soon committed seqs a full peer refused are sent again


@dataclass(frozen=True, slots=True)
class SiblingStatistics:
    sent: int
    received: int
    dropped: int  # transient events a peer had no room for, or too large


def make_pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """One (inbox, writer) datagram socketpair per worker, created by the parent."""
    pairs = []
    for _ in range(count):
        inbox, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        pairs.append((inbox, writer))
    return pairs


class SiblingNotifier:
    """Tells the sibling workers what this one publishes, and applies what they tell it.

    Owns ``inbox`` and ``peers`` (closes them when ``run`` ends)."""

    def __init__(self, inbox: socket.socket, peers: list[socket.socket], store: Store) -> None:
        self._inbox = inbox
        self._peers = peers
        for peer in peers:
            peer.setblocking(False)
        self._hub: EventHub | None = None
        self._store = store
        self._listener: Callable[[str], object] | None = None
        self._backlog: list[dict[str, int]] = [{} for _ in peers]  # committed, per peer
        self._backlog_wakeup = trio.Event()
        self._sent = 0
        self._received = 0
        self._dropped = 0

    def statistics(self) -> SiblingStatistics:
        return SiblingStatistics(self._sent, self._received, self._dropped)

    def attach(self, hub: EventHub) -> None:
        """Relay ``hub``'s events to the siblings and apply theirs to it (before ``run``)."""
        self._hub = hub
        hub.relay = self

    # -- HubRelay ------------------------------------------------------------------------
    def committed(self, project_id: str, seq: int) -> None:
        message = f"C{project_id}\n{seq}".encode()
        for index, peer in enumerate(self._peers):
            if not self._send(peer, message):
                backlog = self._backlog[index]
                backlog[project_id] = max(seq, backlog.get(project_id, 0))
                self._backlog_wakeup.set()

    def transient(self, project_id: str, data: Mapping[str, Any]) -> None:
        message = f"T{project_id}\n".encode() + json.dumps(data, separators=(",", ":")).encode()
        if len(message) > MAX_DATAGRAM:
            self._dropped += len(self._peers)
            log.warning("transient event of %d bytes not sent to sibling workers", len(message))
            return
        for peer in self._peers:
            if not self._send(peer, message):
                self._dropped += 1

    def project_closed(self, project_id: str) -> None:
        self._broadcast(f"D{project_id}".encode())

    # -- RunControl ----------------------------------------------------------------------
    def on_cancel_request(self, listener: Callable[[str], object] | None) -> None:
        self._listener = listener

    def deliver_cancel_request(self, run_id: str) -> None:
        listener = self._listener
        if listener is not None:
            try:
                listener(run_id)
            except Exception:
                log.exception("cancel request for run %s failed", run_id)

    async def request_cancel(self, run_id: str) -> bool:
        """Tell every sibling to cancel ``run_id`` (the one executing it does). False when
        the run is finished or nobody holds its lease. Raises ``StoreUnavailable``."""
        run = await self._store.get_run(run_id)
        if run is None or run.status.finished or run.lease_owner is None:
            return False
        self._broadcast(f"X{run_id}".encode())
        return True

    async def cancel_requests(self, owner: str) -> list[str]:
        return []  # nothing is marked: a socketpair does not lose a datagram it accepted

    # -- service -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive the siblings' messages (and retry refused committed seqs) until
        cancelled; closes the sockets when it ends."""
        inbox = trio.socket.from_stdlib_socket(self._inbox)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._retry_backlog)
                task_status.started()
                while True:
                    self._apply(await inbox.recv(MAX_DATAGRAM + 1024))
        finally:
            inbox.close()
            for peer in self._peers:
                peer.close()

    # -- internals -----------------------------------------------------------------------
    def _apply(self, message: bytes) -> None:
        self._received += 1
        if self._hub is None:
            return
        kind, body = message[:1], message[1:].decode(errors="replace")
        project_id, _, rest = body.partition("\n")
        try:
            if kind == b"C":
                self._hub.notify_committed(project_id, int(rest))
            elif kind == b"T":
                self._hub.deliver_transient(project_id, json.loads(rest))
            elif kind == b"D":
                self._hub.end_project(project_id)
            elif kind == b"X":
                self.deliver_cancel_request(body)
            else:
                raise ValueError(kind)
        except ValueError:
            log.warning("ignoring a malformed sibling message (%d bytes)", len(message))

    def _broadcast(self, message: bytes) -> None:
        for peer in self._peers:
            if not self._send(peer, message):
                self._dropped += 1
                log.warning("a sibling worker's queue is full: %r not delivered", message[:1])

    def _send(self, peer: socket.socket, message: bytes) -> bool:
        """False when the peer has no room now; a peer that is gone counts as sent."""
        try:
            peer.send(message)
        except BlockingIOError:
            return False
        except OSError:  # the sibling exited (its inbox is closed): nothing to tell it
            return True
        self._sent += 1
        return True

    async def _retry_backlog(self) -> None:
        while True:
            await self._backlog_wakeup.wait()
            self._backlog_wakeup = trio.Event()
            await trio.sleep(RETRY_S)
            for index, peer in enumerate(self._peers):
                backlog = self._backlog[index]
                for project_id, seq in list(backlog.items()):
                    if self._send(peer, f"C{project_id}\n{seq}".encode()):
                        del backlog[project_id]
                if backlog:
                    self._backlog_wakeup.set()
