"""The plan's dependency graph: acyclicity check and a deterministic topological order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from saferlhf.service.errors import ServiceError


class PlanError(ServiceError):
    """The planner produced something invalid: a bug in the planner, never the user's fault."""

    code = "INTERNAL"


def topological_order(depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """Stage ids so that every stage comes after all of its dependencies (Kahn's algorithm;
    ties broken by the mapping's order, so the result is stable). Raises PlanError on an
    unknown dependency or a cycle, naming the stages involved."""
    deps = {node: list(parents) for node, parents in depends_on.items()}
    for node, parents in deps.items():
        unknown = [p for p in parents if p not in deps]
        if unknown:
            raise PlanError(f"stage {node} depends on unknown stage(s) {unknown}")
    remaining = {node: len(set(parents)) for node, parents in deps.items()}
    children: dict[str, list[str]] = {node: [] for node in deps}
    for node, parents in deps.items():
        for parent in set(parents):
            children[parent].append(node)
    ready = [node for node in deps if remaining[node] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in children[node]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    if len(order) != len(deps):
        stuck = sorted(node for node in deps if node not in order)
        raise PlanError(f"the plan has a dependency cycle among {stuck}")
    return order


def ready_stages(depends_on: Mapping[str, Iterable[str]], done: Iterable[str],
                 started: Iterable[str] = ()) -> list[str]:
    """Stages not yet started whose dependencies are all done (for the scheduler), in order."""
    finished, begun = set(done), set(started)
    return [node for node in topological_order(depends_on)
            if node not in finished and node not in begun
            and all(p in finished for p in depends_on[node])]
