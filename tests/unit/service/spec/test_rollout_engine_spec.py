"""`rollout.engine: vllm` at submit time: what can be known before anything runs is a spec error
with its field path (ZeRO-3, several processes per GPU node, a policy vLLM cannot run here), and
an accepted spec carries the engine into every sampling stage's stage.json."""

from __future__ import annotations

import json

import pytest
from saferlhf.runners.common.config import parse_stage_config
from saferlhf.service.errors import SpecError
from saferlhf.service.planning.plan import plan_job
from saferlhf.service.spec.load import load_spec

from tests.unit.service.spec.specs import spec_dict, to_yaml

ENGINE = "spec.stages.ppo_lag.rollout.engine"
HEAD_OK = {"path": "builtin:tiny-gpt2", "n_embd": 96, "n_head": 3}  # head size 32


def vllm_doc(model=None, **spec_updates):
    doc = spec_dict(**spec_updates)
    doc["spec"]["model"] = dict(model or HEAD_OK)
    doc["spec"]["stages"]["ppo_lag"]["rollout"] = {"engine": "vllm"}
    return doc


def violations(doc) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(to_yaml(doc), check_data=False)
    return {v.field: v.description for v in info.value.violations}


def test_vllm_on_a_cpu_with_a_supported_head_size_is_accepted():
    job = load_spec(to_yaml(vllm_doc()), check_data=False)
    assert job.spec.stages.ppo_lag.rollout.engine == "vllm"


def test_vllm_with_zero3_is_refused_at_its_field():
    doc = vllm_doc()
    doc["spec"]["stages"]["ppo_lag"]["deepspeed"] = {"zero_stage": 3}
    found = violations(doc)
    assert "ZeRO-3 shards them" in found[ENGINE]


def test_zero3_from_the_defaults_counts_too():
    found = violations(vllm_doc(defaults={"deepspeed": {"zero_stage": 3}}))
    assert "ZeRO-3" in found[ENGINE]


def test_a_builtin_head_size_the_cpu_kernels_lack_is_refused_on_cpu_only():
    found = violations(vllm_doc(model={"path": "builtin:tiny-gpt2"}))  # 160 / 4 = 40
    assert "head size is 40" in found[ENGINE] and "spec.model (builtin:tiny-gpt2" in found[ENGINE]
    on_gpu = vllm_doc(model={"path": "builtin:tiny-gpt2"},
                      defaults={"resources": {"gpus_per_node": 1}})
    load_spec(to_yaml(on_gpu), check_data=False)


def test_several_processes_per_gpu_node_are_refused():
    doc = vllm_doc(defaults={"resources": {"gpus_per_node": 4, "nproc_per_node": 4}})
    assert "nproc_per_node=4" in violations(doc)[ENGINE]


def test_a_used_sft_folder_whose_architecture_vllm_lacks_is_refused(tmp_path):
    folder = tmp_path / "sft-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["MyToyForCausalLM"], "hidden_size": 64, "num_attention_heads": 2}))
    doc = vllm_doc()
    doc["spec"]["stages"]["sft"] = {"use": str(folder)}
    with pytest.raises(SpecError) as info:
        load_spec(to_yaml(doc), allowed_roots=[tmp_path])
    found = {v.field: v.description for v in info.value.violations}
    assert found[ENGINE].startswith("spec.stages.sft.use: vLLM ")
    assert "MyToyForCausalLM" in found[ENGINE]


def test_eval_and_collect_engines_are_checked_where_they_run():
    doc = vllm_doc(model={"path": "builtin:tiny-gpt2"})
    doc["spec"]["stages"]["ppo_lag"]["rollout"] = {"engine": "hf"}
    doc["spec"]["stages"]["eval"]["rollout"] = {"engine": "vllm"}
    doc["spec"]["stages"]["collect"] = {"rollout": {"engine": "vllm"}}
    found = violations(doc)
    assert set(found) == {"spec.stages.eval.rollout.engine"}  # collect: no round ≥ 2
    doc["spec"]["rounds"] = {"count": 2}
    assert set(violations(doc)) == {"spec.stages.eval.rollout.engine",
                                    "spec.stages.collect.rollout.engine"}


def test_the_engine_reaches_every_sampling_stage_json():
    doc = vllm_doc(rounds={"count": 2})
    doc["spec"]["stages"]["ppo_lag"]["rollout"].update(weight_sync_deadline_seconds=45)
    doc["spec"]["stages"]["eval"]["rollout"] = {"engine": "vllm", "kv_cache_gib": 0.5}
    doc["spec"]["stages"]["collect"] = {"rollout": {"engine": "vllm"}}
    job = load_spec(to_yaml(doc), check_data=False)
    plan = plan_job(job, job_id="j-1", artifacts_root="/tmp/artifacts")
    configs = {s.id: parse_stage_config(s.config) for s in plan.stages if s.config}
    assert configs["r1/ppo_lag"].rollout.engine == "vllm"
    assert configs["r1/ppo_lag"].rollout.weight_sync_deadline_seconds == 45
    assert configs["r2/evaluate"].rollout.kv_cache_gib == 0.5
    assert configs["r2/collect"].rollout.engine == "vllm"
