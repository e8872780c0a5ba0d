"""Where the external test tools live (installed by scripts/install_tools.sh), and skip helpers."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS_BIN = ROOT / ".cache" / "tools" / "bin"
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"


def tool(name: str) -> str | None:
    """Path of a tool from .cache/tools/bin, the venv, or PATH; None if absent."""
    for cand in (TOOLS_BIN / name, ROOT / ".venv" / "bin" / name):
        if cand.exists():
            return str(cand)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/install_tools.sh installs it)")
    return path


def pg_bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return str(Path(found[-1]).parent) if found else None


def require_shared_data(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"../shared/data/{relative} is absent (it exists only in the project's CI)")
    return path
