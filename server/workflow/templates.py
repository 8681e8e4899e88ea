"""Template references in step args: `{{steps.<id>.output}}`, `{{steps.<id>.output.<field>}}`,
and, in a fan-out (``for_each``) step, `{{item}}` / `{{item.<field>}}` (the current item).

Pure functions. ``references`` finds them (for validation), ``render_args`` substitutes the
outputs of finished steps (and the item, when one is given); ``resolve`` returns the value
one reference names (a fan-out step's item list). A ``<field>`` may be a dotted path
(``output.meta.size``); list items are addressed by index (``output.files.0.path``). A whole
output or a non-string value is embedded as compact JSON; a string value is embedded as is.

Size is bounded before anything is built: ``render_args(..., max_bytes=n)`` counts the bytes
the substitutions of one call produce together (the step's args) and raises
``ArgsTooLarge`` as soon as they would pass ``n``, so a few-KB plan repeating a large output
cannot make the process build gigabytes. Non-string values are encoded incrementally and
the encoding stops at the bound.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_FIELD = r"[A-Za-z0-9_-]+"
TEMPLATE_RE = re.compile(
    r"\{\{\s*steps\.(?P<step>[a-z0-9_-]{1,64})\.output(?P<path>(?:\." + _FIELD + r")*)\s*\}\}"
)
ITEM_RE = re.compile(r"\{\{\s*item(?P<path>(?:\." + _FIELD + r")*)\s*\}\}")
_ITEM_ALT = ITEM_RE.pattern.replace("?P<path>", "?P<ipath>")
_ANY_RE = re.compile(f"{TEMPLATE_RE.pattern}|{_ITEM_ALT}")
# Anything that looks like a reference; compared with the exact forms to spot malformed ones.
_LOOSE_RE = re.compile(r"\{\{\s*steps\b.*?\}\}")
_LOOSE_ITEM_RE = re.compile(r"\{\{\s*item\b.*?\}\}")
NO_ITEM: Any = object()
"""``render_args``'s default: the step is not a fan-out item (an item reference fails)."""


class TemplateError(ValueError):
    """A reference that cannot be resolved (missing field); a permanent step failure."""

    code = "invalid_reference"


class ArgsTooLarge(TemplateError):
    """The substitutions of one step's args would pass the configured bound."""

    code = "args_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"the step's arguments after template substitution would exceed {max_bytes} bytes"
        )
        self.max_bytes = max_bytes


class _Budget:
    """Bytes the substitutions of one ``render_args`` call may still produce."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.left = limit

    def take(self, nbytes: int) -> None:
        if self.left is None or self.limit is None:
            return
        self.left -= nbytes
        if self.left < 0:
            raise ArgsTooLarge(self.limit)


@dataclass(frozen=True, slots=True)
class Reference:
    arg_path: str  # where in args: "path", "files.0"...
    step_id: str
    field_path: tuple[str, ...]


def _walk_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk_strings(item, f"{where}.{index}" if where else str(index))


def references(args: Mapping[str, Any]) -> tuple[list[Reference], list[str]]:
    """All well-formed step references in ``args`` and the arg paths holding malformed ones
    (step or item references)."""
    found: list[Reference] = []
    malformed: list[str] = []
    for where, text in _walk_strings(args, ""):
        if "{{" not in text:
            continue
        for match in TEMPLATE_RE.finditer(text):
            path = tuple(p for p in match.group("path").split(".") if p)
            found.append(Reference(where, match.group("step"), path))
        loose = [m.group(0) for m in _LOOSE_RE.finditer(text)]
        loose_items = [m.group(0) for m in _LOOSE_ITEM_RE.finditer(text)]
        if any(TEMPLATE_RE.fullmatch(item) is None for item in loose) or any(
            ITEM_RE.fullmatch(item) is None for item in loose_items
        ):
            malformed.append(where)
    return found, malformed


def item_references(args: Mapping[str, Any]) -> list[str]:
    """The arg paths in ``args`` that hold a well-formed ``{{item...}}`` reference."""
    return [where for where, text in _walk_strings(args, "") if ITEM_RE.search(text)]


def parse_reference(text: str) -> Reference | None:
    """``text`` as one whole step reference (surrounding blanks allowed), else None."""
    match = TEMPLATE_RE.fullmatch(text.strip())
    if match is None:
        return None
    path = tuple(p for p in match.group("path").split(".") if p)
    return Reference("", match.group("step"), path)


def resolve(ref: Reference, outputs: Mapping[str, Any]) -> Any:
    """The value ``ref`` names in the finished steps' ``outputs``; raises ``TemplateError``."""
    if ref.step_id not in outputs:
        raise TemplateError(f"steps.{ref.step_id}: output not available")
    return _lookup(outputs[ref.step_id], ref.step_id, ref.field_path)


