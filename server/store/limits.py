"""Per-user limits the store checks inside the writing transaction (where the counts are
exact, so concurrent requests cannot overshoot). Pure rules; raise ``RateLimited``.

The byte quotas (per project and per user) are ``server.vfs.quota``'s.
"""

from __future__ import annotations

from server.errors import RateLimited

__all__ = ["check_project_count", "check_runs_in_flight"]

PROJECT_LIMIT_RETRY_S = 60.0
RUN_LIMIT_RETRY_S = 5.0


def check_project_count(owned: int, limit: int | None) -> None:
    """Raise ``RateLimited`` when a user who owns ``owned`` projects may not create one more."""
    if limit is not None and owned >= limit:
        raise RateLimited(
            f"A user may own at most {limit} projects; delete one first.",
            {"limit": "max_projects_per_user", "max": limit},
            retry_after=PROJECT_LIMIT_RETRY_S,
        )


def check_runs_in_flight(in_flight: int, limit: int | None) -> None:
    """Raise ``RateLimited`` when a user with ``in_flight`` unfinished runs may not start one
    more."""
    if limit is not None and in_flight >= limit:
        raise RateLimited(
            f"A user may have at most {limit} runs in flight; wait for one to end.",
            {"limit": "max_runs_per_user", "max": limit},
            retry_after=RUN_LIMIT_RETRY_S,
        )
