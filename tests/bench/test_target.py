"""The loopback-only rule and target URLs of ``stretto bench``."""

from __future__ import annotations

import pytest

from server.bench.errors import BenchError
from server.bench.target import DEFAULT_URL, parse_target


def test_default_is_loopback() -> None:
    target = parse_target(None)
    assert target.base_url == DEFAULT_URL


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9", "http://127.3.4.5:9", "http://localhost:9", "http://[::1]:9"]
)
def test_loopback_hosts_are_accepted(url: str) -> None:
    assert parse_target(url).port == 9


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "https://example.com", "http://0.0.0.0"])
def test_remote_hosts_are_refused_without_allow_remote(url: str) -> None:
    with pytest.raises(BenchError, match="refusing"):
        parse_target(url)


def test_remote_host_needs_explicit_url_and_flag() -> None:
    target = parse_target("https://stretto.example.com/base/", allow_remote=True)
    assert (target.scheme, target.host, target.port) == ("https", "stretto.example.com", 443)
    assert target.path("/api/health") == "/base/api/health"
    assert target.host_header == "stretto.example.com"


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1", "http://", "http://127.0.0.1:99999", "http://127.0.0.1/?x=1"]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(BenchError):
        parse_target(url)


def test_ipv6_origin_keeps_brackets() -> None:
    target = parse_target("http://[::1]:8080")
    assert target.origin == "http://[::1]:8080"
    assert target.host == "::1"