def _lookup(output: Any, step_id: str, path: tuple[str, ...], root: str = "output") -> Any:
    value = output
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            dotted = ".".join((root, *path))
            where = dotted if root == "item" else f"steps.{step_id}.{dotted}"
            whose = "the current item" if root == "item" else "the step's output"
            raise TemplateError(f"{where}: no such field in {whose}")
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _text_bytes(text: str, budget: _Budget) -> None:
    """Charge ``text``'s UTF-8 size; a string longer than what is left fails unencoded."""
    if budget.left is None:
        return
    if len(text) > budget.left:
        budget.take(len(text))  # at least one byte per character: over the bound
    budget.take(len(text.encode("utf-8", "surrogatepass")))


def _embed(value: Any, budget: _Budget) -> str:
    if isinstance(value, str):
        _text_bytes(value, budget)
        return value
    parts: list[str] = []
    for chunk in _ENCODER.iterencode(value):  # stops as soon as the bound is passed
        _text_bytes(chunk, budget)
        parts.append(chunk)
    return "".join(parts)


def render_string(
    text: str, outputs: Mapping[str, Any], max_bytes: int | None = None, item: Any = NO_ITEM
) -> str:
    """``text`` with its references replaced; see ``render_args``."""
    return _render_string(text, outputs, _Budget(max_bytes), item)


def _render_string(text: str, outputs: Mapping[str, Any], budget: _Budget, item: Any) -> str:
    def substitute(match: re.Match[str]) -> str:
        step_id = match.group("step")
        if step_id is None:  # an item reference
            path = tuple(p for p in match.group("ipath").split(".") if p)
            if item is NO_ITEM:
                raise TemplateError("{{item}} is only available in a for_each step")
            return _embed(_lookup(item, "", path, root="item"), budget)
        if step_id not in outputs:
            raise TemplateError(f"steps.{step_id}: output not available")
        path = tuple(p for p in match.group("path").split(".") if p)
        return _embed(_lookup(outputs[step_id], step_id, path), budget)

    # One pass: text an item brings in is never scanned for references again.
    return _ANY_RE.sub(substitute, text)


def render_args(
    args: Any, outputs: Mapping[str, Any], max_bytes: int | None = None, item: Any = NO_ITEM
) -> Any:
    """A copy of ``args`` with every reference replaced; raises ``TemplateError``.

    ``item`` is the current item of a fan-out step (``{{item...}}``); without one an item
    reference fails. ``max_bytes`` bounds the bytes all substitutions of this call produce
    together; passing it raises ``ArgsTooLarge`` (a ``TemplateError``) before the oversized
    value is built.
    """
    return _render(args, outputs, _Budget(max_bytes), item)


def _render(args: Any, outputs: Mapping[str, Any], budget: _Budget, item: Any) -> Any:
    if isinstance(args, str):
        return _render_string(args, outputs, budget, item) if "{{" in args else args
    if isinstance(args, Mapping):
        return {key: _render(value, outputs, budget, item) for key, value in args.items()}
    if isinstance(args, list | tuple):
        return [_render(value, outputs, budget, item) for value in args]
    return args


def render_item(args: Any, item: Any, max_bytes: int | None = None) -> Any:
    """A copy of ``args`` with only the ``{{item...}}`` references replaced (the args a
    fan-out item shows in the run's steps list; step references stay as written)."""
    budget = _Budget(max_bytes)

    def substitute(match: re.Match[str]) -> str:
        path = tuple(p for p in match.group("path").split(".") if p)
        return _embed(_lookup(item, "", path, root="item"), budget)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return ITEM_RE.sub(substitute, value) if "{{" in value else value
        if isinstance(value, Mapping):
            return {key: walk(v) for key, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(args)
