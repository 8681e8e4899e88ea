"""systemd/stretto.service: key directives, `systemd-analyze verify` and its security score."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from server.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "stretto.service"
ENV_EXAMPLE = ROOT / "systemd" / "stretto.env.example"
HARD_EXIT_MARGIN_S = 10  # main.py: hard exit at grace + HTTP drain + 10 s

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    sections: Unit = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    (value,) = service[key]
    return value


def test_notify_type_and_state(service: dict[str, list[str]]) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "all"  # the one-file bootloader's child notifies
    assert one(service, "DynamicUser") == "yes"
    assert one(service, "StateDirectory") == "stretto"
    assert one(service, "EnvironmentFile") == "-/etc/stretto/stretto.env"
    assert "STRETTO_DATA_DIR=%S/stretto" in service["Environment"]
    assert one(service, "ExecStart").split()[1] == "serve"


def test_hardening(service: dict[str, list[str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert one(service, key) == value, key
    assert "@system-service" in service["SystemCallFilter"]
    assert re.fullmatch(r"\d+[KMG]", one(service, "MemoryMax"))
    assert int(one(service, "LimitNOFILE")) >= 65536


def test_stop_timeout_outlasts_the_graceful_shutdown(service: dict[str, list[str]]) -> None:
    from server.runtime.http_server import HTTP_DRAIN_S  # the whole app: imported only here

    assert one(service, "KillSignal") == "SIGTERM"
    assert one(service, "KillMode") == "mixed"  # SIGTERM once, via the bootloader
    stop = int(one(service, "TimeoutStopSec"))
    assert stop > Settings().shutdown_grace_s + HTTP_DRAIN_S + HARD_EXIT_MARGIN_S
    assert int(one(service, "WatchdogSec")) > 0


def test_unit_environment_and_example_name_real_settings(service: dict[str, list[str]]) -> None:
    unit_env = dict(line.split("=", 1) for line in service["Environment"])
    unit_env["STRETTO_DATA_DIR"] = "/var/lib/stretto"
    load_settings(environ=unit_env)  # parses and validates
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert len(names) > 10
    for name in names:
        field = "database_url" if name == "DATABASE_URL" else name.removeprefix("STRETTO_").lower()
        assert name == "DATABASE_URL" or name.startswith("STRETTO_"), name
        assert hasattr(Settings(), field), name


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit as shipped, its ExecStart pointed at an executable that exists here."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    binary = tmp_path / "stretto"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "stretto.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/stretto", str(binary)))
    return unit


def test_systemd_analyze_verify(verifiable_unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    complaints = [line for line in done.stderr.splitlines() if "stretto" in line]
    assert done.returncode == 0, done.stderr
    assert complaints == []


def test_systemd_analyze_security_exposure_is_low(verifiable_unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(verifiable_unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score offline: {done.stderr.strip()}")
    assert float(match.group(1)) <= 2.0, done.stdout
