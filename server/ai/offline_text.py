"""The offline provider's text: exact edits for ``ai.edit``, a labelled simulation for
``ai.generate``. Pure and deterministic.

``edited`` applies only instructions that say exactly what to write (``replace "a" with
"b"``, ``append "x"``, ``prepend "x"``, in English or Korean; a fenced block works as the
quoted text); any other instruction raises ``ModelError("model_required")`` so that the step
fails and nothing is written. ``simulation`` is what offline ``ai.generate`` streams in a
user-given plan (benchmarks use it): it says plainly that no model wrote it.
"""

from __future__ import annotations

import re

from server.ai.offline_grammar import MAX_SKELETON, normalize
from server.ai.offline_tokens import Tokens, tokenize
from server.errors import ModelError

SIMULATION_LABEL = "[stretto offline simulation: no language model is configured]"

_TEXT = r"⟨(?P<text>[QF]\d+)⟩"
_KO_END = r"(?:\s*(?:해|하세요)?\s*(?:줘요|줘|주세요|라|요)?)?"
_EDITS: list[tuple[str, re.Pattern[str]]] = [
    (
        "replace",
        re.compile(
            r"replace(?:\s+all)?(?:\s+occurrences\s+of)?\s+⟨Q(?P<old>\d+)⟩\s+(?:with|by)\s+"
            r"⟨Q(?P<new>\d+)⟩",
            re.I,
        ),
    ),
    (
        "replace",
        re.compile(
            r"⟨Q(?P<old>\d+)⟩\s*(?:을|를)?\s*⟨Q(?P<new>\d+)⟩\s*(?:으로|로)\s*(?:모두\s*)?"
            r"(?:바꿔|변경|교체|치환)" + _KO_END
        ),
    ),
    ("append", re.compile(rf"append\s+{_TEXT}(?:\s+(?:at|to)\s+the\s+end)?", re.I)),
    ("append", re.compile(rf"add\s+{_TEXT}\s+(?:at|to)\s+the\s+(?:end|bottom)", re.I)),
    (
        "append",
        re.compile(rf"(?:끝에|마지막에|맨\s*아래에?)\s*{_TEXT}\s*(?:을|를)?\s*추가" + _KO_END),
    ),
    (
        "append",
        re.compile(rf"{_TEXT}\s*(?:을|를)?\s*(?:끝에|마지막에|맨\s*아래에?)\s*추가" + _KO_END),
    ),
    ("prepend", re.compile(rf"prepend\s+{_TEXT}", re.I)),
    (
        "prepend",
        re.compile(rf"(?:add|insert)\s+{_TEXT}\s+(?:at|to)\s+the\s+(?:top|beginning|start)", re.I),
    ),
    ("prepend", re.compile(rf"(?:맨\s*위에|처음에|앞에)\s*{_TEXT}\s*(?:을|를)?\s*추가" + _KO_END)),
    ("prepend", re.compile(rf"{_TEXT}\s*(?:을|를)?\s*(?:맨\s*위에|처음에|앞에)\s*추가" + _KO_END)),
]


def _text(group: str, tokens: Tokens) -> str:
    if group.startswith("F"):
        return tokens.fences[int(group[1:])]
    literal = tokens.literals[int(group[1:])]
    return literal if literal.endswith("\n") else literal + "\n"


def edited(path: str, content: str, instruction: str) -> str:
    """``content`` after an exact instruction; ``ModelError("model_required")`` otherwise."""
    tokens = tokenize(instruction, [])
    text = normalize(tokens.skeleton) if len(tokens.skeleton) <= MAX_SKELETON else ""
    for kind, pattern in _EDITS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        if kind == "replace":
            old = tokens.literals[int(match.group("old"))]
            if old:
                return content.replace(old, tokens.literals[int(match.group("new"))])
            break
        added = _text(match.group("text"), tokens)
        if kind == "prepend":
            return added + content
        sep = "" if not content or content.endswith("\n") else "\n"
        return content + sep + added
    raise ModelError(
        "model_required",
        f"The offline provider cannot apply this instruction to {path} exactly: it needs a "
        'language model. Offline, ai.edit does only: replace "a" with "b", append "x", '
        'prepend "x". Configure Gemini with STRETTO_GEMINI_API_KEY.',
    )


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def simulation(prompt: str) -> str:
    """The labelled stand-in text of offline ``ai.generate``."""
    return (
        f"{SIMULATION_LABEL} This text was not written by a model. Set STRETTO_GEMINI_API_KEY "
        f"to use Gemini. Request: {one_line(prompt)}\n"
    )


def chunks(text: str, words_per_chunk: int = 4) -> list[str]:
    """Split ``text`` into streaming chunks of a few words; ``"".join`` gives it back."""
    pieces = re.findall(r"\s*\S+\s*|\s+", text)
    return [
        "".join(pieces[i : i + words_per_chunk]) for i in range(0, len(pieces), words_per_chunk)
    ] or ([text] if text else [])
