"""Passwords, tokens (access, refresh, SSE tickets) and the failed-login rate limit."""
