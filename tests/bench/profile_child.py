"""Run the real ``stretto serve`` (``server.cli.main.main``) in this process under cProfile,
every thread included, and write the profile of a window when it exits. Used by
profile_server.py; nothing in the server changes.

    python tests/bench/profile_child.py --out FILE.json [--off] -- [serve options...]

- Every thread gets its own ``cProfile.Profile`` with ``time.thread_time`` as its clock: the
  main thread (trio, hypercorn, Quart, stretto) is enabled here, and ``threading.setprofile``
  enables one in each thread started later (trio's worker threads: SQLite, argon2, hashing).
  A CPU clock counts kernel time spent in system calls, never time blocked in ``epoll_wait``
  or waiting for the GIL. (cProfile's own wall clock costs about half as much per call, but
  then trio's idle worker threads, blocked on a lock, and a thread waiting for the GIL while
  another runs count as busy: tried, it put half of a request's time in ``lock.acquire``.)
- ``SIGUSR1`` marks the start of the window and ``SIGUSR2`` its end: every profiler's
  counters are snapshotted, so start-up, warm-up (first-use imports) and shutdown stay out of
  the figures. A thread started inside the window counts from its start. Each mark then
  writes ``--out``.start / .end, so the caller knows it was taken.
- On exit (``SIGTERM``: the server's own clean shutdown) the window's entries are written to
  ``--out`` as JSON (see ``_entries``), with the process's CPU time (all threads, user +
  system, ``getrusage``) and wall time between the marks. ``--off`` runs the same process
  without profilers (the unprofiled baseline has the same code path).

Why cProfile and not yappi or py-spy: cProfile is in the standard library (no dependency, it
also runs inside the PyInstaller executable), its per-caller records let a C function's time
be charged to the Python package that called it, and py-spy cannot read this Python build.
Its cost is a fixed overhead per Python call; profile_server.py measures it against the
unprofiled run and says so.
"""

from __future__ import annotations

import cProfile
import json
import resource
import signal
import sys
import threading
import time
from typing import Any

Key = tuple[str, int, str]
"""(file, first line, function name); ``("~", 0, "<built-in ...>")`` for a C function."""

_profilers: list[cProfile.Profile] = []
_lock = threading.Lock()
Raw = dict[tuple[Key, Key | None], tuple[int, float, float]]
_snapshots: dict[str, dict[int, Raw]] = {"start": {}, "end": {}}
_marks: dict[str, tuple[tuple[float, float], float]] = {}
_out = ""


def _label(code: Any) -> Key:
    if isinstance(code, str):
        return ("~", 0, code)
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _raw(profiler: cProfile.Profile) -> Raw:
    """(function, None) -> (calls, self s, cumulative s); (callee, caller) -> the same for
    the calls from that caller."""
    raw: Raw = {}
    for entry in profiler.getstats():
        func = _label(entry.code)
        raw[(func, None)] = (entry.callcount, entry.inlinetime, entry.totaltime)
        for sub in entry.calls or ():
            callee = _label(sub.code)
            old = raw.get((callee, func), (0, 0.0, 0.0))
            raw[(callee, func)] = (
                old[0] + sub.callcount,
                old[1] + sub.inlinetime,
                old[2] + sub.totaltime,
            )
    return raw


def _cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # µs resolution (os.times: 10 ms)
    return (usage.ru_utime, usage.ru_stime)


def _mark(signum: int, _frame: object) -> None:
    which = "start" if signum == signal.SIGUSR1 else "end"
    main_profiler = _profilers[0] if _profilers else None
    if main_profiler is not None:
        main_profiler.disable()  # the snapshot is not part of the window
    if which == "end":  # the process's CPU is read on the window's side of the snapshot,
        _marks[which] = (_cpu_s(), time.monotonic())  # which costs tens of ms
    with _lock:
        for profiler in _profilers:
            _snapshots[which][id(profiler)] = _raw(profiler)
    if which == "start":
        if main_profiler is not None:
            main_profiler.enable()
        _marks[which] = (_cpu_s(), time.monotonic())
    if _out:
        with open(f"{_out}.{which}", "w", encoding="ascii") as done:
            done.write("marked\n")  # profile_server.py waits for this before the load


def _new_profiler() -> cProfile.Profile:
    return cProfile.Profile(time.thread_time)


def _thread_hook(_frame: object, _event: str, _arg: object) -> None:
    profiler = _new_profiler()
    with _lock:
        _profilers.append(profiler)
    profiler.enable()  # replaces this hook for the rest of the thread


