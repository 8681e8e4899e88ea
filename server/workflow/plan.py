"""What a plan is and how it is validated (the static half of the dependency analyzer).

Pure: no trio, quart or driver imports. ``parse_plan`` turns untrusted JSON into a frozen
``Plan`` or raises ``InvalidPlan`` whose ``details`` name every problem found:
``{"steps.<id>.<part>": "problem", "cycle": [ids...]}`` (a step without a usable id is
named by position: ``steps[3]``).

Fan-out: a step with ``"for_each": "{{steps.<id>.output[.<field>]}}"`` runs once per item of
that (list) value; ``<id>`` must be in its ``needs``, and its args may use ``{{item}}`` or
``{{item.<field>}}``. No other step may use ``{{item...}}``. The item count is bounded at run
time (``max_fanout_items``); the items' step ids are ``<id>[<index>]`` (``item_step_id``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.errors import InvalidPlan
from server.workflow.graph import find_cycle
from server.workflow.templates import item_references, parse_reference, references
from server.workflow.tools.registry import args_validator

if TYPE_CHECKING:
    from server.workflow.tools.registry import ToolRegistry

STEP_ID_RE = re.compile(r"[a-z0-9_-]{1,64}")
MAX_STEP_TIMEOUT_S = 3600.0
MAX_STEP_RETRIES = 10
_STEP_KEYS = frozenset(
    {"id", "tool", "args", "needs", "timeout_s", "retries", "continue_on_error", "for_each"}
)
ITEM_ID_RE = re.compile(r"(?P<parent>[a-z0-9_-]{1,64})\[(?P<index>[0-9]{1,9})\]")


def item_step_id(parent: str, index: int) -> str:
    """The step id of item ``index`` of fan-out step ``parent``: ``edit[3]``."""
    return f"{parent}[{index}]"


def split_item_id(step_id: str) -> tuple[str, int] | None:
    """(parent id, index) of a fan-out item's step id, None for a plan step's id."""
    match = ITEM_ID_RE.fullmatch(step_id)
    return None if match is None else (match.group("parent"), int(match.group("index")))


@dataclass(frozen=True, slots=True)
class PlanStep:
    id: str
    tool: str
    args: Mapping[str, Any]
    needs: tuple[str, ...] = ()
    timeout_s: float | None = None
    retries: int | None = None
    continue_on_error: bool = False
    for_each: str | None = None  # "{{steps.<id>.output...}}": run once per item of that list

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "tool": self.tool,
            "args": dict(self.args),
            "needs": list(self.needs),
        }
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.retries is not None:
            out["retries"] = self.retries
        if self.continue_on_error:
            out["continue_on_error"] = True
        if self.for_each is not None:
            out["for_each"] = self.for_each
        return out


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[PlanStep, ...]

    def to_json(self) -> dict[str, Any]:
        return {"steps": [step.to_json() for step in self.steps]}

    def step(self, step_id: str) -> PlanStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        return {step.id: step.needs for step in self.steps}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(float(value))  # type: ignore[arg-type]


def _schema_problem(error: Any) -> tuple[str, str]:
    where = ".".join(str(p) for p in error.absolute_path)
    return where, str(error.message)


class _Collector:
    def __init__(self) -> None:
        self.details: dict[str, Any] = {}

    def add(self, key: str, problem: str) -> None:
        self.details.setdefault(key, problem)


def _parse_step(
    raw: object, index: int, registry: ToolRegistry, seen: set[str], errs: _Collector
) -> PlanStep | None:
    """Validate one step's own fields (not its references to other steps)."""
    if not isinstance(raw, Mapping):
        errs.add(f"steps[{index}]", "must be an object")
        return None
    step_id = raw.get("id")
    if not isinstance(step_id, str) or STEP_ID_RE.fullmatch(step_id) is None:
        errs.add(f"steps[{index}].id", "must match [a-z0-9_-]{1,64}")
        return None
    key = f"steps.{step_id}"
    if step_id in seen:
        errs.add(f"{key}.id", f"duplicate step id {step_id!r}")
        return None
    seen.add(step_id)
    ok = True
    for unknown in sorted(set(raw) - _STEP_KEYS):
        errs.add(f"{key}.{unknown}", "unknown field")
        ok = False

    tool_name = raw.get("tool")
    tool = registry.get(tool_name) if isinstance(tool_name, str) else None
    if tool is None:
        errs.add(f"{key}.tool", f"unknown tool {tool_name!r}")
        ok = False

    args = raw.get("args", {})
    if not isinstance(args, Mapping):
        errs.add(f"{key}.args", "must be an object")
        ok = False
    elif tool is not None:
        validator = args_validator(tool)
        for error in sorted(validator.iter_errors(dict(args)), key=lambda e: list(e.path)):
            where, message = _schema_problem(error)
            errs.add(f"{key}.args.{where}" if where else f"{key}.args", message)
            ok = False
        if ok and tool.check_args is not None:  # checks JSON Schema cannot express
            for where, message in tool.check_args(args).items():
                errs.add(f"{key}.args.{where}", message)
                ok = False

    needs_raw = raw.get("needs", [])
    needs: tuple[str, ...] = ()
    if not isinstance(needs_raw, list) or not all(isinstance(n, str) for n in needs_raw):
        errs.add(f"{key}.needs", "must be a list of step ids")
        ok = False
    elif len(set(needs_raw)) != len(needs_raw):
        errs.add(f"{key}.needs", "lists a step twice")
        ok = False
    elif step_id in needs_raw:
        errs.add(f"{key}.needs", "a step cannot need itself")
        errs.details.setdefault("cycle", [step_id])
        ok = False
    else:
        needs = tuple(needs_raw)

    timeout_s = raw.get("timeout_s")
    if timeout_s is not None and not (
        _is_number(timeout_s) and 0 < timeout_s <= MAX_STEP_TIMEOUT_S
    ):
        errs.add(f"{key}.timeout_s", f"must be a number in (0, {MAX_STEP_TIMEOUT_S:g}]")
        ok = False
    retries = raw.get("retries")
    if retries is not None and not (_is_int(retries) and 0 <= retries <= MAX_STEP_RETRIES):
        errs.add(f"{key}.retries", f"must be an integer in [0, {MAX_STEP_RETRIES}]")
        ok = False
    continue_on_error = raw.get("continue_on_error", False)
    if not isinstance(continue_on_error, bool):
        errs.add(f"{key}.continue_on_error", "must be a boolean")
        ok = False
    for_each = raw.get("for_each")
    if for_each is not None and (
        not isinstance(for_each, str) or parse_reference(for_each) is None
    ):
        errs.add(
            f"{key}.for_each",
            "must be one reference to a list: {{steps.<id>.output}} or "
            "{{steps.<id>.output.<field>}}",
        )
        ok = False
    if not ok or tool is None or not isinstance(args, Mapping):
        return None
    return PlanStep(
        id=step_id,
        tool=tool.name,
        args=dict(args),
        needs=needs,
        timeout_s=float(timeout_s) if timeout_s is not None else None,
        retries=retries,
        continue_on_error=continue_on_error,
        for_each=for_each.strip() if isinstance(for_each, str) else None,
    )


