"""Strict validation of what a request carries, with contract-shaped errors. Pure.

- JSON bodies: ``parse_json`` refuses nesting deeper than `MAX_JSON_DEPTH` (400
  ``invalid_json``, never a ``RecursionError``) and strings or keys holding a NUL or a lone
  surrogate (400 ``validation_failed``: neither survives PostgreSQL nor UTF-8), then
  ``validate_body`` checks the JSON Schema.
- The request target: ``check_request_target`` refuses a path whose %-decoding is not
  UTF-8 or holds a NUL (400 ``invalid_path``; the server would otherwise read invalid bytes
  as U+FFFD, so ``%ff%fe`` and ``%fe%ff`` would name one file), and such a query string
  (400 ``validation_failed``). Both databases then see the same, valid text.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from server.errors import InvalidJSON, InvalidPath, ValidationFailed

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have."""

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")

_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected")


def _field(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


_validators: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """The schema's validator, built on first use and kept (keyed by the schema object, which
    the cache holds so that its id stays unique). jsonschema is imported here, not at start:
    an idle server never loads it (~5 MB and ~25 ms of start-up)."""
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        from jsonschema import Draft202012Validator

        cached = _validators[id(schema)] = (schema, Draft202012Validator(schema))
    return cached[1]


def problems(data: object, schema: dict[str, Any]) -> dict[str, str]:
    """Field path -> problem, for every violation (unknown fields named one by one)."""
    validator = _validator(schema)
    out: dict[str, str] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties":
            for name in _UNEXPECTED.findall(error.message) or ["?"]:
                for part in name.split("', '"):
                    out[_field([*path, part])] = "unknown field"
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else "?"
            out[_field([*path, missing])] = "required"
            continue
        if error.validator == "type":
            out.setdefault(_field(path), f"must be of type {error.validator_value}")
            continue
        out.setdefault(_field(path), error.message)
    return out


def validate_body(data: object, schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` as a dict when it matches ``schema``; raise ``ValidationFailed``."""
    found = problems(data, schema)
    if found:
        raise ValidationFailed("The request body failed validation.", found)
    if not isinstance(data, dict):  # pragma: no cover - every body schema is an object
        raise ValidationFailed("The request body must be a JSON object.", {"body": "not an object"})
    return data


def object_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A closed object schema: unknown fields are rejected."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _string_problem(text: str) -> str | None:
    found = _BAD_CHAR.search(text)
    if found is None:
        return None
    return "contains a NUL character" if found.group() == "\x00" else "contains a lone surrogate"


def check_strings_and_depth(data: object) -> None:
    """Walk ``data`` iteratively: nesting at most `MAX_JSON_DEPTH` (``InvalidJSON``), no NUL
    or lone surrogate in any string or key (``ValidationFailed`` naming the field)."""
    stack: list[tuple[object, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            problem = _string_problem(value)
            if problem is not None:
                raise ValidationFailed(
                    "A string in the request body is not valid text.", {where or "body": problem}
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidJSON(
                f"The request body nests deeper than {MAX_JSON_DEPTH} levels.",
                {"max_depth": MAX_JSON_DEPTH},
            )
        if isinstance(value, dict):
            for key, item in value.items():
                field = f"{where}.{key}" if where else str(key)
                problem = _string_problem(key)
                if problem is not None:
                    raise ValidationFailed(
                        "A key in the request body is not valid text.", {"body": problem}
                    )
                stack.append((item, field, depth + 1))
        else:
            for index, item in enumerate(value):
                stack.append((item, f"{where}.{index}" if where else str(index), depth + 1))


def parse_json(raw: bytes) -> object:
    """Parse a request body; raises ``InvalidJSON`` or ``ValidationFailed`` (see module doc)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidJSON(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels.",
            {"max_depth": MAX_JSON_DEPTH},
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from None
    check_strings_and_depth(data)
    return data


def _decoded(raw: bytes, *, plus_is_space: bool = False) -> str | None:
    """The %-decoding of ``raw`` as UTF-8 text, or None when it is not valid or has a NUL."""
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def check_request_target(raw_path: bytes, query_string: bytes) -> None:
    """Refuse a request target whose %-decoding is not valid UTF-8 or holds a NUL."""
    if _decoded(raw_path) is None:
        raise InvalidPath(
            "The request path is not valid UTF-8 once %-decoded, or contains a NUL.",
            {"path": "invalid %-encoding or NUL"},
        )
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if _decoded(name, plus_is_space=True) is None or (
            _decoded(value, plus_is_space=True) is None
        ):
            field = _decoded(name, plus_is_space=True) or "query"
            raise ValidationFailed(
                "A query parameter is not valid UTF-8 once %-decoded, or contains a NUL.",
                {field: "invalid %-encoding or NUL"},
            )
