"""JSON Web Key Sets: parsing, key choice by ``kid``, and ``RemoteKeySet`` (a JWKS URL).

``RemoteKeySet`` owns the public keys fetched from one URL (the external auth service's
JWKS). Its ``run`` is a background service: started with ``nursery.start`` in the service
nursery, it fetches once before reporting ready, then again every ``ttl_s`` (sooner, after
``min_refresh_s``, while the last fetch failed). Requests never fetch themselves:

- ``key_for(kid)`` answers from the current set at once;
- an unknown ``kid`` asks the service for one refresh and waits for it at most
  ``timeout_s``; every request arriving meanwhile waits for that same refresh;
- after a refresh asked for by a request, unknown kids get ``Unauthorized`` at once for
  ``min_refresh_s``: a flood of random kids costs the auth service one fetch per interval;
- one fetch is bounded by ``timeout_s`` (and ``MAX_JWKS_BYTES``); a failed fetch keeps the
  last good set.

Cancelling ``run`` (service shutdown) wakes any waiting request, which then gets
``Unauthorized``. ``parse_jwks`` and ``select_key`` are pure.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.errors import Unauthorized

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx  # imported where used: only a server with a JWKS URL needs it (idle RSS)

log = logging.getLogger("stretto.auth")

MAX_JWKS_BYTES = 256 * 1024

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
KeyMap = dict[str | None, PublicKey]


class JWKSError(ValueError):
    """A key or key set that cannot verify tokens of the pinned algorithm."""


def check_key(key: object, algorithm: str, where: str) -> PublicKey:
    """``key`` as a public key for ``algorithm`` (a private key yields its public half).

    Raises ``JWKSError`` for another type or, for ES256, another curve than P-256.
    """
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    expected = rsa.RSAPublicKey if algorithm == "RS256" else ec.EllipticCurvePublicKey
    if not isinstance(key, expected):
        raise JWKSError(f"{where}: not a public key for {algorithm}")
    if isinstance(key, ec.EllipticCurvePublicKey) and not isinstance(key.curve, ec.SECP256R1):
        raise JWKSError(f"{where}: ES256 needs a P-256 key")
    return key


def parse_jwks(document: object, algorithm: str, where: str) -> KeyMap:
    """Signing keys of a JWKS document usable with ``algorithm``, by ``kid``.

    Keys of another type, another ``alg`` or ``use`` are skipped. Raises ``JWKSError``
    when the document is not a key set or no key is left.
    """
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JWKSError(f"{where}: a JWKS holds {{'keys': [...]}}")
    keys: KeyMap = {}
    kty = "RSA" if algorithm == "RS256" else "EC"
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != kty:
            continue
        if entry.get("alg", algorithm) != algorithm or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        try:
            jwk = jwt.PyJWK(entry, algorithm=algorithm)
            keys[kid if isinstance(kid, str) else None] = check_key(jwk.key, algorithm, where)
        except (jwt.PyJWKError, jwt.InvalidKeyError, JWKSError):
            continue
    if not keys:
        raise JWKSError(f"{where}: no {algorithm} signing key in the JWKS")
    return keys


def select_key(keys: Mapping[str | None, PublicKey], kid: object) -> PublicKey | None:
    """The key a token's ``kid`` names; a token without ``kid`` (or a set holding one key
    without ``kid``, such as a PEM file) uses the only key. None when there is no match."""
    if isinstance(kid, str) and kid in keys:
        return keys[kid]
    if len(keys) == 1 and (kid is None or None in keys):
        return next(iter(keys.values()))
    return None


class RemoteKeySet:
    """The keys of a JWKS URL, kept fresh by ``run`` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        algorithm: str,
        *,
        ttl_s: float,
        min_refresh_s: float,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.algorithm = algorithm
        self.fetches = 0  # attempts, successful or not
        self.failures = 0  # attempts that kept the previous set
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._transport = transport
        self._keys: KeyMap = {}
        self._healthy = False
        self._running = False
        self._wanted = trio.Event()
        self._pending: trio.Event | None = None  # set when the next refresh ends
        self._last_on_demand = -math.inf

    @property
    def kids(self) -> list[str | None]:
        return list(self._keys)

    def lookup(self, kid: object) -> PublicKey | None:
        """The key for ``kid`` in the current set; never waits."""
        return select_key(self._keys, kid)

    async def key_for(self, kid: object) -> PublicKey:
        """The key for ``kid``, waiting at most ``timeout_s`` for one refresh when it is
        unknown. Raises ``Unauthorized`` when it stays unknown or refreshes are limited."""
        key = self.lookup(kid)
        if key is not None:
            return key
        done = self._request_refresh()
        if done is None:
            raise Unauthorized()
        with trio.move_on_after(self._timeout_s):
            await done.wait()
        key = self.lookup(kid)
        if key is None:
            raise Unauthorized()
        return key

    def _request_refresh(self) -> trio.Event | None:
        if not self._running:
            return None
        if self._pending is not None:  # a refresh is asked for or under way: share it
            return self._pending
        now = trio.current_time()
        if now - self._last_on_demand < self._min_refresh_s:
            return None
        self._last_on_demand = now
        self._pending = trio.Event()
        self._wanted.set()
        return self._pending

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Fetch, report ready (even when the first fetch failed), then keep the set fresh
        until cancelled."""
        import httpx

        async with httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout_s, follow_redirects=False
        ) as client:
            try:
                await self._refresh(client)
                self._running = True
                task_status.started()
                while True:
                    delay = self._ttl_s if self._healthy else min(self._ttl_s, self._min_refresh_s)
                    with trio.move_on_after(delay):
                        await self._wanted.wait()
                    await self._refresh(client)
            finally:
                self._running = False
                if self._pending is not None:
                    self._pending.set()

    async def _refresh(self, client: httpx.AsyncClient) -> None:
        import httpx

        done = self._pending if self._pending is not None else trio.Event()
        self._pending = done
        self._wanted = trio.Event()
        self.fetches += 1
        try:
            keys: KeyMap | None = None
            with trio.move_on_after(self._timeout_s):
                keys = await self._fetch(client)
            if keys is None:
                raise JWKSError(f"no answer within {self._timeout_s}s")
        except (httpx.HTTPError, JWKSError, ValueError) as exc:
            self.failures += 1
            self._healthy = False
            log.warning(
                "JWKS %s: fetch failed, keeping %d cached key(s): %s",
                self.url,
                len(self._keys),
                exc,
            )
        else:
            if set(keys) != set(self._keys):
                log.info("JWKS %s: keys %s", self.url, sorted(str(k) for k in keys))
            self._keys = keys
            self._healthy = True
        finally:
            self._pending = None
            done.set()

    async def _fetch(self, client: httpx.AsyncClient) -> KeyMap:
        body = bytearray()
        async with client.stream("GET", self.url, headers={"Accept": "application/json"}) as r:
            if r.status_code != 200:
                raise JWKSError(f"HTTP {r.status_code}")
            declared = r.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise JWKSError(f"larger than {MAX_JWKS_BYTES} bytes")
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JWKSError(f"larger than {MAX_JWKS_BYTES} bytes")
        document: Any = json.loads(bytes(body))
        return parse_jwks(document, self.algorithm, self.url)
