"""Where an idle ``stretto serve``'s resident memory comes from. Standard library only.

    python tests/bench/profile_memory.py [--settle-s 2] [--top 15] [--json-out FILE]

Three fresh servers (SQLite, a temp data dir), each measured ``--settle-s`` after it answers:

1. ``stretto serve`` as shipped: the idle RSS to explain (tests/bench/startup.py).
2. The same server run in-process (``--child imports``, as tests/bench/ready_modules.py
   does) with a hook on ``importlib._bootstrap._find_and_load``, which every first import of
   a module goes through: RSS (``/proc/self/statm``) before and after each module's import,
   less what its nested imports added, is that module's own cost; summed per top-level
   package (stdlib modules as one group). Under ``-X importtime``, whose output gives each
   package's import time (own, summed over its modules, and cumulative at its first
   import). Splits its RSS into: the interpreter before the first import of the script, the
   imports by package, and everything else until settled (start-up allocations).
3. The same in-process server under ``tracemalloc`` (``--child tracemalloc``): the Python
   allocations alive when settled that were not made inside an import, by the package of the
   innermost frame that is not the standard library's (else the stdlib file), the largest
   first.

The sums reconcile: run 2's parts add up to its own RSS by construction; the report says how
far it is from run 1's (the hook's cost and run-to-run noise) and how much of the start-up
growth tracemalloc does not see (C allocations: SQLite's page cache, OpenSSL, malloc's free
lists and arena fragmentation, thread stacks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ROOT = Path(__file__).resolve().parents[2]
MARKER = "profile-memory: "
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
STDLIB = "(stdlib)"
STRETTO = "server (stretto)"


def rss_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_KB


def package_of(module: str) -> str:
    """The top-level package a module name belongs to; the stdlib's modules are one group."""
    top = module.split(".", 1)[0]
    if top == "server":
        return STRETTO
    if top in sys.stdlib_module_names or top.startswith("_frozen") or top == "__main__":
        return STDLIB
    return top


# -- the child: the real server in this process ---------------------------------------


def _hook_imports(record: dict[str, list[Any]], stdlib: dict[str, list[Any]]) -> None:
    """Wrap ``_find_and_load``: per top-level package [own RSS kB, modules, the nearest
    non-stdlib package that first imported it]; the same per top-level stdlib module in
    ``stdlib``."""
    import importlib._bootstrap as bootstrap

    original = bootstrap._find_and_load  # type: ignore[attr-defined]
    nested: list[list[Any]] = []  # imports in progress: [module, kB its nested imports added]

    def find_and_load(name: str, import_: Any) -> Any:
        before = rss_kb()
        package = package_of(name)
        outside = (package_of(m) for m, _ in reversed(nested) if package_of(m) != STDLIB)
        importer = next(outside, "(this script)")  # the nearest one that is not the stdlib
        record.setdefault(package, [0, 0, importer])
        top = stdlib.setdefault(name.split(".", 1)[0], [0, 0, importer])
        nested.append([name, 0])
        try:
            return original(name, import_)
        finally:
            inner = nested.pop()[1]
            total = rss_kb() - before
            record[package][0] += total - inner
            record[package][1] += 1
            if package == STDLIB:
                top[0] += total - inner
                top[1] += 1
            if nested:
                nested[-1][1] += total

    bootstrap._find_and_load = find_and_load  # type: ignore[attr-defined]


def _during_import(trace: Any) -> bool:
    return any(frame.filename.startswith("<frozen importlib") for frame in trace.traceback)


def _tracemalloc_by_package(top: int) -> dict[str, Any]:
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    stdlib = os.path.dirname(os.__file__)
    imports_kb = other_kb = 0.0
    by: dict[str, float] = {}
    for trace in snapshot.traces:
        size = trace.size / 1024
        if _during_import(trace):
            imports_kb += size
            continue
        other_kb += size
        where = trace.traceback[-1].filename  # oldest frame first: [-1] is the innermost
        for frame in reversed(trace.traceback):
            if not frame.filename.startswith(stdlib) and not frame.filename.startswith("<"):
                where = frame.filename
                break
        by[_file_group(where, stdlib)] = by.get(_file_group(where, stdlib), 0.0) + size
    ranked = sorted(by.items(), key=lambda item: -item[1])[:top]
    return {
        "traced_kb": round(imports_kb + other_kb),
        "imports_kb": round(imports_kb),
        "startup_kb": round(other_kb),
        "startup_top": [[name, round(kb, 1)] for name, kb in ranked],
    }


