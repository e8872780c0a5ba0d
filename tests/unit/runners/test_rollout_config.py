"""`rollout:` settings and the pure checks of what the vLLM engine can run (no vLLM started)."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError
from saferlhf.runners.common.config import (
    CollectParams,
    EvaluateParams,
    ModelSpec,
    PPOLagConfig,
    RolloutParams,
)
from saferlhf.runners.common.engine_checks import (
    builtin_config,
    folder_config,
    gpu_layout_problem,
    head_size,
    vllm_model_problems,
)
from saferlhf.runners.common.errors import InvalidInputError

PROMPTS = [{"format": "synthetic", "split": "prompts"}]


def ppo(**kwargs) -> PPOLagConfig:
    return PPOLagConfig(output_dir="out", actor_path="a", reference_path="a", prompts=PROMPTS,
                        threshold=0.0, **kwargs)


def test_every_sampling_stage_defaults_to_the_hf_engine():
    assert ppo().rollout.engine == "hf"
    assert EvaluateParams(prompts=PROMPTS).rollout.engine == "hf"
    assert CollectParams(prompts=PROMPTS).rollout.engine == "hf"


def test_vllm_settings_are_typed_and_bounded():
    r = RolloutParams(engine="vllm", kv_cache_gib=2, weight_sync_deadline_seconds=30)
    assert (r.kv_cache_gib, r.weight_sync_deadline_seconds) == (2, 30)
    assert r.sleep_during_training
    for bad in ({"engine": "sglang"}, {"gpu_memory_utilization": 1.0},
                {"weight_sync_deadline_seconds": 0}, {"kv_cache_gib": -1}):
        with pytest.raises(ValidationError):
            RolloutParams(**bad)


def test_vllm_with_zero3_is_refused_and_with_zero2_accepted():
    zero = {"kind": "deepspeed", "deepspeed": {"zero_stage": 3}}
    with pytest.raises(ValidationError, match="rollout.engine: vllm needs the actor's full"):
        ppo(rollout={"engine": "vllm"}, backend=zero)
    ppo(rollout={"engine": "hf"}, backend=zero)
    ppo(rollout={"engine": "vllm"}, backend={"kind": "deepspeed", "deepspeed": {"zero_stage": 2}})


def test_head_size_comes_from_head_dim_or_hidden_over_heads():
    assert head_size({"n_embd": 96, "n_head": 3}) == 32
    assert head_size({"hidden_size": 4096, "num_attention_heads": 32}) == 128
    assert head_size({"hidden_size": 96, "num_attention_heads": 4, "head_dim": 64}) == 64
    assert head_size({"hidden_size": 10, "num_attention_heads": 3}) is None
    assert head_size({}) is None


def test_builtin_models_map_to_their_architectures():
    gpt2 = builtin_config(ModelSpec(path="builtin:tiny-gpt2", n_embd=96, n_head=3))
    assert gpt2 == {"architectures": ["GPT2LMHeadModel"], "hidden_size": 96,
                    "num_attention_heads": 3}
    assert builtin_config(ModelSpec(path="builtin:tiny-llama"))["architectures"] == [
        "LlamaForCausalLM"]
    assert builtin_config(ModelSpec(path="/models/x")) is None


def test_an_architecture_without_a_vllm_model_is_a_problem_everywhere():
    problems = vllm_model_problems({"architectures": ["MyToyForCausalLM"]}, on_gpu=True)
    assert len(problems) == 1 and "no text-generation model" in problems[0]
    assert "MyToyForCausalLM" in problems[0] and "engine: hf" in problems[0]
    assert vllm_model_problems({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                                "num_attention_heads": 32}, on_gpu=False) == []


def test_a_head_size_the_cpu_kernels_lack_is_a_problem_on_cpu_only():
    tiny = {"architectures": ["GPT2LMHeadModel"], "n_embd": 160, "n_head": 4}  # 40
    (problem,) = vllm_model_problems(tiny, on_gpu=False)
    assert "head size is 40" in problem and "32, 64" in problem
    assert vllm_model_problems(tiny, on_gpu=True) == []


def test_several_processes_per_gpu_node_would_stack_engines_on_one_gpu():
    assert "nproc_per_node=2" in gpu_layout_problem(gpus_per_node=2, nproc_per_node=2)
    assert gpu_layout_problem(gpus_per_node=1, nproc_per_node=1) is None
    assert gpu_layout_problem(gpus_per_node=0, nproc_per_node=2) is None  # CPU ranks: fine


def test_a_folder_config_is_read_or_none(tmp_path):
    assert folder_config(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    assert folder_config(tmp_path) == {"architectures": ["GPT2LMHeadModel"]}
    (tmp_path / "config.json").write_text("{not json")
    assert folder_config(tmp_path) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="head size 16 is fine on a GPU")
def test_the_vllm_engine_refuses_a_policy_it_cannot_run_before_starting(tmp_path):
    """Caught from config.json alone: vLLM would otherwise load the model and fail at the first
    generate ("Unsupported CPU attention configuration: head_dim=16")."""
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine

    (tmp_path / "config.json").write_text(json.dumps(
        {"architectures": ["GPT2LMHeadModel"], "n_embd": 32, "n_head": 2}))
    with pytest.raises(InvalidInputError, match="field 'rollout.engine'.*head size is 16"):
        VLLMEngine(str(tmp_path), tokenizer=None, spec=RolloutParams(engine="vllm"))
