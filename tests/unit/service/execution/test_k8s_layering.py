"""Only the Kubernetes executor imports the `kubernetes` client (STYLE rule 1, DESIGN §2)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_only_the_kubernetes_executor_imports_the_kubernetes_client():
    importers = {
        str(p.relative_to(ROOT))
        for top in ("service", "runners")
        for p in (ROOT / top).rglob("*.py")
        if "gen" not in p.parts
        and any(m == "kubernetes" or m.startswith("kubernetes.") for m in _imports(p))
    }
    assert importers == {"service/execution/kubernetes.py"}


def test_the_manifest_builder_and_status_mapper_are_pure():
    allowed = {"__future__", "hashlib", "re", "collections.abc", "dataclasses", "typing",
               "datetime", "service.execution.base", "service.state.types"}
    for name in ("k8s_job.py", "k8s_status.py"):
        mods = _imports(ROOT / "service" / "execution" / name)
        assert mods <= allowed, f"{name} imports {sorted(mods - allowed)}"
