"""Pure tests of plan validation, the dependency analyzer and templates (with hypothesis)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import InvalidPlan
from server.workflow.analyzer import DependencyAnalyzer, critical_path
from server.workflow.graph import find_cycle
from server.workflow.plan import parse_plan
from server.workflow.templates import TemplateError, render_args
from server.workflow.tools.defaults import default_registry
from tests.workflow.doubles import ToolLog, make_registry

REGISTRY = make_registry(ToolLog())


def echo(
    step_id: str, value: Any = 1, needs: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": step_id,
        "tool": "t.echo",
        "args": {"value": value},
        "needs": needs or [],
        **extra,
    }


def details_of(plan: object, max_steps: int = 10) -> dict[str, Any]:
    with pytest.raises(InvalidPlan) as caught:
        parse_plan(plan, REGISTRY, max_steps)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_plan"
    return caught.value.details


def test_a_valid_plan_round_trips() -> None:
    data: dict[str, list[dict[str, Any]]] = {
        "steps": [
            {"id": "read", "tool": "vfs.read", "args": {"path": "a.txt"}},
            {
                "id": "write",
                "tool": "vfs.write",
                "args": {"path": "b.txt", "content": "{{steps.read.output.content}}"},
                "needs": ["read"],
                "timeout_s": 5,
                "retries": 2,
                "continue_on_error": True,
            },
        ]
    }
    plan = parse_plan(data, REGISTRY, 10)
    assert plan.to_json() == {
        "steps": [
            {"id": "read", "tool": "vfs.read", "args": {"path": "a.txt"}, "needs": []},
            {**data["steps"][1], "timeout_s": 5.0},
        ]
    }
    assert plan.step("write").needs == ("read",)


@pytest.mark.parametrize(
    ("plan", "key", "needle"),
    [
        ({"steps": [echo("Bad Id")]}, "steps[0].id", "[a-z0-9_-]"),
        ({"steps": [echo("x" * 65)]}, "steps[0].id", "[a-z0-9_-]"),
        ({"steps": [echo("a"), echo("a")]}, "steps.a.id", "duplicate"),
        ({"steps": [{"id": "a", "tool": "nope", "args": {}}]}, "steps.a.tool", "unknown tool"),
        (
            {"steps": [{"id": "a", "tool": "vfs.read", "args": {"path": 3}}]},
            "steps.a.args.path",
            "type",
        ),
        ({"steps": [{"id": "a", "tool": "vfs.read", "args": {}}]}, "steps.a.args", "required"),
        ({"steps": [echo("a", needs=["ghost"])]}, "steps.a.needs", "unknown step"),
        ({"steps": [echo("a", needs=["a"])]}, "steps.a.needs", "itself"),
        ({"steps": [echo("a", timeout_s=0)]}, "steps.a.timeout_s", "number"),
        ({"steps": [echo("a", retries=-1)]}, "steps.a.retries", "integer"),
        ({"steps": [echo("a", continue_on_error="yes")]}, "steps.a.continue_on_error", "boolean"),
        ({"steps": [echo("a", color="red")]}, "steps.a.color", "unknown field"),
        ({"steps": [echo("a"), echo("b", "{{steps.a.output}}")]}, "steps.b.args.value", "needs"),
        ({"steps": [echo("a", "{{steps.a.outptu}}")]}, "steps.a.args.value", "malformed"),
        ({"steps": []}, "steps", "non-empty"),
        ({"steps": [echo(f"s{i}") for i in range(11)]}, "steps", "at most 10"),
        ({"stepz": []}, "plan.stepz", "unknown field"),
    ],
)
def test_each_rule_names_the_step_and_the_problem(plan: object, key: str, needle: str) -> None:
    details = details_of(plan)
    assert key in details, details
    assert needle in str(details[key])


def test_a_cycle_reports_its_members() -> None:
    details = details_of(
        {
            "steps": [
                echo("a", needs=["c"]),
                echo("b", needs=["a"]),
                echo("c", needs=["b"]),
                echo("d"),
            ]
        }
    )
    assert sorted(details["cycle"]) == ["a", "b", "c"]
    assert "cycle" in details["steps.b.needs"]
    assert "steps.d.needs" not in details


def test_transitive_reference_is_not_enough() -> None:
    details = details_of(
        {
            "steps": [
                echo("a"),
                echo("b", needs=["a"]),
                echo("c", "{{steps.a.output.value}}", needs=["b"]),
            ]
        }
    )
    assert "steps.c.args.value" in details


def test_not_an_object() -> None:
    with pytest.raises(InvalidPlan):
        parse_plan([1, 2], REGISTRY, 10)


def test_templates_render_fields_whole_outputs_and_lists() -> None:
    outputs = {"a": {"content": "hi", "n": 2, "files": [{"path": "x"}]}, "b": "plain"}
    args = {
        "s": "{{steps.a.output.content}}!",
        "n": "n={{ steps.a.output.n }}",
        "whole": "{{steps.b.output}}",
        "nested": ["{{steps.a.output.files.0.path}}"],
        "keep": 5,
    }
    assert render_args(args, outputs) == {
        "s": "hi!",
        "n": "n=2",
        "whole": "plain",
        "nested": ["x"],
        "keep": 5,
    }
    assert render_args("{{steps.a.output.files}}", outputs) == '[{"path":"x"}]'
    with pytest.raises(TemplateError):
        render_args("{{steps.a.output.missing}}", outputs)


def test_catalog_lists_the_builtin_tools() -> None:
    catalog = default_registry().catalog()
    names = [t["name"] for t in catalog]
    assert names == [
        "code.rename",
        "project.summary",
        "text.replace",
        "vfs.delete",
        "vfs.list",
        "vfs.move",
        "vfs.read",
        "vfs.search",
        "vfs.write",
    ]
    for entry in catalog:
        assert {
            "name",
            "description",
            "args_schema",
            "output_schema",
            "timeout_s",
            "retries",
        } <= set(entry)


# -- property tests over random DAGs --------------------------------------------------------
@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Random DAGs: each step may need any earlier step (ids shuffled so order is not a hint)."""
    n = draw(st.integers(min_value=1, max_value=15))
    ids = draw(st.permutations([f"s{i}" for i in range(n)]))
    graph: dict[str, list[str]] = {}
    for i, sid in enumerate(ids):
        graph[sid] = sorted(draw(st.sets(st.sampled_from(ids[:i]))) if i else [])
    return graph


