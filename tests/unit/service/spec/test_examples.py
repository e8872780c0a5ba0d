"""Every example spec loads and plans; the quickstart passes every check, data included."""

from __future__ import annotations

from pathlib import Path

import pytest
from saferlhf.runners.common.config import parse_stage_config
from saferlhf.service.errors import SpecError
from saferlhf.service.planning.plan import plan_job
from saferlhf.service.spec.load import load_spec_file

from tests.tools import ROOT, require_shared_data

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECTED = {"quickstart.yaml", "pku_saferlhf.yaml", "from_sft.yaml", "human_labels.yaml",
            "gpu_cluster.yaml"}


def test_the_promised_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= EXPECTED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_loads_and_plans_into_valid_stage_configs(path: Path) -> None:
    # Placeholder paths (from_sft's model folder) and hub references (gpu_cluster) are not
    # checked here; the quickstart test below checks everything.
    job = load_spec_file(path, check_data=False, allow_hub=True)
    plan = plan_job(job, job_id="j-example", artifacts_root="/srv/artifacts")
    assert plan.stages
    for stage in plan.stages:
        if stage.skipped_with is None:
            assert parse_stage_config(stage.config).kind == stage.kind


def test_the_quickstart_passes_every_check_and_uses_a_safety_budget() -> None:
    job = load_spec_file(ROOT / "examples" / "quickstart.yaml")
    ppo = job.spec.stages.ppo_lag
    assert ppo.threshold is None and ppo.safety_budget.max_harmful_rate == 0.02
    assert job.spec.rounds.count == 2 and job.spec.rounds.collect.labeler == "oracle"
    assert {j.name for j in job.spec.stages.eval.judges} == {"synthetic", "cost_model"}
    plan = plan_job(job, job_id="j-q", artifacts_root="/srv/artifacts")
    assert any(g.metric == "eval/harmful_rate" for g in plan.gates)


def test_the_pku_example_passes_its_data_checks_with_the_shared_sample() -> None:
    require_shared_data("pku_saferlhf/pku_saferlhf_alpaca7b_test_first16.jsonl")
    require_shared_data("safe_rlhf_eval/problem.json")
    job = load_spec_file(ROOT / "examples" / "pku_saferlhf.yaml")
    assert job.spec.stages.cost.data[0].path.endswith("pku_saferlhf_alpaca7b_test_first16.jsonl")


def test_the_gpu_cluster_example_without_hub_access_names_every_hub_field() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False)
    fields = {v.field for v in info.value.violations}
    assert "spec.model.path" in fields
    assert "spec.stages.cost.data[0].hub" in fields
    assert all("hub" in v.description for v in info.value.violations)


def test_the_gpu_cluster_example_plans_zero3_on_two_nodes_of_eight_gpus() -> None:
    job = load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False, allow_hub=True)
    assert job.spec.executor == "kubernetes" and job.spec.kubernetes.queue
    plan = plan_job(job, job_id="j-gpu", artifacts_root="/mnt/artifacts")
    ppo = plan.stage("r3/ppo_lag")
    assert ppo.config["backend"]["kind"] == "deepspeed"
    assert ppo.config["backend"]["deepspeed"]["zero_stage"] == 3
    assert ppo.config["distributed"] == {"nnodes": 2, "nproc_per_node": 8}
    assert (ppo.resources.nodes, ppo.resources.gpus_per_node) == (2, 8)
    assert plan.stage("r1/evaluate").config["distributed"]["nnodes"] == 1
    assert ppo.output_dir.startswith("/mnt/artifacts/jobs/safety-team/j-gpu/")
