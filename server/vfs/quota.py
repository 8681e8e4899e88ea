"""File quotas: pure rules, checked by the store inside the write transaction (where the
project's and the owner's totals are exact). Raises ``TooLarge``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.errors import TooLarge

if TYPE_CHECKING:
    from server.store.models import FileLimits


def check_quota(
    limits: FileLimits,
    size: int,
    *,
    old_size: int | None,
    file_count: int,
    total_bytes: int,
    user_bytes: int = 0,
) -> None:
    """Raise ``TooLarge`` when writing ``size`` bytes (replacing ``old_size``) breaks a quota.

    ``file_count`` and ``total_bytes`` are the project's totals before the write,
    ``user_bytes`` the owner's across projects (checked when ``limits.max_user_bytes``).
    """
    if size > limits.max_file_bytes:
        raise TooLarge(
            "The file is larger than the limit.",
            {"limit": "max_file_bytes", "max": limits.max_file_bytes, "size": size},
        )
    count_after = file_count + (1 if old_size is None else 0)
    if count_after > limits.max_files:
        raise TooLarge(
            "The project has too many files.",
            {"limit": "max_files", "max": limits.max_files, "files": count_after},
        )
    total_after = total_bytes - (old_size or 0) + size
    if total_after > limits.max_total_bytes:
        raise TooLarge(
            "The project's files are larger than the limit.",
            {"limit": "max_total_bytes", "max": limits.max_total_bytes, "total": total_after},
        )
    user_after = user_bytes - (old_size or 0) + size
    if limits.max_user_bytes is not None and user_after > limits.max_user_bytes:
        raise TooLarge(
            "The user's files, across projects, are larger than the limit.",
            {"limit": "max_bytes_per_user", "max": limits.max_user_bytes, "total": user_after},
        )


def check_stored_total(limits: FileLimits, total_bytes: int) -> None:
    """Raise ``TooLarge`` when the bytes a project stores, its old file versions included
    (file history counts against the quota), exceed ``max_total_bytes``."""
    if total_bytes > limits.max_total_bytes:
        raise TooLarge(
            "The project's files and their kept versions are larger than the limit.",
            {"limit": "max_total_bytes", "max": limits.max_total_bytes, "total": total_bytes},
        )


def check_staged_totals(limits: FileLimits, paths: int, total_bytes: int) -> None:
    """Raise ``TooLarge`` when a review run's changeset holds more paths or bytes than a
    project may hold files (it is bounded like the project it would land in)."""
    if paths > limits.max_files:
        raise TooLarge(
            "The run's changeset has too many files.",
            {"limit": "max_files", "max": limits.max_files, "files": paths},
        )
    if total_bytes > limits.max_total_bytes:
        raise TooLarge(
            "The run's changeset is larger than the limit.",
            {"limit": "max_total_bytes", "max": limits.max_total_bytes, "total": total_bytes},
        )


def check_file_size(limits: FileLimits, size: int) -> None:
    """Raise ``TooLarge`` before a write of ``size`` bytes when one file may not be that large
    (checked before hashing or storing: the store checks every quota again)."""
    if size > limits.max_file_bytes:
        raise TooLarge(
            f"The file is larger than {limits.max_file_bytes} bytes.",
            {"size": size, "max_file_bytes": limits.max_file_bytes},
        )
