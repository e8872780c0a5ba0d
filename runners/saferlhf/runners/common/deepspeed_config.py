"""DeepSpeed configs derived from the stage config (reference §7) — never typed by hand.

Pure dict builders (no deepspeed import here): `train_config` for trained models and
`eval_config` for frozen ones (the eval config supports only ZeRO 0 and 3, so 1/2 map to 0).
"""

from __future__ import annotations

from typing import Any

from saferlhf.runners.common.config import DeepSpeedSpec


def _offload(spec: DeepSpeedSpec) -> tuple[bool, bool]:
    """(offload parameters, offload optimizer state)."""
    return spec.offload in ("parameter", "all"), spec.offload in ("optimizer", "all")


def _precision(spec: DeepSpeedSpec) -> dict[str, Any]:
    return {
        "bf16": {"enabled": spec.precision == "bf16"},
        "fp16": {"enabled": spec.precision == "fp16"},
    }


def train_config(
    spec: DeepSpeedSpec,
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world_size: int,
    grad_clip: float = 1.0,
) -> dict[str, Any]:
    """train_batch_size = micro · world_size · grad_accum; ZeRO stage and offload from `spec`."""
    offload_param, offload_optim = _offload(spec)
    zero: dict[str, Any] = {
        "stage": spec.zero_stage,
        "offload_param": {"device": "cpu" if offload_param else "none"},
        "offload_optimizer": {"device": "cpu" if offload_optim else "none"},
        "param_persistence_threshold": 1e4,
        "max_live_parameters": 3e7,
        "prefetch_bucket_size": 3e7,
        "memory_efficient_linear": False,
        "gather_16bit_weights_on_model_save": True,
    }
    return {
        "train_batch_size": micro_batch_size * world_size * gradient_accumulation_steps,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "steps_per_print": 10,
        "zero_optimization": zero,
        "gradient_clipping": grad_clip,
        "prescale_gradients": False,
        "wall_clock_breakdown": False,
        # A client torch.optim.AdamW is passed with offload; allow it instead of DeepSpeedCPUAdam.
        "zero_force_ds_cpu_optimizer": False,
        **_precision(spec),
    }


def eval_config(spec: DeepSpeedSpec) -> dict[str, Any]:
    """Frozen models: micro batch 1, no train batch, ZeRO 3 stays 3, stages 1/2 map to 0."""
    offload_param, _ = _offload(spec)
    stage = 3 if spec.zero_stage == 3 else 0
    zero: dict[str, Any] = {
        "stage": stage,
        "offload_param": {"device": "cpu" if offload_param else "none"},
        "param_persistence_threshold": 1e4,
        "max_live_parameters": 3e7,
        "prefetch_bucket_size": 3e7,
        "memory_efficient_linear": False,
        "gather_16bit_weights_on_model_save": True,
    }
    return {
        "train_batch_size": None,
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "steps_per_print": 10,
        "zero_optimization": zero,
        "gradient_clipping": 1.0,
        "prescale_gradients": False,
        "wall_clock_breakdown": False,
        **_precision(spec),
    }
