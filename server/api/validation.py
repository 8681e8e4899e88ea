"""Strict validation of JSON bodies against JSON Schema, with contract-shaped errors. Pure."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from server.errors import ValidationFailed

_UNEXPECTED = re.compile(r"'([^']+)' (?:was|were) unexpected")


def _field(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def problems(data: object, schema: dict[str, Any]) -> dict[str, str]:
    """Field path -> problem, for every violation (unknown fields named one by one)."""
    validator = Draft202012Validator(schema)
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
