"""Self time of a profile (profile_child.py's entries) split by layer, and the tables
profile_server.py prints. Standard library only; no I/O.

A Python function's self time goes to the layer of its file's package (``LAYERS``). A C
function (cProfile's ``~`` entries: ``dict.get``, ``bytes.join``...) goes to the layer of the
Python function that called it, split by its per-caller records, except the C functions
that are a layer themselves: system calls (``_socket``, ``select.epoll``, ``posix``, thread
locks), the ``sqlite3`` and ``_json`` extensions.

The profile's clock is per-thread CPU time, so the kernel layer is the CPU of those calls
(sockets, epoll, a contended lock's futex), kernel time included; the unprofiled run's
user/system split (``getrusage``) is the direct measure of kernel time. cProfile costs a
fixed amount per call (x3-5 on a request here), so a layer made of many small calls (trio,
h11) is overstated by the raw shares.
``calibrated`` removes that cost: profile_child.py measures it per call on the same clock
after the server stopped (callee and caller side, Python and C callees), each call in the
profile is charged for it where its time went, and what is left is scaled by one factor
``beta`` so the layers sum to the unprofiled CPU (the rest of the slow-down, taken as
uniform: a profiled process runs slower throughout). The raw share applied to the
unprofiled CPU is the cruder estimate. Checked on PyJWT (GET project): its decode +
header, timed alone, cost 56 µs here; calibrated 52, raw share 97.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

KERNEL = "kernel: sockets, epoll, lock waits"
STRETTO = "stretto (server/*)"
OTHER = "other"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("h11", ("/h11/",)),
    ("hypercorn", ("/hypercorn/",)),
    (
        "quart + werkzeug",
        (
            "/quart/",
            "/quart_trio/",
            "/werkzeug/",
            "/flask/",
            "/jinja2/",
            "/markupsafe/",
            "/blinker/",
            "/itsdangerous/",
        ),
    ),
    (
        "trio",
        (
            "/trio/",
            "/outcome/",
            "/sniffio/",
            "/trio_asyncio/",
            "/exceptiongroup/",
            "<attrs generated methods trio.",
            "<attrs generated methods outcome.",
        ),
    ),
    ("jsonschema", ("/jsonschema/", "/referencing/", "/jsonschema_specifications/", "/rpds/")),
    ("prometheus_client", ("/prometheus_client/",)),
    ("json", ("/json/",)),
    ("sqlite", ("/sqlite3/",)),
    ("pyjwt + cryptography", ("/jwt/", "/cryptography/")),
    ("argon2 (the bench's register)", ("/argon2/", "/_argon2_cffi_bindings/")),
    ("profiler (window marks)", ("/tests/bench/profile_child.py",)),
)
C_LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (KERNEL, ("_socket.", "select.epoll", "posix.", "_ssl.", "_thread.lock", "_thread.RLock")),
    ("sqlite", ("sqlite3.",)),
    ("json", ("_json.",)),
)
ORDER = (
    KERNEL,
    "h11",
    "hypercorn",
    "quart + werkzeug",
    STRETTO,
    "trio",
    "json",
    "sqlite",
    "pyjwt + cryptography",
    "jsonschema",
    "prometheus_client",
    "argon2 (the bench's register)",
    "other: stdlib",
    OTHER,
    "profiler (window marks)",
)


def layer_of_file(path: str, stretto_root: str) -> str:
    """The layer of a Python file (a cProfile entry's ``file``)."""
    if path.startswith(stretto_root.rstrip("/") + "/server/"):
        return STRETTO
    for layer, marks in LAYERS:
        if any(mark in path for mark in marks):
            return layer
    stdlib = f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"
    if (stdlib in path and "-packages/" not in path) or path.startswith("<frozen "):
        return "other: stdlib"
    return OTHER


def c_layer(name: str) -> str | None:
    """The layer a C function is by itself, or None (it goes to its callers' layers)."""
    for layer, marks in C_LAYERS:
        if any(mark in name for mark in marks):
            return layer
    return None


def stretto_part(path: str, stretto_root: str) -> str:
    """``server/api/edge.py`` -> ``server/api/edge.py``; the file under the repository."""
    return path[len(stretto_root.rstrip("/")) + 1 :]


@dataclass(slots=True)
class Split:
    """Seconds of self time, calls and the profiler's own cost (``overhead_s``, from the
    calibration) per layer; self time per stretto file; the functions."""

    self_s: dict[str, float] = field(default_factory=dict)
    calls: dict[str, float] = field(default_factory=dict)
    overhead_s: dict[str, float] = field(default_factory=dict)
    stretto_files: dict[str, float] = field(default_factory=dict)
    functions: list[tuple[float, int, str, str]] = field(default_factory=list)

    def add(self, layer: str, seconds: float, calls: float) -> None:
        self.self_s[layer] = self.self_s.get(layer, 0.0) + seconds
        self.calls[layer] = self.calls.get(layer, 0.0) + calls

    def charge(self, layer: str, seconds: float) -> None:
        self.overhead_s[layer] = self.overhead_s.get(layer, 0.0) + seconds

    @property
    def total_s(self) -> float:
        return sum(self.self_s.values())

    @property
    def total_calls(self) -> float:
        return sum(self.calls.values())


def dilation(parts: Split, unprofiled_cpu_s: float | None) -> float | None:
    """``beta``: the unprofiled CPU over the profile's total less the calibrated per-call
    cost (what is left of the slow-down: the profiled process runs slower throughout).
    None without an unprofiled run or a calibration."""
    rest = sum(calibrated_s(parts, name) for name in parts.self_s)
    if unprofiled_cpu_s is None or not parts.overhead_s or rest <= 0:
        return None
    return unprofiled_cpu_s / rest


def calibrated_s(parts: Split, layer: str) -> float:
    """A layer's self time less the calibrated profiler cost of its calls (not below 0)."""
    return max(0.0, parts.self_s.get(layer, 0.0) - parts.overhead_s.get(layer, 0.0))


def _where(entry: dict[str, Any]) -> str:
    if entry["file"] == "~":
        return str(entry["name"])
    return f"{entry['file']}:{entry['line']}({entry['name']})"


def split(
    entries: list[dict[str, Any]], stretto_root: str, calibration: dict[str, float] | None = None
) -> Split:
    """Self time and calls of every entry, by layer (see the module doc). With
    ``calibration`` (profile_child.calibrate), each call's profiler cost is charged to the
    layer that received the callee's self time and to the caller's layer; a C function's
    share goes where its self time went."""
    out = Split()
    c_shares: dict[str, dict[str, float]] = {}  # C function -> {layer: fraction}
    for entry in entries:
        self_s, calls = float(entry["self_s"]), int(entry["calls"])
        if entry["file"] != "~":
            layer = layer_of_file(entry["file"], stretto_root)
            out.add(layer, self_s, calls)
            if layer == STRETTO:
                part = stretto_part(entry["file"], stretto_root)
                out.stretto_files[part] = out.stretto_files.get(part, 0.0) + self_s
            out.functions.append((self_s, calls, layer, _where(entry)))
            continue
        own = c_layer(entry["name"])
        callers = entry["callers"]
        charged = sum(float(c[4]) for c in callers)
        if own is not None or not callers or charged <= 0:
            layer = own or OTHER
            out.add(layer, self_s, calls)
            out.functions.append((self_s, calls, layer, _where(entry)))
            c_shares[entry["name"]] = {layer: 1.0}
            continue
        shares = c_shares.setdefault(entry["name"], {})
        for file, _line, _name, c_calls, c_self in callers:
            fraction = float(c_self) / charged
            layer = OTHER if file == "~" else layer_of_file(file, stretto_root)
            shares[layer] = shares.get(layer, 0.0) + fraction
            out.add(layer, self_s * fraction, int(c_calls))
            if layer == STRETTO:
                part = stretto_part(file, stretto_root)
                out.stretto_files[part] = out.stretto_files.get(part, 0.0) + self_s * fraction
        out.functions.append((self_s, calls, "(callers)", _where(entry)))
    if calibration:
        _charge_overhead(out, entries, stretto_root, calibration, c_shares)
    return out


def _charge_overhead(
    out: Split,
    entries: list[dict[str, Any]],
    stretto_root: str,
    calibration: dict[str, float],
    c_shares: dict[str, dict[str, float]],
) -> None:
    def layers_of(file: str, name: str) -> dict[str, float]:
        if file != "~":
            return {layer_of_file(file, stretto_root): 1.0}
        return c_shares.get(name) or {OTHER: 1.0}

    for entry in entries:
        kind = "c" if entry["file"] == "~" else "py"
        callee = layers_of(entry["file"], entry["name"])
        for layer, fraction in callee.items():
            out.charge(layer, fraction * int(entry["calls"]) * calibration[f"{kind}_callee"])
        for file, _line, name, c_calls, _self in entry["callers"]:
            for layer, fraction in layers_of(file, name).items():
                out.charge(layer, fraction * int(c_calls) * calibration[f"{kind}_caller"])


def layer_table(parts: Split, units: float, unit: str, unprofiled_cpu_s: float | None) -> list[str]:
    """The markdown table: per layer, calls and profiled CPU per unit, its share, the share
    applied to the unprofiled CPU, and the calibrated self time (profiler cost removed)."""
    total = parts.total_s or 1e-12
    beta = dilation(parts, unprofiled_cpu_s)
    lines = [
        f"| layer | calls/{unit} | profiled µs/{unit} | share | "
        f"share x unprofiled µs/{unit} | calibrated µs/{unit} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    layers = [name for name in ORDER if name in parts.self_s]
    layers += sorted(set(parts.self_s) - set(layers))
    scaled_sum = calibrated_sum = 0.0
    for name in layers:
        seconds, calls = parts.self_s[name], parts.calls.get(name, 0.0)
        share = seconds / total
        scaled = None if unprofiled_cpu_s is None else share * unprofiled_cpu_s / units * 1e6
        calibrated = None
        if beta is not None:
            calibrated = calibrated_s(parts, name) * beta / units * 1e6
        scaled_sum += scaled or 0.0
        calibrated_sum += calibrated or 0.0
        lines.append(
            f"| {name} | {calls / units:,.1f} | {seconds / units * 1e6:,.1f} | "
            f"{share * 100:.1f} % | {_opt(scaled)} | {_opt(calibrated)} |"
        )
    lines.append(
        f"| **total** | {parts.total_calls / units:,.1f} | {total / units * 1e6:,.1f} | 100 % | "
        f"{_opt(scaled_sum if unprofiled_cpu_s is not None else None)} | "
        f"{_opt(calibrated_sum if beta is not None else None)} |"
    )
    return lines


def files_table(parts: Split, units: float, unit: str, top: int) -> list[str]:
    """stretto's self time (C calls included) by file, the largest first."""
    total = parts.total_s or 1e-12
    lines = [f"| stretto file | profiled µs/{unit} | share of all |", "|---|---:|---:|"]
    ranked = sorted(parts.stretto_files.items(), key=lambda item: -item[1])[:top]
    for name, seconds in ranked:
        lines.append(f"| {name} | {seconds / units * 1e6:,.1f} | {seconds / total * 100:.1f} % |")
    return lines


def top_table(
    parts: Split, units: float, unit: str, top: int, strip: tuple[str, ...] = ()
) -> list[str]:
    """The ``top`` functions by self time (a C function's row is its whole self time)."""
    total = parts.total_s or 1e-12
    lines = [
        f"| function | layer | calls/{unit} | profiled µs/{unit} | share |",
        "|---|---|---:|---:|---:|",
    ]
    for seconds, calls, layer, where in sorted(parts.functions, key=lambda f: -f[0])[:top]:
        short = where
        for prefix in strip:
            short = short.replace(prefix, "")
        lines.append(
            f"| `{short}` | {layer} | {calls / units:,.2f} | {seconds / units * 1e6:,.1f} | "
            f"{seconds / total * 100:.1f} % |"
        )
    return lines


def _opt(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"