def _file_group(path: str, stdlib: str) -> str:
    if path.startswith(str(ROOT / "server")):
        return str(Path(path).relative_to(ROOT))
    match = re.search(r"-packages/([^/]+)", path)
    if match:
        return match.group(1).removesuffix(".py")
    if path.startswith(stdlib):
        return f"stdlib: {path[len(stdlib) + 1 :]}"
    return path


def child(mode: str, settle_s: float, top: int, frames: int, serve_args: list[str]) -> int:
    """Run ``stretto serve`` here; ``settle_s`` after READY, print the report and stop."""
    start_kb = rss_kb()
    record: dict[str, list[Any]] = {}
    stdlib: dict[str, list[Any]] = {}
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start(frames)  # deep enough to see an import frame
    else:
        _hook_imports(record, stdlib)
    from server.cli.main import main as stretto_main
    from server.ops import sdnotify

    original = sdnotify.notify

    def report() -> None:
        time.sleep(settle_s)
        out: dict[str, Any] = {"mode": mode, "start_kb": start_kb}
        if mode == "tracemalloc":
            out.update(_tracemalloc_by_package(top))
        else:
            out["imports"] = record
            out["stdlib"] = {name: entry for name, entry in stdlib.items() if entry[1]}
        out["rss_kb"] = rss_kb()
        print(MARKER + json.dumps(out), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    def notify(message: str, **kwargs: object) -> bool:
        sent = original(message, **kwargs)  # type: ignore[arg-type]
        if message == "READY=1":
            threading.Thread(target=report, daemon=True).start()
        return sent

    sdnotify.notify = notify
    return stretto_main(["serve", "--host", "127.0.0.1", "--port", "0", *serve_args])


# -- the parent: three servers, the tables ---------------------------------------------


def _run_child(mode: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    with tempfile.TemporaryDirectory(prefix="stretto-memory-") as data:
        command = [sys.executable, *(["-X", "importtime"] if mode == "imports" else [])]
        command += [str(Path(__file__).resolve()), "--child", mode]
        command += ["--settle-s", f"{args.settle_s:g}", "--top", str(args.top)]
        command += ["--frames", str(args.frames)]
        command += ["--", "--data-dir", data, "--log-level", "warning"]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or len(lines) != 1:
        raise RuntimeError(f"--child {mode} exited {done.returncode}: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(lines[0][len(MARKER) :])
    return report, done.stderr


def import_times(stderr: str) -> dict[str, list[float]]:
    """``-X importtime`` output -> per top-level package [own ms (summed over its modules),
    cumulative ms (summed over the imports that entered the package from outside it)]."""
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$", line)
        if match:
            level = len(match.group(3)) // 2
            rows.append((int(match.group(1)), int(match.group(2)), level, match.group(4)))
    out: dict[str, list[float]] = {}
    stack: list[tuple[int, str]] = []  # walking backwards, a module's importer comes first
    for own_us, cumulative_us, level, name in reversed(rows):
        while stack and stack[-1][0] >= level:
            stack.pop()
        package = package_of(name)
        entry = out.setdefault(package, [0.0, 0.0])
        entry[0] += own_us / 1000
        if not stack or stack[-1][1] != package:
            entry[1] += cumulative_us / 1000
        stack.append((level, package))
    return out


def interpreter_kb() -> int:
    code = "print(open('/proc/self/statm').read().split()[1])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    return int(done.stdout) * PAGE_KB


def shipped_kb(settle_s: float) -> int:
    from tests.bench.startup import measure

    with tempfile.TemporaryDirectory(prefix="stretto-memory-") as data:
        port = _free_port()
        command = (
            f"exec {sys.executable} -m server serve --host 127.0.0.1 --port $PORT "
            f"--data-dir {data} --log-level warning"
        )
        result = measure(command, port, None, settle_s, 60.0)
    if "idle_rss_kb" not in result:
        raise RuntimeError(f"stretto serve: {result}")
    return int(result["idle_rss_kb"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tables(result: dict[str, Any], top: int) -> str:
    """The three markdown tables of a ``measure`` result."""
    imp, traced = result["imports_run"], result["tracemalloc_run"]
    times: dict[str, list[float]] = result["import_times"]
    packages: dict[str, list[Any]] = imp["imports"]
    imports_kb = sum(entry[0] for entry in packages.values())
    rest_kb = imp["rss_kb"] - imp["start_kb"] - imports_kb
    interp = result["interpreter_kb"]
    lines = [
        "| part of the idle RSS | MB |",
        "|---|---:|",
        f"| the interpreter alone (`python -c`) | {interp / 1024:.1f} |",
        f"| this script's own stdlib imports (before the hook) | "
        f"{(imp['start_kb'] - interp) / 1024:.1f} |",
        f"| imports, by package (next table) | {imports_kb / 1024:.1f} |",
        f"| start-up allocations and settling, not imports | {rest_kb / 1024:.1f} |",
        f"| **= the in-process server, settled** | **{imp['rss_kb'] / 1024:.1f}** |",
        f"| `stretto serve` as shipped, settled | {result['shipped_kb'] / 1024:.1f} |",
        f"| unexplained (shipped - in-process: the hook, run-to-run noise) | "
        f"{(result['shipped_kb'] - imp['rss_kb']) / 1024:+.1f} |",
        "",
        "| package | first imported by | modules | own RSS MB | own import ms | cumulative ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ranked = sorted(packages.items(), key=lambda item: -item[1][0])
    for name, (kb, modules, importer) in ranked[:top]:
        own_ms, cum_ms = times.get(name, [0.0, 0.0])
        lines.append(
            f"| {name} | {importer} | {modules} | {kb / 1024:.2f} | {own_ms:.1f} | {cum_ms:.1f} |"
        )
    rest = ranked[top:]
    if rest:
        kb = sum(item[1][0] for item in rest)
        modules = sum(item[1][1] for item in rest)
        own = sum(times.get(name, [0.0, 0.0])[0] for name, _ in rest)
        lines.append(f"| {len(rest)} others | | {modules} | {kb / 1024:.2f} | {own:.1f} | |")
    lines.append(
        f"| **all** | | {sum(e[1] for e in packages.values())} | **{imports_kb / 1024:.2f}** | "
        f"{sum(t[0] for t in times.values()):.1f} | |"
    )
    lines += [
        "",
        "| stdlib module | first imported by | modules | own RSS MB |",
        "|---|---|---:|---:|",
    ]
    ranked = sorted(imp.get("stdlib", {}).items(), key=lambda item: -item[1][0])
    for name, (kb, modules, importer) in ranked[: max(5, top // 2)]:
        lines.append(f"| {name} | {importer} | {modules} | {kb / 1024:.2f} |")
    lines += [
        "",
        f"tracemalloc when settled: {traced['traced_kb'] / 1024:.1f} MB of Python allocations "
        f"alive, {traced['imports_kb'] / 1024:.1f} MB made inside imports, "
        f"{traced['startup_kb'] / 1024:.1f} MB outside them (start-up); the RSS grew "
        f"{rest_kb / 1024:.1f} MB outside imports, so "
        f"{(rest_kb - traced['startup_kb']) / 1024:+.1f} MB of that is not Python objects "
        "(C allocations, malloc arenas, thread stacks).",
        "",
        "| start-up allocations (not imports) by where | kB |",
        "|---|---:|",
        *(f"| {name} | {kb:,.1f} |" for name, kb in traced["startup_top"]),
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shipped = shipped_kb(args.settle_s)
    imports_run, stderr = _run_child("imports", args)
    tracemalloc_run, _ = _run_child("tracemalloc", args)
    return {
        "interpreter_kb": interpreter_kb(),
        "shipped_kb": shipped,
        "imports_run": imports_run,
        "import_times": import_times(stderr),
        "tracemalloc_run": tracemalloc_run,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--settle-s", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--frames",
        type=int,
        default=128,
        help="tracemalloc frames kept per allocation (fewer: faster, imports less well told "
        "apart from start-up allocations)",
    )
    parser.add_argument("--child", choices=("imports", "tracemalloc"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        serve_args = rest[1:] if rest[:1] == ["--"] else rest
        return child(args.child, args.settle_s, args.top, args.frames, serve_args)
    result = measure(args)
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load = ", ".join(loadavg.read().split()[:3])
    print(f"idle memory of stretto serve (SQLite), settled {args.settle_s:g} s; load {load}\n")
    print(tables(result, args.top))
    if args.json_out:
        args.json_out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
