"""Container images: hadolint clean, non-root, pinned bases. The images were NOT built here (no
Docker engine on these machines); only their Dockerfiles are checked."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.tools import ROOT, require_tool

DOCKERFILES = [p for p in sorted((ROOT / "docker").glob("Dockerfile.*"))
               if not p.name.endswith(".dockerignore")]


def test_the_three_images_have_dockerfiles():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.service", "Dockerfile.runner",
                                             "Dockerfile.runner-cuda"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_reports_nothing(dockerfile):
    proc = subprocess.run([require_tool("hadolint"), str(dockerfile)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_a_numeric_non_root_user_on_a_pinned_base(dockerfile):
    text = dockerfile.read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    final = stages[-1]
    users = re.findall(r"(?m)^USER (\S+)", final)
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert users[-1].split(":")[0].isdigit()  # runAsNonRoot needs a numeric UID
    for stage in stages:
        image = stage.split()[0]
        assert ":" in image and not image.endswith(":latest"), image
        assert re.search(r":\d+\.\d+", image), f"{image}: pin a version tag"


def test_the_service_image_does_not_install_torch():
    lines = (ROOT / "docker" / "Dockerfile.service").read_text().splitlines()
    commands = [ln for ln in lines if not ln.lstrip().startswith("#")]
    assert not any(re.search(r"torch|transformers|deepspeed", ln) for ln in commands)
    assert any("service-requirements.txt" in ln for ln in commands)