def _entries() -> list[dict[str, Any]]:
    """Per function: ``file``, ``line``, ``name``, ``calls``, ``self_s``, ``cum_s`` and
    ``callers`` (``[file, line, name, calls, self_s]``: the function's self time spent under
    each caller), summed over threads: the counters at the end mark (or now) minus those at
    the start mark (or zero)."""
    merged: dict[tuple[Key, Key | None], list[float]] = {}
    with _lock:
        profilers = list(_profilers)
    for profiler in profilers:
        before = _snapshots["start"].get(id(profiler), {})
        if "end" in _marks:
            if id(profiler) not in _snapshots["end"]:
                continue  # its thread started after the window
            after = _snapshots["end"][id(profiler)]
        else:
            after = _raw(profiler)
        for key, (calls, self_s, cum_s) in after.items():
            b_calls, b_self, b_cum = before.get(key, (0, 0.0, 0.0))
            if calls == b_calls:
                continue
            into = merged.setdefault(key, [0, 0.0, 0.0])
            into[0] += calls - b_calls
            into[1] += self_s - b_self
            into[2] += cum_s - b_cum
    out: dict[Key, dict[str, Any]] = {}
    for (func, caller), (n_calls, self_s, cum_s) in merged.items():
        calls = int(n_calls)
        item = out.setdefault(
            func,
            {
                "file": func[0],
                "line": func[1],
                "name": func[2],
                "calls": 0,
                "self_s": 0.0,
                "cum_s": 0.0,
                "callers": [],
            },
        )
        if caller is None:
            item.update(calls=calls, self_s=self_s, cum_s=cum_s)
        else:
            item["callers"].append([*caller, calls, self_s])
    return list(out.values())


def _empty() -> None:
    pass


def _loop_pass(n: int) -> None:
    for _ in range(n):
        pass


def _loop_python(n: int) -> None:
    empty = _empty
    for _ in range(n):
        empty()


def _loop_c(n: int) -> None:
    length, items = len, ()
    for _ in range(n):
        length(items)


def calibrate(n: int = 200_000, repeat: int = 5) -> dict[str, float]:
    """The profiler's own cost per call, in seconds, on this clock: ``py_callee`` and
    ``py_caller`` (added to a called Python function's self time and to its caller's), and
    ``c_callee`` / ``c_caller`` for a C function. Each is the median over ``repeat`` of
    (profiled - unprofiled) / n for a loop of n calls of an empty function and of ``len``.
    The unprofiled call's own cost is counted in the callee's share (it is small: ~30 ns)."""

    def unprofiled(fn: Any) -> float:
        started = time.thread_time()
        fn(n)
        return time.thread_time() - started

    def profiled(fn: Any, callee: str) -> tuple[float, float]:
        profiler = _new_profiler()
        profiler.enable()
        fn(n)
        profiler.disable()
        selfs = {_label(e.code)[2]: e.inlinetime for e in profiler.getstats()}
        callee_s = next(v for k, v in selfs.items() if callee in k)
        return selfs[fn.__name__], callee_s

    runs: dict[str, list[float]] = {
        "py_callee": [],
        "py_caller": [],
        "c_callee": [],
        "c_caller": [],
    }
    for _ in range(repeat):
        bare = unprofiled(_loop_pass)
        for kind, fn, callee in (("py", _loop_python, "_empty"), ("c", _loop_c, "len")):
            whole = unprofiled(fn)
            caller_s, callee_s = profiled(fn, callee)
            runs[f"{kind}_callee"].append((callee_s - (whole - bare)) / n)
            runs[f"{kind}_caller"].append((caller_s - bare) / n)
    return {key: sorted(values)[len(values) // 2] for key, values in runs.items()}


def main(argv: list[str]) -> int:
    global _out
    out = _out = argv[argv.index("--out") + 1]
    profile = "--off" not in argv
    serve_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    from server.cli.main import main as stretto_main

    signal.signal(signal.SIGUSR1, _mark)
    signal.signal(signal.SIGUSR2, _mark)
    if profile:
        main_profiler = _new_profiler()
        _profilers.append(main_profiler)  # first: _mark pauses it
        threading.setprofile(_thread_hook)
        main_profiler.enable()
    try:
        code = stretto_main(["serve", *serve_args])
    finally:
        if profile:
            main_profiler.disable()
            threading.setprofile(None)
        now = (_cpu_s(), time.monotonic())
        start_cpu, start_wall = _marks.get("start", now)
        end_cpu, end_wall = _marks.get("end", now)
        report = {
            "profiled": profile,
            "marked": sorted(_marks),
            "cpu_user_s": end_cpu[0] - start_cpu[0],
            "cpu_system_s": end_cpu[1] - start_cpu[1],
            "wall_s": end_wall - start_wall,
            "threads": len(_profilers),
            "entries": _entries() if profile else [],
            "calibration": calibrate() if profile else {},
        }
        with open(out, "w", encoding="utf-8") as file:
            json.dump(report, file)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
