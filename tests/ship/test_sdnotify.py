"""sd_notify over a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from server.ops import sdnotify

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket, named by $NOTIFY_SOCKET as systemd does."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_and_stopping_reach_the_socket(notify_socket: socket.socket) -> None:
    assert sdnotify.ready()
    assert sdnotify.stopping()
    assert received(notify_socket) == ["READY=1", "STOPPING=1"]


def test_status_lines_travel_in_the_same_datagram(notify_socket: socket.socket) -> None:
    assert sdnotify.ready(status="listening on 127.0.0.1:8080")
    assert sdnotify.status("draining")
    assert sdnotify.watchdog_ping()
    assert received(notify_socket) == [
        "READY=1\nSTATUS=listening on 127.0.0.1:8080",
        "STATUS=draining",
        "WATCHDOG=1",
    ]


def test_abstract_socket_names_start_with_at(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"stretto-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert received(sock) == ["READY=1"]


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.ready()
    assert not sdnotify.stopping()


def test_a_socket_nobody_listens_on_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sdnotify.notify("READY=1")


def test_watchdog_interval_is_half_of_watchdog_usec(notify_socket: socket.socket) -> None:
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "30000000"}
    assert sdnotify.watchdog_interval(env) == 15.0
    # PyInstaller's bootloader is the unit's main pid: our parent's pid counts as ours.
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_PID": str(os.getppid())}) == 15.0
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_PID": str(os.getpid())}) == 15.0
    # another process's watchdog (a pid above pid_max is nobody's)
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_PID": "2147483647"}) is None
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_USEC": "0"}) is None
    assert sdnotify.watchdog_interval({**env, "WATCHDOG_USEC": "soon"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) is None


async def test_watchdog_service_pings_at_half_the_interval(
    notify_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    env = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "2000000"}
    async with trio.open_nursery() as nursery:
        interval = await nursery.start(
            lambda task_status: sdnotify.watchdog(environ=env, task_status=task_status)
        )
        assert interval == 1.0
        await trio.sleep(2.5)  # pings at 0, 1 and 2 seconds (mock clock)
        nursery.cancel_scope.cancel()
    assert received(notify_socket) == ["WATCHDOG=1"] * 3


async def test_watchdog_service_returns_when_systemd_set_no_watchdog(
    notify_socket: socket.socket,
) -> None:
    async with trio.open_nursery() as nursery:
        assert await nursery.start(sdnotify.watchdog) is None
    assert received(notify_socket) == []
