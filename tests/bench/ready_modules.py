"""Run the real ``stretto serve`` (``server.cli.main.main``) and, once it is ready, print one
JSON line (after `MARKER`): the modules loaded (``sys.modules``), seconds from interpreter
start to ready and the process's RSS; then stop it with SIGTERM, as an operator would.

    python tests/bench/ready_modules.py --data-dir DIR [serve options...]

The only hook is a wrapper around ``server.ops.sdnotify.notify``, which ``serve`` calls with
``READY=1`` when it listens (what systemd waits for): nothing in the server changes. Used by
test_idle_imports.py; by hand it shows what an idle server imported.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

STARTED = time.perf_counter()
MARKER = "ready-modules: "
"""The report line starts with this (the server logs to stdout too)."""


def _rss_kb() -> int | None:
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(argv: list[str]) -> int:
    from server.cli.main import main as stretto_main
    from server.ops import sdnotify

    original = sdnotify.notify

    def notify(message: str, **kwargs: object) -> bool:
        sent = original(message, **kwargs)  # type: ignore[arg-type]
        if message == "READY=1":
            report = {
                "ready_s": round(time.perf_counter() - STARTED, 3),
                "rss_kb": _rss_kb(),
                "modules": sorted(sys.modules),
            }
            print(MARKER + json.dumps(report), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        return sent

    sdnotify.notify = notify
    return stretto_main(["serve", "--host", "127.0.0.1", "--port", "0", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
