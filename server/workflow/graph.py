"""Pure graph helpers over step ids: cycle detection and topological order."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Return the members of one cycle (in dependency order) or None when acyclic.

    ``needs[a]`` lists the nodes ``a`` depends on; edges to unknown nodes are ignored.
    Iterative DFS, so deep chains do not hit the recursion limit.
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(needs, white)
    for root in needs:
        if color[root] != white:
            continue
        path: list[str] = [root]
        iters = [iter(needs[root])]
        color[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = black
                iters.pop()
                continue
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return path[path.index(nxt) :]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                iters.append(iter(needs[nxt]))
    return None


def topological_order(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's algorithm, stable by the mapping's order. Raises ``ValueError`` on a cycle."""
    remaining = {node: sum(1 for n in deps if n in needs) for node, deps in needs.items()}
    dependents: dict[str, list[str]] = {node: [] for node in needs}
    for node, deps in needs.items():
        for dep in deps:
            if dep in dependents:
                dependents[dep].append(node)
    order = [node for node, count in remaining.items() if count == 0]
    i = 0
    while i < len(order):
        for child in dependents[order[i]]:
            remaining[child] -= 1
            if remaining[child] == 0:
                order.append(child)
        i += 1
    if len(order) != len(needs):
        raise ValueError("graph has a cycle")
    return order
