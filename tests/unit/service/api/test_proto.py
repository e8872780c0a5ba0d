"""The protos are buf-lint clean and the committed generated code is current."""

from __future__ import annotations

import filecmp
import subprocess
import sys

from tests.tools import ROOT, require_tool


def test_buf_lint_passes_on_the_protos(tmp_path):
    buf = require_tool("buf")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"HOME": str(tmp_path), "BUF_CACHE_DIR": str(tmp_path / "cache"),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_generated_code_equals_a_fresh_generation(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    fresh = tmp_path / "saferlhf" / "v1"
    committed = ROOT / "proto" / "saferlhf" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.iterdir() if p.is_file()
                           and p.suffix in (".py", ".pyi")), "run `make proto`"
    match, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale generated files {mismatch + errors}: make proto"
