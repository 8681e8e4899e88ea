"""Passwords, tokens (access, refresh, SSE tickets) and the failed-login rate limit."""

from server.auth.passwords import PasswordHasher
from server.auth.principal import Principal, authenticate
from server.auth.ratelimit import LoginRateLimiter
from server.auth.tokens import TokenService

__all__ = ["LoginRateLimiter", "PasswordHasher", "Principal", "TokenService", "authenticate"]
