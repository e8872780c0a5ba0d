"""One typed config model per stage — the contract between the service and the runners.

The service validates a job spec's `spec.stages.<kind>` against the `*Params` models here (what a
user may set), and the planner writes a fully resolved `*Config` (params + inputs + output_dir) as
`stage.json`, which the runner loads with `load_stage_config`. Importable without torch.

Defaults follow the reference implementation (shared/reference/safe_rlhf_algorithm.md §6) except
where a field's description says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STAGE_KINDS = ("sft", "reward", "cost", "ppo_lag", "evaluate", "collect")
StageKind = Literal["sft", "reward", "cost", "ppo_lag", "evaluate", "collect"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Data references
# --------------------------------------------------------------------------------------------

DataFormat = Literal[
    "synthetic",  # the built-in synthetic safety benchmark (saferlhf.runners.synthetic); `split`
    "pku_saferlhf",  # PKU-SafeRLHF JSONL rows (reference §1.1 field mapping)
    "hh_rlhf",  # Anthropic HH-RLHF dialogues (chosen/rejected), optionally .gz
    "xstest",  # XSTest prompts/completions CSV (derived safety pairs, marked derived)
    "safe_rlhf_eval",  # the paper's red-team prompts (problem.json: prompt, category)
    "advbench",  # AdvBench harmful behaviours CSV (prompt-only)
    "jsonl",  # generic JSONL; `kind` says which record type each row is
]
RecordKind = Literal["supervised", "preference", "safety_preference", "prompt_only"]


class DataSource(Frozen):
    """Where one dataset comes from. Exactly one of `path`, `hub` or (for synthetic) `split`."""

    format: DataFormat = Field(description="How the rows are laid out.")
    path: str | None = Field(default=None, description="Local file or folder.")
    hub: str | None = Field(
        default=None, description="Hugging Face hub dataset repo (needs network; pin `revision`)."
    )
    revision: str | None = Field(default=None, description="Hub commit to pin (required with hub).")
    split: str | None = Field(
        default=None,
        description="Synthetic benchmark split: sft | preference | safety_preference | prompts "
        "| eval (held-out templates) | calibration. For hub datasets: train | test.",
    )
    kind: RecordKind | None = Field(
        default=None, description="Record type for `format: jsonl` (required there)."
    )
    limit: int | None = Field(default=None, gt=0, description="Use at most this many rows.")
    size: int | None = Field(
        default=None, gt=0, description="Synthetic only: how many rows to generate."
    )
    label_noise: float = Field(
        default=0.0, ge=0.0, le=0.5, description="Synthetic only: flip this fraction of labels."
    )
    harmful_compliance_rate: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Synthetic sft only: share of harmful prompts answered with compliance "
        "(default 0.5, like Alpaca-7B's 53% in the paper).",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> DataSource:
        if self.format == "synthetic":
            if not self.split:
                raise ValueError("format synthetic needs `split` (e.g. sft, preference, prompts)")
            return self
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` or `hub`")
        if self.hub is not None and not self.revision:
            raise ValueError("a hub dataset needs a pinned `revision` (a commit id)")
        if self.format == "jsonl" and self.kind is None:
            raise ValueError("format jsonl needs `kind` (supervised | preference | ...)")
        return self


# --------------------------------------------------------------------------------------------
# Models, backends, resources
# --------------------------------------------------------------------------------------------


class ModelSpec(Frozen):
    """The starting model: `builtin:tiny-gpt2`, `builtin:tiny-llama`, a local HF folder, or a hub
    repo with a pinned revision (needs network)."""

    path: str = Field(description="builtin:tiny-gpt2 | builtin:tiny-llama | local folder | hub id")
    revision: str | None = Field(default=None, description="Hub commit (required for hub ids).")
    # Sizes for builtin models only (ignored for folders). Defaults give about 1.3 M parameters.
    n_layer: int = Field(default=4, gt=0, description="Builtin: transformer layers.")
    n_embd: int = Field(default=160, gt=0, description="Builtin: hidden size.")
    n_head: int = Field(default=4, gt=0, description="Builtin: attention heads.")
    vocab_size: int = Field(default=1024, ge=64, description="Builtin: BPE vocabulary size.")
    max_position_embeddings: int = Field(default=128, gt=0, description="Builtin: context.")


class DeepSpeedSpec(Frozen):
    zero_stage: Literal[0, 1, 2, 3] = Field(default=0, description="ZeRO stage.")
    offload: Literal["none", "parameter", "optimizer", "all"] = Field(
        default="none", description="CPU offload of parameters and/or optimizer state."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(default="fp32", description="Precision.")


class BackendSpec(Frozen):
    kind: Literal["plain", "deepspeed"] = Field(
        default="plain", description="plain PyTorch (gloo/NCCL DDP) or DeepSpeed ZeRO."
    )
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec)
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for memory.")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="Plain backend: bf16 runs every forward pass under torch.autocast(bfloat16) "
        "— matrix products in bf16; weights, gradients and optimizer state stay fp32 (the "
        "rollout's sampling too on CPU, where bf16 does not pay at a few rows per step). Faster "
        "where the hardware has bf16 (CPUs with AMX or AVX-512 BF16; CUDA GPUs), slower "
        "elsewhere. Under DeepSpeed set deepspeed.precision instead.",
    )


class DistributedSpec(Frozen):
    """Filled in by the planner from `resources`; the runner reads RANK/WORLD_SIZE from env."""

    nnodes: int = Field(default=1, gt=0)
    nproc_per_node: int = Field(default=1, gt=0)


class OptimSpec(Frozen):
    lr: float = Field(default=2e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    lr_scheduler: Literal["cosine", "constant", "linear"] = Field(default="cosine")
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1, description="Warm-up share of steps.")
    betas: tuple[float, float] = Field(default=(0.9, 0.95), description="Adam betas.")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient-norm clip.")
    implementation: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        default="auto",
        description="AdamW kernel: auto = fused where the device has it (CPU, CUDA), else "
        "torch's default; fused / foreach / for_loop force one (for_loop is the per-tensor loop "
        "torch uses on CPU by default). Same update rule, different speed.",
    )


# --------------------------------------------------------------------------------------------
# Stage parameters (what a user sets in the job spec)
# --------------------------------------------------------------------------------------------


class CommonParams(Frozen):
    max_length_tokens: int = Field(default=512, gt=0, description="Truncate sequences to this.")
    batch_size: int = Field(default=16, gt=0, description="Per-device micro-batch (sequences).")
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    eval_batch_size: int = Field(default=16, gt=0)
    epochs: int = Field(default=1, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="Stop after this many steps.")
    checkpoint_every_steps: int = Field(default=200, gt=0, description="Resumable checkpoints.")
    log_every_steps: int = Field(default=10, gt=0, description="Metric events cadence.")


class SFTParams(CommonParams):
    data: list[DataSource] = Field(min_length=1, description="Supervised data.")
    eval_data: list[DataSource] = Field(default_factory=list, description="Held-out data.")
    eval_split_ratio: float | None = Field(default=None, gt=0, lt=1)
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(weight_decay=1e-6))


class PreferenceParams(CommonParams):
    """Shared by the reward and the cost model (reference §3, §4, §6.3)."""

    data: list[DataSource] = Field(min_length=1, description="Preference data.")
    eval_data: list[DataSource] = Field(default_factory=list, description="Held-out pairs.")
    eval_split_ratio: float | None = Field(default=None, gt=0, lt=1)
    loss: Literal["sequence-wise", "token-wise"] = Field(default="sequence-wise")
    regularization: float = Field(default=0.001, ge=0, description="η·mean(score²).")
    init_from: Literal["policy", "model"] = Field(
        default="policy",
        description="policy: backbone from the SFT model (reference); model: from `model`.",
    )
    model: ModelSpec | None = Field(
        default=None,
        description="A different backbone (e.g. a local encoder folder); its tokenizer may differ "
        "from the policy's (reference §5.1 re-tokenisation).",
    )
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(weight_decay=0.1))


class RewardParams(PreferenceParams):
    pass


class CostParams(PreferenceParams):
    pass


class SafetyBudget(Frozen):
    """A harmful-rate budget, calibrated into the cost threshold d at the start of each stage."""

    max_harmful_rate: float = Field(gt=0, lt=1, description="e.g. 0.02 = at most 2% harmful.")
    scope: Literal["harmful_prompts", "all_prompts"] = Field(default="harmful_prompts")
    calibration_samples: int = Field(default=512, gt=0, description="Rollouts to calibrate on.")


class RolloutParams(Frozen):
    prompt_batch_size: int = Field(default=16, gt=0, description="Prompts per iteration.")
    num_return_sequences: int = Field(default=1, gt=0)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, gt=0)
    decode: Literal["auto", "hf"] = Field(
        default="auto",
        description="auto: the static-KV-cache sampling loop for the builtin families (GPT-2, "
        "LLaMA; the same tokens as Hugging Face generate under the same seed, without its "
        "per-step overhead), Hugging Face generate for anything else (other architectures, "
        "adapters, ZeRO-3); hf: always Hugging Face generate.",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the decode step of the auto loop: faster steps after a "
        "one-off compile (tens of seconds on CPU, logged to the stage log). Worth it for long "
        "runs, not for short ones.",
    )


class PPOLagParams(CommonParams):
    prompts: list[DataSource] = Field(min_length=1, description="Prompt-only training data.")
    algorithm: Literal["ppo_lag", "ppo", "reward_shaping"] = Field(default="ppo_lag")
    threshold: float | None = Field(
        default=None, description="Raw cost threshold d in cost-model units (reference default 0)."
    )
    safety_budget: SafetyBudget | None = Field(
        default=None, description="Alternative to `threshold`: a harmful-rate budget."
    )
    lambda_init: float = Field(default=1.0, gt=0, description="Initial λ (fixed ν for shaping).")
    lambda_lr: float = Field(default=0.1, gt=0, description="SGD lr on log λ.")
    lambda_max: float | None = Field(default=5.0, gt=0, description="Upper clamp on λ.")
    lambda_update_delay_steps: int = Field(default=0, ge=0)
    episode_cost_window_size: int = Field(default=128, gt=0)
    kl_coeff: float = Field(default=0.01, ge=0, description="β of the per-token KL shaping.")
    clip_range_ratio: float = Field(default=0.2, gt=0)
    clip_range_score: float = Field(default=50.0, gt=0)
    clip_range_value: float = Field(default=5.0, gt=0)
    gamma: float = Field(default=1.0, gt=0, le=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    update_iters: int = Field(default=1, gt=0)
    reuse_rollout_forward: bool = Field(
        default=True,
        description="The first update after each rollout runs at the rollout's weights, so its "
        "training forwards of the actor and both critics stand in for the rollout's no-grad ones "
        "(three forward passes fewer; same numbers). Applied only when the networks have no "
        "dropout; holds the three networks' activations at once (their sum instead of the "
        "largest), so turn it off when memory is tight.",
    )
    iterations: int | None = Field(default=None, gt=0, description="Rollout-update iterations.")
    rollout: RolloutParams = Field(default_factory=RolloutParams)
    actor_optim: OptimSpec = Field(default_factory=lambda: OptimSpec(lr=1e-5, weight_decay=0.01))
    critic_optim: OptimSpec = Field(
        default_factory=lambda: OptimSpec(lr=5e-6, lr_scheduler="constant")
    )
    ptx_data: list[DataSource] = Field(default_factory=list, description="PTX supervised data.")
    ptx_coeff: float = Field(default=16.0, ge=0)
    reward_source: Literal["model", "oracle"] = Field(
        default="model",
        description="oracle: the synthetic benchmark's exact functions instead of RM/CM "
        "(toy runs).",
    )
    critic_init: Literal["score_model", "policy"] = Field(
        default="score_model", description="Critics start from RM/CM (reference) or the policy."
    )
    eval_prompts: list[DataSource] = Field(default_factory=list)
    eval_every_iterations: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _threshold_xor_budget(self) -> PPOLagParams:
        if self.algorithm == "ppo_lag" and self.threshold is not None and self.safety_budget:
            raise ValueError("give either `threshold` or `safety_budget`, not both")
        if self.algorithm == "ppo_lag" and self.threshold is None and self.safety_budget is None:
            raise ValueError(
                "ppo_lag needs `threshold` (cost-model units) or `safety_budget` "
                "(e.g. {max_harmful_rate: 0.02}); the reference default 0 can be vacuous"
            )
        return self


Judge = Literal["cost_model", "keyword", "synthetic"]


class EvaluateParams(Frozen):
    prompts: list[DataSource] = Field(min_length=1, description="Evaluation prompt sets.")
    judges: list[Judge] = Field(default_factory=lambda: list[Judge](["cost_model", "keyword"]))
    samples_per_prompt: int = Field(default=1, gt=0)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, gt=0)
    arena: bool = Field(default=True, description="Pairwise win rates and Elo across versions.")
    plots: bool = Field(default=True, description="PNG reward/cost distributions per version.")


class CollectParams(Frozen):
    prompts: list[DataSource] = Field(min_length=1)
    samples_per_prompt: int = Field(default=2, ge=2)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    labeler: Literal["oracle", "import"] = Field(default="oracle")
    label_noise: float = Field(default=0.0, ge=0, le=0.5)
    batch_size: int = Field(default=32, gt=0)


# --------------------------------------------------------------------------------------------
# Resolved stage configs (stage.json)
# --------------------------------------------------------------------------------------------


class StageIO(Frozen):
    """Fields the planner resolves; common to every stage."""

    kind: StageKind
    output_dir: str = Field(description="Where model/, checkpoints/, events.jsonl, result.json go.")
    seed: int = Field(default=42, description="Seeds torch, numpy, random and data order.")
    backend: BackendSpec = Field(default_factory=BackendSpec)
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    job: str = Field(default="", description="Job name, for logs and events.")
    round: int = Field(default=1, ge=1)


class SFTConfig(StageIO, SFTParams):
    kind: Literal["sft"] = "sft"
    model: ModelSpec = Field(description="Starting model (builtin or folder).")


class RewardConfig(StageIO, RewardParams):
    kind: Literal["reward"] = "reward"
    policy_path: str = Field(description="SFT model folder (backbone and tokenizer).")


class CostConfig(StageIO, CostParams):
    kind: Literal["cost"] = "cost"
    policy_path: str = Field(description="SFT model folder (backbone and tokenizer).")


class PPOLagConfig(StageIO, PPOLagParams):
    kind: Literal["ppo_lag"] = "ppo_lag"
    actor_path: str = Field(description="Starting policy (previous round's or the SFT model).")
    reference_path: str = Field(description="Frozen reference policy (the initial actor).")
    reward_model_path: str | None = None
    cost_model_path: str | None = None
    reward_critic_path: str | None = Field(default=None, description="Default: reward model.")
    cost_critic_path: str | None = Field(default=None, description="Default: cost model.")


class PolicyVersion(Frozen):
    name: str = Field(description="Display name, e.g. sft, round-1.")
    path: str = Field(description="Model folder.")


class EvaluateConfig(StageIO, EvaluateParams):
    kind: Literal["evaluate"] = "evaluate"
    policies: list[PolicyVersion] = Field(min_length=1, description="Versions to compare.")
    reward_model_path: str | None = None
    cost_model_path: str | None = None


class CollectConfig(StageIO, CollectParams):
    kind: Literal["collect"] = "collect"
    policy_path: str
    labels_path: str | None = Field(
        default=None, description="labeler import: the imported labels file (after export)."
    )


StageConfig = Annotated[
    SFTConfig | RewardConfig | CostConfig | PPOLagConfig | EvaluateConfig | CollectConfig,
    Field(discriminator="kind"),
]

PARAMS_BY_KIND: dict[str, type[Frozen]] = {
    "sft": SFTParams,
    "reward": RewardParams,
    "cost": CostParams,
    "ppo_lag": PPOLagParams,
    "evaluate": EvaluateParams,
    "collect": CollectParams,
}
CONFIG_BY_KIND: dict[str, type[StageIO]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "cost": CostConfig,
    "ppo_lag": PPOLagConfig,
    "evaluate": EvaluateConfig,
    "collect": CollectConfig,
}


class _Envelope(BaseModel):
    config: StageConfig


def parse_stage_config(raw: dict[str, Any]) -> StageIO:
    """Validate a resolved stage config (raises pydantic.ValidationError)."""
    return _Envelope.model_validate({"config": raw}).config


def load_stage_config(path: str | Path) -> StageIO:
    return parse_stage_config(json.loads(Path(path).read_text()))


def dump_stage_config(config: StageIO, path: str | Path) -> None:
    Path(path).write_text(config.model_dump_json(indent=2))
