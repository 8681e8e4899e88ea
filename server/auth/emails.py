"""Email normalization and the simple syntax check used at registration. Pure."""

from __future__ import annotations

import re

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_CHARS = 254


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased: the form stored and compared."""
    return raw.strip().lower()


def is_valid_email(email: str) -> bool:
    """``local@domain.tld`` without spaces, at most 254 characters (after normalizing)."""
    return len(email) <= MAX_EMAIL_CHARS and EMAIL_RE.match(email) is not None
