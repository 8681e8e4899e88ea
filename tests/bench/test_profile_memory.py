"""The plumbing of profile_memory.py: the import hook in the real server, the ``-X importtime``
parser, the tracemalloc split, and one whole run at a tiny tracemalloc depth. No timing and
no memory figure is asserted, only that the parts are found and add up."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from tests.bench import profile_memory as memory

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
SCRIPT = HERE / "profile_memory.py"


def test_package_of_groups_the_stdlib_and_stretto() -> None:
    assert memory.package_of("json.decoder") == memory.STDLIB
    assert memory.package_of("server.api.edge") == memory.STRETTO
    assert memory.package_of("werkzeug.routing.rules") == "werkzeug"


def test_import_times_sums_own_time_and_counts_a_package_entered_from_outside_once() -> None:
    # -X importtime prints a module after its nested imports, indented one step deeper.
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |     h11._util",
            "import time:       200 |        200 |     json",
            "import time:        50 |        350 |   h11",
            "import time:       400 |        400 |   trio",
            "import time:        10 |        760 | hypercorn",
            "not an import line",
        ]
    )
    times = memory.import_times(stderr)
    assert times["h11"] == [pytest.approx(0.15), pytest.approx(0.35)]  # h11._util is inside
    assert times[memory.STDLIB] == [pytest.approx(0.2), pytest.approx(0.2)]
    assert times["hypercorn"] == [pytest.approx(0.01), pytest.approx(0.76)]


def test_import_times_reads_real_importtime_output() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import trio"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    times = memory.import_times(done.stderr)
    assert times["trio"][0] > 0
    assert times["trio"][1] >= times["trio"][0]


@pytest.mark.timeout(120)
def test_the_import_hook_attributes_the_real_servers_imports_by_package(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--child", "imports", "--settle-s", "0", "--"),
            *("--data-dir", str(tmp_path), "--log-level", "warning"),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith(memory.MARKER)]
    assert len(lines) == 1, done.stdout[-2000:]
    report = json.loads(lines[0][len(memory.MARKER) :])
    imports = report["imports"]
    for package in (memory.STRETTO, "trio", "hypercorn", "h11"):
        assert imports[package][1] > 0, package  # modules imported
    assert imports[memory.STRETTO][2] == "(this script)"
    assert imports["h11"][2] in ("hypercorn", memory.STRETTO)
    # a stdlib module the server imports after the hook (the archive import, vfs.archive), with
    # its own figures; not sqlite3, which coverage's subprocess measurement imports first
    assert report["stdlib"]["tarfile"][1] > 0
    assert sum(kb for kb, _, _ in imports.values()) > 0
    assert report["rss_kb"] > report["start_kb"]


def test_tracemalloc_split_finds_an_allocation_made_outside_any_import() -> None:
    tracemalloc.start(32)
    try:
        kept = bytearray(2 * 1024 * 1024)
        result = memory._tracemalloc_by_package(top=5)
    finally:
        tracemalloc.stop()
    assert len(kept) == 2 * 1024 * 1024
    here = [kb for name, kb in result["startup_top"] if name.endswith("test_profile_memory.py")]
    assert here, result["startup_top"]
    assert here[0] >= 2048
    assert result["traced_kb"] >= result["startup_kb"] >= 2048


@pytest.mark.timeout(300)
def test_a_whole_run_prints_parts_that_add_up_to_the_in_process_server(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    done = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--settle-s", "0", "--frames", "1", "--top", "5"),
            *("--json-out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| **= the in-process server, settled** |" in done.stdout
    assert "| package | first imported by |" in done.stdout
    assert "| stdlib module | first imported by |" in done.stdout
    assert "| start-up allocations (not imports) by where | kB |" in done.stdout
    result = json.loads(out.read_text())
    run = result["imports_run"]
    parts = (
        result["interpreter_kb"]
        + (run["start_kb"] - result["interpreter_kb"])
        + sum(entry[0] for entry in run["imports"].values())
    )
    rest = run["rss_kb"] - parts
    assert f"| start-up allocations and settling, not imports | {rest / 1024:.1f} |" in (
        done.stdout
    )
    assert result["shipped_kb"] > result["interpreter_kb"]
    assert result["tracemalloc_run"]["traced_kb"] > 0
