"""Run options (API.md ``options``): validated once, when a run is submitted. Pure."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from server.errors import ValidationFailed

if TYPE_CHECKING:
    from collections.abc import Mapping

    from server.config import Settings

MAX_RUN_TIMEOUT_S = 24 * 3600.0


def validate_options(options: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Run options: ``concurrency`` (1..run_concurrency), ``timeout_s`` (seconds),
    ``approval`` (``"plan"``: the planned run waits for ``POST .../approve``) and
    ``changes`` (``direct``, the default, or ``review``: file writes go to a changeset).

    Raises ``ValidationFailed`` naming the field.
    """
    problems: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key == "concurrency":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems["options.concurrency"] = "must be a positive integer"
            else:
                out[key] = min(value, settings.run_concurrency)
        elif key == "timeout_s":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not 0 < value <= MAX_RUN_TIMEOUT_S:
                problems["options.timeout_s"] = f"must be a number in (0, {MAX_RUN_TIMEOUT_S:g}]"
            else:
                out[key] = float(value)
        elif key == "approval":
            if value != "plan":
                problems["options.approval"] = 'must be "plan"'
            else:
                out[key] = value
        elif key == "changes":
            if value not in ("direct", "review"):
                problems["options.changes"] = 'must be "direct" or "review"'
            else:
                out[key] = value
        else:
            problems[f"options.{key}"] = "unknown option"
    if problems:
        raise ValidationFailed("The run options are not valid.", problems)
    return out
