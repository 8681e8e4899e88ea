"""A server as a group of processes: ``stretto serve --workers N`` is a supervisor and N
workers, so one PID's RSS and CPU are not the whole server.

Readers of ``/proc`` (Linux) that return ``None`` or an empty result where ``/proc`` is missing
or a process is gone; they never raise.
"""

from __future__ import annotations

import os

from server.bench.stats import proc_field, process_cpu_s, rss_kb


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _children() -> dict[int, list[int]]:
    """Every process's children, from one pass over ``/proc``."""
    out: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            parent = _parent(int(name))
            if parent is not None:
                out.setdefault(parent, []).append(int(name))
    return out


def server_processes(pid: int | None) -> list[int]:
    """The server ``pid`` belongs to: climb to the topmost ancestor running the same executable
    (a worker's supervisor), then that process and all its descendants. ``[]`` for None or a
    process that is gone; ``[pid]`` when ``/proc`` cannot tell more."""
    if pid is None or _exe(pid) is None:
        return []
    root = pid
    exe = _exe(pid)
    while (parent := _parent(root)) not in (None, 0, 1) and _exe(parent) == exe:
        assert parent is not None
        root = parent
    children = _children()
    found: list[int] = []
    todo = [root]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def group_rss_kb(pids: list[int]) -> int | None:
    """Summed RSS of the processes still running (shared pages counted in each), or None."""
    values = [value for value in map(rss_kb, pids) if value is not None]
    return sum(values) if values else None


def group_cpu_s(pids: list[int]) -> float | None:
    values = [value for value in map(process_cpu_s, pids) if value is not None]
    return sum(values) if values else None


def open_files_limit(pid: int | None) -> int | None:
    """The soft ``Max open files`` limit of a process, or None."""
    return proc_field(pid, "limits", "Max open files", 3)
