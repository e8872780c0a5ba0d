"""The DeepSpeed configs are derived from the stage config (reference §7), never typed."""

import sys

import pytest
from saferlhf.runners.common.config import DeepSpeedSpec
from saferlhf.runners.common.deepspeed_config import eval_config, train_config


def test_train_batch_size_is_micro_times_world_times_accumulation():
    cfg = train_config(DeepSpeedSpec(zero_stage=2), micro_batch_size=4,
                       gradient_accumulation_steps=8, world_size=3, grad_clip=0.5)
    assert cfg["train_batch_size"] == 96
    assert cfg["train_micro_batch_size_per_gpu"] == 4
    assert cfg["gradient_accumulation_steps"] == 8
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["gradient_clipping"] == 0.5


@pytest.mark.parametrize(("offload", "param", "optim"), [
    ("none", "none", "none"), ("parameter", "cpu", "none"),
    ("optimizer", "none", "cpu"), ("all", "cpu", "cpu"),
])
def test_offload_maps_to_parameter_and_optimizer_devices(offload, param, optim):
    zero = train_config(DeepSpeedSpec(zero_stage=3, offload=offload), micro_batch_size=1,
                        gradient_accumulation_steps=1, world_size=1)["zero_optimization"]
    assert zero["offload_param"]["device"] == param
    assert zero["offload_optimizer"]["device"] == optim


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_precision_enables_exactly_one_mode(precision):
    cfg = train_config(DeepSpeedSpec(precision=precision), micro_batch_size=1,
                       gradient_accumulation_steps=1, world_size=1)
    assert cfg["bf16"]["enabled"] is (precision == "bf16")
    assert cfg["fp16"]["enabled"] is (precision == "fp16")


@pytest.mark.parametrize(("stage", "expected"), [(0, 0), (1, 0), (2, 0), (3, 3)])
def test_the_eval_config_maps_zero_stages_one_and_two_to_zero(stage, expected):
    cfg = eval_config(DeepSpeedSpec(zero_stage=stage, offload="parameter"))
    assert cfg["zero_optimization"]["stage"] == expected
    assert cfg["train_batch_size"] is None
    assert cfg["train_micro_batch_size_per_gpu"] == 1
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_building_configs_does_not_import_deepspeed():
    assert "saferlhf.runners.common.deepspeed_config" in sys.modules
    import saferlhf.runners.common.deepspeed_config as module

    assert "deepspeed" not in module.__dict__
