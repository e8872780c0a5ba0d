"""`saferlhf plan` prints the per-stage memory table (text, JSON, YAML) and exits 2 when a stage
cannot fit; `saferlhf validate` rejects such a spec with the stage's field path."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from saferlhf.service.cli.main import main

from tests.tools import ROOT
from tests.unit.service.planning.model_configs import LLAMA2_70B, write_model_folder
from tests.unit.service.spec.specs import spec_dict, to_yaml


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def seventy_b_on_one_gpu(tmp_path: Path) -> str:
    """Llama-2-70B full fine-tuning with ZeRO-3 bf16 on one 80 GiB GPU."""
    write_model_folder(tmp_path / "llama-2-70b", LLAMA2_70B)
    doc = spec_dict(model={"path": "llama-2-70b"},
                    defaults={"resources": {"gpus_per_node": 1, "gpu_memory": "80Gi"},
                              "deepspeed": {"zero_stage": 3, "precision": "bf16"}})
    path = tmp_path / "job.yaml"
    path.write_text(to_yaml(doc))
    return str(path)


def test_plan_prints_every_stage_of_the_quickstart_as_cpu_and_exits_0() -> None:
    code, out, err = run("plan", str(ROOT / "examples" / "quickstart.yaml"))
    assert code == 0, err
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    assert lines[start].split() == ["stage", "devices", "layout", "parameters", "peak/GPU", "at",
                                    "GPU", "status"]
    table = lines[start + 1 : lines.index("", start)]
    assert [row.split()[0] for row in table] == ["sft", "reward", "cost", "ppo_lag", "eval",
                                                 "collect"]
    assert all(row.split()[1] == "cpu" and row.split()[-1] == "cpu" for row in table)
    assert "actor: 1.4 M parameters, trained" in out  # the per-model breakdown
    assert "reference: 1.4 M parameters, frozen" in out


def test_plan_of_an_impossible_spec_shows_the_fixes_and_exits_2(seventy_b_on_one_gpu) -> None:
    code, out, err = run("plan", seventy_b_on_one_gpu)
    assert code == 2
    assert "does not fit" in out and "to fit: deepspeed: {zero_stage: 3" in out
    assert "68.98 B" in out  # Llama-2-70B's parameters
    assert err.startswith("saferlhf: sft, reward, cost, ppo_lag, eval: does not fit")
    assert "Traceback" not in err


def test_plan_json_and_yaml_carry_every_term_in_bytes(seventy_b_on_one_gpu) -> None:
    code, out, _ = run("plan", seventy_b_on_one_gpu, "-o", "json")
    assert code == 2
    data = json.loads(out)
    sft = next(s for s in data["stages"] if s["stage"] == "sft")
    assert sft["status"] == "does not fit" and sft["gpu_memory_bytes"] == 80 << 30
    assert sft["models"]["policy"] == {"parameters": 68_976_648_192,
                                       "trained_parameters": 68_976_648_192}
    terms = {p["name"]: p["device_bytes"] for p in sft["resident"]}
    assert terms["policy: Adam states"] == 8 * 68_976_648_192  # ZeRO-3 over one rank
    assert sft["peak_bytes_per_gpu"] >= sum(terms.values())
    code, out, _ = run("plan", seventy_b_on_one_gpu, "-o", "yaml")
    assert yaml.safe_load(out)["stages"][0]["stage"] == "sft"


def test_validate_rejects_a_spec_that_cannot_fit_with_the_stage_field(seventy_b_on_one_gpu):
    code, _, err = run("validate", seventy_b_on_one_gpu)
    assert code == 2
    assert "spec.stages.sft: does not fit: the sft stage needs about" in err
    assert "(line " in err and "Traceback" not in err


def test_plan_says_why_a_hub_model_is_not_estimated(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code, out, err = run("plan", str(ROOT / "examples" / "gpu_cluster.yaml"), "--no-data-check")
    assert code == 0, err
    assert "unknown — hub model 'huggyllama/llama-7b'" in out
