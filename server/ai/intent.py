"""Intent analysis: a request and the project's file listing -> ``{intent, confidence,
summary, targets}`` with ``intent`` in the closed set ``INTENTS``.

The model's answer is untrusted: ``normalize_intent`` coerces it into the contract shape
(an unknown intent becomes ``unknown``, confidence is clamped, targets must be valid
paths), so the rest of the system never sees a malformed intent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.ai.prompts import INTENT_SCHEMA, INTENT_SYSTEM, INTENTS, intent_prompt, listing_text
from server.errors import InvalidPath
from server.vfs.paths import validate_path

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from server.ai.provider import ModelProvider

MAX_TARGETS = 50
MAX_SUMMARY = 500


def _is_path(value: str) -> bool:
    try:
        validate_path(value.removesuffix("/"))
    except InvalidPath:
        return False
    return True


def normalize_intent(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The contract shape of an intent, whatever the model answered."""
    intent = raw.get("intent")
    if intent not in INTENTS:
        intent = "unknown"
    confidence = raw.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        confidence = 0.0
    confidence = min(1.0, max(0.0, float(confidence)))
    if confidence != confidence:  # NaN
        confidence = 0.0
    summary = raw.get("summary")
    summary = summary.strip()[:MAX_SUMMARY] if isinstance(summary, str) else ""
    targets_raw = raw.get("targets")
    targets: list[str] = []
    if isinstance(targets_raw, list):
        for item in targets_raw:
            if isinstance(item, str) and _is_path(item.strip()) and item.strip() not in targets:
                targets.append(item.strip())
    return {
        "intent": intent,
        "confidence": round(confidence, 3),
        "summary": summary,
        "targets": targets[:MAX_TARGETS],
    }


class IntentAnalyzer:
    """Asks the provider for the intent of a request. Raises ``ModelError``."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider

    async def analyze(
        self, prompt: str, listing: Sequence[Mapping[str, Any]], total: int | None
    ) -> dict[str, Any]:
        raw = await self.provider.generate_json(
            system=INTENT_SYSTEM,
            prompt=intent_prompt(prompt, listing_text(listing, total)),
            schema=INTENT_SCHEMA,
            hints={"task": "intent", "prompt": prompt, "files": [f["path"] for f in listing]},
        )
        return normalize_intent(raw)
