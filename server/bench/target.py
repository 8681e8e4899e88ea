"""Which server a bench run talks to, and the loopback-only rule.

A bench run generates real load, so by default it only talks to this machine: a URL whose host
is not a loopback address is refused unless the caller both gave the URL explicitly and passed
``--allow-remote``. Host names other than ``localhost`` are not resolved: they count as remote.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.bench.errors import BenchError

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str  # "http" or "https"
    host: str  # without IPv6 brackets
    port: int
    base_path: str  # "" or "/prefix" (a server behind a path-routing proxy)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path

    def path(self, path: str) -> str:
        """The request target for an API path (``/api/...``)."""
        return self.base_path + path


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(url: str | None, *, allow_remote: bool = False) -> Target:
    """Validate the bench target. Raises BenchError for a malformed URL or a refused remote host.

    ``url=None`` means the default loopback URL; a remote host needs an explicit URL and
    ``allow_remote``.
    """
    explicit = url is not None
    parts = urlsplit(url if url is not None else DEFAULT_URL)
    if parts.scheme not in ("http", "https"):
        raise BenchError(f"target URL must start with http:// or https://, got {url!r}")
    if not parts.hostname:
        raise BenchError(f"target URL has no host: {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BenchError("target URL must not carry a query, fragment or credentials")
    try:
        port = parts.port
    except ValueError as exc:
        raise BenchError(f"target URL has a bad port: {url!r}") from exc
    host = parts.hostname
    if not is_loopback(host) and not (explicit and allow_remote):
        raise BenchError(
            f"refusing to load the non-loopback host {host}: a bench run generates real "
            "load; pass the URL explicitly with --url and add --allow-remote if you mean it"
        )
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, host, port, parts.path.rstrip("/"))
