"""The one-way import rules of DESIGN §2 and STYLE rule 1, read from the installed import graph.

The declarative contracts live in pyproject.toml (`[tool.importlinter]`): runners never import the
service, the shared runner base imports no stage package, the control plane imports no training
library, only the Kubernetes executor imports the client, only the API / CLI / event reporter
touch the generated protos, and the control plane's layers import downwards. This file runs
them, and adds what a static contract cannot say: no import cycle between any two modules, the
stage-package list of that contract is complete, the pure Kubernetes modules import nothing
but the standard library and the domain types.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("saferlhf.service", "saferlhf.runners", "saferlhf.v1")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True,
                             exclude_type_checking_imports=True)


def test_every_import_linter_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    ours = sorted(m for m in graph.modules if m.startswith("saferlhf."))
    edges = {m: sorted(w for w in graph.find_modules_directly_imported_by(m)
                       if w.startswith("saferlhf.")) for m in ours}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in ours:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_two_modules_import_each_other_even_lazily(graph):
    # grimp sees imports inside functions too: a lazy import does not excuse a cycle.
    assert _import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    g = grimp.ImportGraph()
    for a, b in (("saferlhf.a", "saferlhf.b"), ("saferlhf.b", "saferlhf.c"),
                 ("saferlhf.c", "saferlhf.a"), ("saferlhf.c", "saferlhf.d")):
        g.add_import(importer=a, imported=b)
    assert _import_cycles(g) == [["saferlhf.a", "saferlhf.b", "saferlhf.c"]]


def test_the_shared_base_contract_names_every_stage_package(graph):
    text = (ROOT / "pyproject.toml").read_text()
    contract = text.split('name = "the shared runner base imports no stage package"')[1]
    contract = contract.split("[[tool.importlinter.contracts]]")[0]
    stages = sorted(p for p in graph.find_children("saferlhf.runners")
                    if p != "saferlhf.runners.common" and p in graph.modules
                    and graph.find_children(p))
    missing = [p for p in stages if f'"{p}"' not in contract]
    assert missing == [], "add the new stage package to the contract in pyproject.toml"


@pytest.mark.parametrize("module", ["saferlhf.service.execution.k8s_job",
                                    "saferlhf.service.execution.k8s_status"])
def test_the_manifest_builder_and_status_mapper_are_pure(graph, module):
    allowed = {"__future__", "hashlib", "re", "collections", "dataclasses", "typing",
               "datetime", "saferlhf.service.execution.base", "saferlhf.service.state.types"}
    imported = graph.find_modules_directly_imported_by(module)
    assert {m.split(".")[0] if not m.startswith("saferlhf.") else m for m in imported} <= allowed
