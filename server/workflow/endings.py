"""How a run ends early, and the one home of the error objects those endings write (API.md).

Pure. ``Ending`` is the first cause that ends a run (``transitions.RunState.end``); the
constants are the user cancel, timeout, shutdown and could-not-record endings, and the
helpers build the planning-failed and step-failed ones. A run awaiting approval ends
``REJECTED`` or ``APPROVAL_TIMED_OUT``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

CancelReason = Literal["user", "timeout", "shutdown", "sibling_failed"]
EndKind = Literal["failed", "cancelled", "timeout", "shutdown"]


@dataclass(frozen=True)
class Ending:
    """Why a run ends before all its steps ran; ``error`` is the run's error object."""

    kind: EndKind
    error: dict[str, Any]

    @property
    def step_reason(self) -> CancelReason:
        """The ``reason`` of the ``step.cancelled`` events this ending causes."""
        return _STEP_REASON[self.kind]

    @property
    def resumable(self) -> bool:
        return self.kind == "shutdown"


_STEP_REASON: dict[EndKind, CancelReason] = {
    "failed": "sibling_failed",
    "cancelled": "user",
    "timeout": "timeout",
    "shutdown": "shutdown",
}

# The one home of the cancel, timeout and shutdown error objects (API.md).
USER_CANCELLED = Ending(
    "cancelled", {"code": "cancelled", "message": "Cancelled by the user.", "reason": "user"}
)
TIMED_OUT = Ending(
    "timeout", {"code": "timeout", "message": "The run timed out.", "reason": "timeout"}
)
SHUTDOWN = Ending(
    "shutdown", {"code": "shutdown", "message": "The server shut down.", "reason": "shutdown"}
)
NOT_RECORDED = Ending(
    "failed", {"code": "internal_error", "message": "The run could not be recorded."}
)
ENDINGS: dict[str, Ending] = {"user": USER_CANCELLED, "timeout": TIMED_OUT, "shutdown": SHUTDOWN}
# How a run awaiting approval ends without running (``run.cancelled`` with this ``reason``).
REJECTED = Ending(
    "cancelled", {"code": "cancelled", "message": "The plan was rejected.", "reason": "rejected"}
)
APPROVAL_TIMED_OUT = Ending(
    "cancelled",
    {
        "code": "cancelled",
        "message": "Nobody approved the plan in time.",
        "reason": "approval_timeout",
    },
)


def step_cancelled_error(reason: CancelReason) -> dict[str, Any]:
    """The ``error`` object of a step cancelled with ``reason``."""
    return {"code": "cancelled", "message": "The step was cancelled.", "reason": reason}


def planning_failed(
    message: str, details: Mapping[str, Any] | None = None, code: str = "planning_failed"
) -> Ending:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = dict(details)
    return Ending("failed", error)


def step_failed_ending(step_id: str, message: str, error: Mapping[str, Any]) -> Ending:
    return Ending(
        "failed",
        {
            "code": "step_failed",
            "message": f"Step {step_id!r} failed: {message}",
            "step_id": step_id,
            "step_error": dict(error),
        },
    )
