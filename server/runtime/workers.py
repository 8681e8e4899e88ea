"""``stretto serve --workers N``: N server processes on one port, supervised by their parent.

Why a forking parent rather than N independent processes from a launcher: the settings are
parsed and checked once; the executable need not know how it was started (the venv's
``python -m server``, the console script and the PyInstaller executable all fork the same
way); the parent can create the workers' private sibling sockets (socketpairs, see
``server.events.siblings``) before forking; and the children share the imported code
copy-on-write. The parent never starts trio (a fork after ``trio.run`` would copy a thread
cache whose threads are gone): it only binds, forks, forwards signals and waits.

What the parent does:
- reserves the address with a bound, non-listening ``SO_REUSEPORT`` socket (the port is
  resolved when it is 0; "port in use" fails here, with exit code 5);
- forks worker 0 and waits until it is ready (it migrates the store and creates the JWT
  secret: nothing races), then the others; each child binds its own ``SO_REUSEPORT``
  listening socket and the kernel spreads connections over them;
- forwards SIGTERM/SIGINT as SIGTERM to every worker (each drains as a single server does),
  restarts none, and exits when all have exited, with the worst exit code. A worker that
  fails to start stops the others. Each child gets SIGTERM if the parent dies
  (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.runtime.preflight import ExitCode, bind_listeners, check_data_dir

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from server.config import Settings

log = logging.getLogger("stretto")

PR_SET_PDEATHSIG = 1


@dataclass
class WorkerSlot:
    """What one worker process gets from its parent."""

    index: int
    count: int
    parent_pid: int
    ready_fd: int  # write one byte when ready, then close
    inbox: socket.socket | None  # SQLite: this worker's sibling socket, else None
    peers: list[socket.socket]  # SQLite: the other workers' sibling sockets

    def report_ready(self) -> None:
        if self.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, b"R")
                os.close(self.ready_fd)
            self.ready_fd = -1


@dataclass
class _Child:
    pid: int
    ready_fd: int  # the parent's read end; -1 once ready
    status: int | None = None


def run_workers(settings: Settings, serve_one: Callable[[Settings, WorkerSlot], int]) -> int:
    """Run ``settings.worker_count`` workers (``serve_one`` in each forked child, which must
    return its exit code); returns the parent's exit code. Raises ``StartupError`` when the
    address cannot be reserved or the data directory is unusable (nothing forked yet)."""
    count = settings.worker_count
    reservation = bind_listeners(settings, reuse_port=True, listen=False)[0]
    try:
        settings = dataclasses.replace(settings, port=reservation.getsockname()[1])
        check_data_dir(settings)
        _preload()
        pairs = None
        if not settings.uses_postgres:
            from server.events.siblings import make_pairs

            pairs = make_pairs(count)
        return _Parent(settings, count, pairs, serve_one, reservation).run()
    finally:
        reservation.close()


def _preload() -> None:
    """Import the server's modules before forking: the workers share those pages
    copy-on-write instead of each importing its own copy (no trio loop is started)."""
    import server.app
    import server.runtime.serve  # noqa: F401


class _Parent:
    def __init__(
        self,
        settings: Settings,
        count: int,
        pairs: list[tuple[socket.socket, socket.socket]] | None,
        serve_one: Callable[[Settings, WorkerSlot], int],
        reservation: socket.socket,
    ) -> None:
        self.reservation = reservation
        self.settings = settings
        self.count = count
        self.pairs = pairs
        self.serve_one = serve_one
        self.children: list[_Child] = []
        self.stopping = False

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            log.info("starting %d workers on port %d", self.count, self.settings.port)
            self._fork(0)
            if self._wait_ready([self.children[0]]):
                for index in range(1, self.count):
                    self._fork(index)
                self._wait_ready(self.children[1:])
            for pair in self.pairs or []:
                for sock in pair:
                    sock.close()
            while any(child.status is None for child in self.children):
                self._reap(block=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        codes = [os.waitstatus_to_exitcode(child.status or 0) for child in self.children]
        failed = [code for code in codes if code != 0]
        if not failed:
            return ExitCode.OK
        return failed[0] if failed[0] > 0 else ExitCode.CRASH  # < 0: killed by a signal

    def _fork(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            code: int = ExitCode.CRASH
            try:
                code = self.serve_one(self.settings, self._slot(index, write_fd))
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        self.children.append(_Child(pid, read_fd))
        if self.stopping:
            os.kill(pid, signal.SIGTERM)

    def _slot(self, index: int, ready_fd: int) -> WorkerSlot:
        self.reservation.close()  # the worker binds its own listening socket
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        for child in self.children:  # the siblings' ready pipes are the parent's business
            with contextlib.suppress(OSError):
                os.close(child.ready_fd)
        inbox, peers = None, []
        for number, (pair_inbox, writer) in enumerate(self.pairs or []):
            if number == index:
                inbox = pair_inbox
                writer.close()
            else:
                pair_inbox.close()
                peers.append(writer)
        return WorkerSlot(index, self.count, os.getppid(), ready_fd, inbox, peers)

    def _wait_ready(self, children: list[_Child]) -> bool:
        """Wait until each child is ready; False (and every worker told to stop) when one
        exits first."""
        waiting = {child.ready_fd: child for child in children}
        while waiting:
            readable, _, _ = select.select(list(waiting), [], [], 0.5)
            for fd in readable:
                child = waiting.pop(fd)
                ready = os.read(fd, 1) == b"R"
                os.close(fd)
                child.ready_fd = -1
                if not ready:
                    self._reap(block=False)
                    log.error("worker %d exited before it was ready", child.pid)
                    self._stop_all()
                    for other in waiting.values():
                        os.close(other.ready_fd)
                    return False
            self._reap(block=False)
        return True

    def _reap(self, *, block: bool) -> None:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            for child in self.children:
                child.status = 0 if child.status is None else child.status
            return
        for child in self.children:
            if child.pid == pid:
                child.status = status
                code = os.waitstatus_to_exitcode(status)
                if not self.stopping:
                    log.warning("worker %d exited (%d) and is not restarted", pid, code)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            return  # logs go to stdout: nothing to reopen (as a single server does)
        self._stop_all()

    def _stop_all(self) -> None:
        self.stopping = True
        for child in self.children:
            if child.status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
