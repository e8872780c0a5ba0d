"""The built wheel installs one import name, `saferlhf`, and the entry points the product needs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("saferlhf-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_puts_only_saferlhf_into_site_packages(wheel):
    top = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"saferlhf"}
    assert not {"service", "runners", "bench", "tests", "scripts"} & top


def test_saferlhf_is_a_namespace_over_the_api_the_service_and_the_runners(wheel):
    names = set(wheel.namelist())
    assert "saferlhf/__init__.py" not in names  # PEP 420: proto/, service/, runners/ share it
    for module in ("saferlhf/v1/job_service_pb2.py", "saferlhf/v1/runner_service.proto",
                   "saferlhf/service/cli/main.py", "saferlhf/runners/ppo_lag/__main__.py",
                   "saferlhf/runners/synthetic/data_format.py"):
        assert module in names


def test_the_console_script_and_the_synthetic_data_format_are_registered(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "saferlhf = saferlhf.service.cli.main:main" in text
    assert "[saferlhf.data_formats]" in text
    assert "synthetic = saferlhf.runners.synthetic.data_format:FORMAT" in text