def _check_links(raw_steps: list[Any], ids: set[str], errs: _Collector) -> None:
    """``needs`` name existing steps; template references name direct needs."""
    for raw in raw_steps:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            continue
        key = f"steps.{raw['id']}"
        needs = raw.get("needs", [])
        if isinstance(needs, list):
            for need in needs:
                if isinstance(need, str) and need not in ids:
                    errs.add(f"{key}.needs", f"unknown step {need!r}")
        args = raw.get("args")
        if not isinstance(args, Mapping):
            continue
        refs, malformed = references(args)
        for where in malformed:
            errs.add(
                f"{key}.args.{where}",
                "malformed reference: use {{steps.<id>.output}} or {{steps.<id>.output.<field>}}",
            )
        direct = set(needs) if isinstance(needs, list) else set()
        for ref in refs:
            if ref.step_id not in direct:
                errs.add(
                    f"{key}.args.{ref.arg_path}",
                    f"references step {ref.step_id!r}, which is not in this step's needs",
                )
        for_each = raw.get("for_each")
        source = parse_reference(for_each) if isinstance(for_each, str) else None
        if source is not None and source.step_id not in direct:
            errs.add(
                f"{key}.for_each",
                f"references step {source.step_id!r}, which is not in this step's needs",
            )
        if for_each is None:
            for where in item_references(args):
                errs.add(f"{key}.args.{where}", "{{item}} is only allowed in a for_each step")


def parse_plan(data: object, registry: ToolRegistry, max_steps: int) -> Plan:
    """Validate untrusted plan JSON. Raises ``InvalidPlan`` with every problem in ``details``."""
    errs = _Collector()
    if not isinstance(data, Mapping):
        raise InvalidPlan(
            "The plan must be an object with a steps list.", {"plan": "must be an object"}
        )
    for unknown in sorted(set(data) - {"steps"}):
        errs.add(f"plan.{unknown}", "unknown field")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        errs.add("steps", "must be a non-empty list")
        raise InvalidPlan("The plan is not valid.", errs.details)
    if len(raw_steps) > max_steps:
        errs.add("steps", f"at most {max_steps} steps are allowed, got {len(raw_steps)}")
        raise InvalidPlan("The plan has too many steps.", errs.details)

    seen: set[str] = set()
    parsed = [_parse_step(raw, i, registry, seen, errs) for i, raw in enumerate(raw_steps)]
    _check_links(raw_steps, seen, errs)
    if "cycle" not in errs.details:
        graph: dict[str, list[str]] = {}
        for raw in raw_steps:
            if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
                needs = raw.get("needs", [])
                graph.setdefault(
                    raw["id"],
                    [n for n in needs if isinstance(n, str)] if isinstance(needs, list) else [],
                )
        cycle = find_cycle(graph)
        if cycle is not None:
            errs.details["cycle"] = cycle
            for member in cycle:
                errs.add(
                    f"steps.{member}.needs", f"part of a dependency cycle: {' -> '.join(cycle)}"
                )
    if errs.details:
        first = next((k for k in errs.details if k.startswith("steps")), next(iter(errs.details)))
        raise InvalidPlan(f"The plan is not valid: {first}: {errs.details[first]}", errs.details)
    steps = tuple(step for step in parsed if step is not None)
    return Plan(steps=steps)
