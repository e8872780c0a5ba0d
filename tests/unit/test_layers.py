"""The one-way import rules of STYLE.md rule 1 and DESIGN §2, checked on the source text.

- `service/` never imports torch, transformers or deepspeed (the control plane stays light).
- `runners/` never import the service, the gRPC server side or kubernetes; the one exception is
  the generated protobuf client code in `service.gen` that the event reporter uses.
- only `service/execution/kubernetes.py` imports the `kubernetes` client.
- only `service/api/` (and the runners' reporter, the CLI and the bench) touch generated protos.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "gen" not in p.parts)


def _offenders(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in _sources(folder):
        rel = path.relative_to(ROOT).as_posix()
        if rel in allowed:
            continue
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel} imports {name}")
    return bad


def test_the_service_never_imports_training_libraries():
    assert _offenders("service", ("torch", "transformers", "deepspeed", "accelerate")) == []


@pytest.mark.parametrize("forbidden", ["service.api", "service.app", "service.store",
                                       "service.scheduler", "service.execution", "kubernetes"])
def test_runners_never_import_the_service_or_kubernetes(forbidden):
    assert _offenders("runners", (forbidden,)) == []


def test_runners_import_from_the_service_package_only_its_generated_protos():
    bad = [
        o for o in _offenders("runners", ("service",))
        if not o.split(" imports ")[1].startswith("service.gen")
    ]
    assert bad == []


def test_only_the_kubernetes_executor_imports_the_kubernetes_client():
    allowed = ("service/execution/kubernetes.py",)
    assert _offenders("service", ("kubernetes",), allowed) == []


def test_the_pure_manifest_builder_imports_no_client():
    assert "kubernetes" not in {n.split(".")[0] for n in
                                _imports(ROOT / "service/execution/k8s_job.py")}


def test_domain_layers_do_not_touch_generated_protos():
    for folder in ("service/spec", "service/planning", "service/state", "service/store",
                   "service/scheduler", "service/execution"):
        assert _offenders(folder, ("service.gen", "grpc")) == [], folder