def plan_of(graph: dict[str, list[str]]) -> dict[str, Any]:
    return {"steps": [echo(sid, needs=needs) for sid, needs in graph.items()]}


@settings(max_examples=60, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_every_order_the_executor_may_choose_respects_needs(
    graph: dict[str, list[str]], rnd: Any
) -> None:
    """Start any subset of ready steps, finish them in any order: needs always precede."""
    plan = parse_plan(plan_of(graph), REGISTRY, 100)
    analyzer = DependencyAnalyzer(plan)
    done: set[str] = set()
    running: list[str] = []
    ready = analyzer.ready_steps()
    while ready or running:
        # start a random non-empty subset of the ready steps (or all when nothing runs)
        for sid in ready:
            if not running or rnd.random() < 0.7:
                assert set(graph[sid]) <= done, (sid, graph[sid], done)
                analyzer.dispatch(sid)
                running.append(sid)
        finished = running.pop(rnd.randrange(len(running)))
        done.add(finished)
        newly = analyzer.succeeded(finished)
        assert all(set(graph[s]) <= done for s in newly)
        ready = analyzer.ready_steps()
    assert done == set(graph)
    assert analyzer.finished


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_a_failure_skips_exactly_the_transitive_dependents(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    plan = parse_plan(plan_of(graph), REGISTRY, 100)
    analyzer = DependencyAnalyzer(plan)
    roots = analyzer.ready_steps()
    victim = data.draw(st.sampled_from(roots))
    analyzer.dispatch(victim)
    skipped = set(analyzer.failed(victim))
    expected: set[str] = set()
    frontier = {victim}
    while frontier:
        frontier = {s for s, needs in graph.items() if set(needs) & frontier} - expected
        expected |= frontier
    assert skipped == expected


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_adding_a_back_edge_is_reported_as_a_cycle(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    edges = [(s, n) for s, needs in graph.items() for n in needs]
    if not edges:
        assert find_cycle(graph) is None
        return
    child, parent = data.draw(st.sampled_from(edges))
    graph[parent] = [*graph[parent], child]
    details = details_of(plan_of(graph), 100)
    cycle = details["cycle"]
    assert {child, parent} <= set(cycle)
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert b in graph[a]  # consecutive members really depend on each other


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_critical_path_is_the_longest_weighted_chain(
    graph: dict[str, list[str]], data: st.DataObject
) -> None:
    durations = {s: data.draw(st.integers(min_value=0, max_value=100)) * 1.0 for s in graph}
    total, path = critical_path(graph, durations)
    assert total == sum(durations[s] for s in path)
    for a, b in itertools.pairwise(path):
        assert a in graph[b]

    @functools.cache
    def longest(sid: str) -> float:
        return durations[sid] + max((longest(n) for n in graph[sid]), default=0.0)

    assert total == max(longest(s) for s in graph)
