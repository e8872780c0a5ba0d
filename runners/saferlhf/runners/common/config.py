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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from saferlhf.runners.common.judge_config import (
    CostModelJudge,
    JudgeSpec,
    KeywordJudge,
    check_judges,
    expand_judges,
    judges_json_schema,
)

STAGE_KINDS = ("sft", "reward", "cost", "ppo_lag", "evaluate", "collect", "dpo", "safe_dpo")
StageKind = Literal["sft", "reward", "cost", "ppo_lag", "evaluate", "collect", "dpo", "safe_dpo"]


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
    "harmbench",  # HarmBench behaviours CSV (prompt-only; SemanticCategory)
    "strongreject",  # StrongREJECT forbidden prompts CSV (prompt-only; category)
    "jailbreakbench",  # JailbreakBench JBB-Behaviors CSV (prompt-only; benign-behaviors = safe)
    "jsonl",  # generic JSONL; `kind` says which record type each row is
]
RecordKind = Literal[
    "supervised", "preference", "safety_preference", "prompt_only", "safety_labelled_preference"
]


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
        description="Synthetic benchmark split: sft | preference | safety_preference | "
        "safety_labelled_preference | prompts | eval (held-out templates) | calibration. For hub "
        "datasets: train | test.",
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


# LoRA target layers per architecture (`config.model_type`) when `target_modules` is not given:
# the attention and MLP projections. Any other architecture gets every Linear layer except the
# output head (peft's "all-linear"), like the reference fork.
LORA_DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    **dict.fromkeys(("llama", "mistral", "qwen2"), (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
}


# The layers a LoRA target may name in the builtin models (their lm_head is tied to the input
# embeddings, so it is not one of them). Lets the service reject a typo at submit time; a test
# checks this table against the models themselves.
BUILTIN_LORA_LAYERS: dict[str, tuple[str, ...]] = {
    "builtin:tiny-gpt2": LORA_DEFAULT_TARGETS["gpt2"],
    "builtin:tiny-llama": LORA_DEFAULT_TARGETS["llama"],
}


class LoraSpec(Frozen):
    """LoRA adapters (peft) instead of full fine-tuning: each target layer computes
    W·x + (alpha/r)·B·A·x with W frozen and only A (r × in) and B (out × r) trained; B starts at
    zero, so training starts from the base model. Defaults follow the reference fork (r 8,
    alpha 16, dropout 0.05)."""

    r: int = Field(default=8, gt=0, description="Adapter rank r.")
    alpha: float = Field(default=16.0, gt=0, description="ΔW = (alpha / r)·B·A.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | None = Field(
        default=None, min_length=1,
        description="Names of the Linear layers to adapt (the last part of a module name, e.g. "
        "c_attn). Default per architecture: GPT-2 c_attn, c_proj, c_fc; LLaMA / Mistral / "
        "Qwen2 q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; otherwise every "
        "Linear layer but the output head. A name the model lacks is an error listing its "
        "layer names.",
    )

    @model_validator(mode="after")
    def _names(self) -> LoraSpec:
        names = self.target_modules or []
        bad = [n for n in names if not n or not n.replace("_", "").replace(".", "").isalnum()]
        if bad:
            raise ValueError(f"target_modules: {bad} are not module names (letters, digits, _ "
                             "and . only, e.g. c_attn or q_proj)")
        if len(set(names)) != len(names):
            raise ValueError("target_modules lists a name twice")
        return self


class PolicyLoraSpec(LoraSpec):
    """LoRA for a policy (SFT, the PPO-Lag actor): `model/` gets the adapter in peft format."""

    save_merged: bool = Field(
        default=False,
        description="Also write `model/merged/`: a plain Hugging Face folder with W + ΔW merged "
        "and the tokenizer (loads with AutoModelForCausalLM.from_pretrained, no peft needed).",
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
    lora: PolicyLoraSpec | None = Field(
        default=None, description="Train LoRA adapters instead of every weight."
    )


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
    lora: LoraSpec | None = Field(
        default=None,
        description="Train LoRA adapters on the backbone (the score head is trained in full); "
        "the saved score model has the adapters merged, in the usual layout.",
    )


class RewardParams(PreferenceParams):
    pass


class CostParams(PreferenceParams):
    pass


class SafetyBudget(Frozen):
    """A harmful-rate budget, calibrated into the cost threshold d at the start of each stage."""

    max_harmful_rate: float = Field(gt=0, lt=1, description="e.g. 0.02 = at most 2% harmful.")
    scope: Literal["harmful_prompts", "all_prompts"] = Field(default="harmful_prompts")
    calibration_samples: int = Field(default=512, gt=0, description="Rollouts to calibrate on.")


CPU_KV_CACHE_GIB = 1.0  # vllm without a GPU and without kv_cache_gib (VLLM_CPU_KVCACHE_SPACE)


class RolloutEngineSpec(Frozen):
    """Which engine samples responses, and how much memory it may take (docs/running_on_gpus.md,
    "Rollout engine"). Both engines sample the same way (temperature, top_p, max_new_tokens,
    stop at EOS, seed); PPO-Lag recomputes the actor's log-probs of the sampled tokens either
    way."""

    engine: Literal["hf", "vllm"] = Field(
        default="hf",
        description="hf: Hugging Face `generate` on the policy itself; vllm: an in-process vLLM "
        "engine (PPO-Lag copies the actor's weights into it, in memory, after every update).",
    )
    gpu_memory_utilization: float = Field(
        default=0.4, gt=0, lt=1,
        description="vllm on GPUs: share of the GPU's memory vLLM may take for its weights and KV "
        "cache. The trainer shares the GPU, so leave it room.",
    )
    kv_cache_gib: float | None = Field(
        default=None, gt=0,
        description="vllm: KV-cache size in GiB; overrides gpu_memory_utilization. Without a GPU "
        f"the default is {CPU_KV_CACHE_GIB:g} GiB of CPU memory.",
    )

    @property
    def is_vllm(self) -> bool:
        return self.engine == "vllm"


class RolloutParams(RolloutEngineSpec):
    prompt_batch_size: int = Field(default=16, gt=0, description="Prompts per iteration.")
    num_return_sequences: int = Field(default=1, gt=0)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, gt=0)
    weight_sync_deadline_seconds: float = Field(
        default=300.0, gt=0,
        description="vllm: a weight sync into the engine that takes longer fails the attempt "
        "with a retryable error (exit 75) instead of hanging.",
    )
    sleep_during_training: bool = Field(
        default=True,
        description="vllm on GPUs: free the engine's KV cache and offload its weights while the "
        "actor trains (vLLM sleep mode, level 1). vLLM's CPU backend has no sleep mode.",
    )
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
    lora: PolicyLoraSpec | None = Field(
        default=None,
        description="Train LoRA adapters on the actor; the frozen reference is then the actor's "
        "base with its adapters switched off (no second copy of the weights).",
    )
    critic_lora: LoraSpec | None = Field(
        default=None, description="LoRA adapters on both critics' backbones (value heads in full)."
    )
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


class PolicyPreferenceParams(CommonParams):
    """Shared by the offline preference-optimisation stages (`dpo`, `safe_dpo`): the policy is
    trained directly on labelled pairs against a frozen reference, with no reward model, cost
    model or sampling (Rafailov et al. 2023; SafeDPO, arXiv:2505.20065). Defaults follow the
    SafeDPO paper's setup (β = 0.1, lr 1e-6 cosine); a tiny from-scratch model needs a higher lr."""

    data: list[DataSource] = Field(min_length=1, description="Preference pairs.")
    eval_data: list[DataSource] = Field(default_factory=list, description="Held-out pairs.")
    eval_split_ratio: float | None = Field(default=None, gt=0, lt=1)
    beta: float = Field(
        default=0.1, gt=0,
        description="β: the implicit reward is β·log(π/π_ref); larger keeps the policy nearer "
        "the reference (the KL coefficient of the equivalent RLHF objective).",
    )
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(lr=1e-6))
    lora: PolicyLoraSpec | None = Field(
        default=None, description="Train LoRA adapters instead of every weight (π_ref is the "
        "starting policy without them)."
    )


class DPOParams(PolicyPreferenceParams):
    """Plain DPO, the baseline: one preference label orders each pair, safety is not modelled."""

    preference: Literal["helpfulness", "harmlessness"] = Field(
        default="helpfulness",
        description="Which label orders the pairs: helpfulness (`preference` records, the "
        "better response wins; the paper's DPO-HELPFUL) or harmlessness (`safety_preference` "
        "records, the safer response wins; DPO-HARMLESS).",
    )

    @property
    def record_kind(self) -> RecordKind:
        return "preference" if self.preference == "helpfulness" else "safety_preference"


class SafeDPOParams(PolicyPreferenceParams):
    """SafeDPO: helpfulness pairs whose responses each carry a safe/unsafe label
    (`safety_labelled_preference` records, e.g. PKU-SafeRLHF rows)."""

    safety_margin: float = Field(
        default=10.0, ge=0,
        description="Δ: how much more implicit reward a safe response must win by over an "
        "unsafe one (SafeDPO's one extra hyperparameter; the paper's default 10, 0 = only the "
        "safety-aware reordering of pairs).",
    )

    @property
    def record_kind(self) -> RecordKind:
        return "safety_labelled_preference"


class EvaluateParams(Frozen):
    prompts: list[DataSource] = Field(min_length=1, description="Evaluation prompt sets.")
    judges: list[JudgeSpec] = Field(
        default_factory=lambda: list[JudgeSpec]([CostModelJudge(name="cost_model"),
                                                 KeywordJudge(name="keyword")]),
        min_length=1, json_schema_extra=judges_json_schema,
        description="Judges, each {name, kind, settings} (kinds: keyword, cost_model, synthetic, "
        "llm, classifier; docs/evaluation.md); a bare kind is shorthand for {kind: <kind>}. "
        "Default [cost_model, keyword].",
    )
    samples_per_prompt: int = Field(default=1, gt=0)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, gt=0)
    rollout: RolloutEngineSpec = Field(
        default_factory=RolloutEngineSpec, description="The engine that answers the prompts."
    )
    arena: bool = Field(default=True, description="Pairwise win rates and Elo across versions.")
    plots: bool = Field(default=True, description="PNG reward/cost distributions per version.")
    regression_tolerance: float = Field(
        default=0.0, ge=0, le=1,
        description="A version is flagged worse than the one before when its harmful rate rose, "
        "or its helpfulness fell, by more than this (absolute, 0–1): eval/worsened.",
    )

    @field_validator("judges", mode="before")
    @classmethod
    def _judge_shorthand(cls, value: Any) -> Any:
        return expand_judges(value)

    @model_validator(mode="after")
    def _judges_unique(self) -> EvaluateParams:
        check_judges(self.judges)
        return self


class CollectParams(Frozen):
    prompts: list[DataSource] = Field(min_length=1)
    samples_per_prompt: int = Field(default=2, ge=2)
    max_new_tokens: int = Field(default=128, gt=0)
    temperature: float = Field(default=1.0, gt=0)
    labeler: Literal["oracle", "import"] = Field(default="oracle")
    label_noise: float = Field(default=0.0, ge=0, le=0.5)
    batch_size: int = Field(default=32, gt=0)
    rollout: RolloutEngineSpec = Field(
        default_factory=RolloutEngineSpec, description="The engine that samples the responses."
    )


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

    @model_validator(mode="after")
    def _engine_fits_backend(self) -> PPOLagConfig:
        problem = rollout_backend_conflict(self.rollout, self.backend)
        if problem:
            raise ValueError(f"rollout.engine: {problem}")
        return self


def rollout_backend_conflict(rollout: RolloutEngineSpec, backend: BackendSpec) -> str | None:
    """Why this engine cannot sample for an actor trained on this backend (None: it can). Shared
    by the runner's config and the service's submit-time checks."""
    if rollout.engine == "vllm" and backend.kind == "deepspeed" \
            and backend.deepspeed.zero_stage == 3:
        return ("vllm needs the actor's full weights on every rank to sync them into the engine, "
                "but ZeRO-3 shards them; use engine: hf with ZeRO-3, or ZeRO stage 0-2")
    return None


class PolicyInputs(Frozen):
    """Inputs of the offline preference stages, resolved by the planner."""

    policy_path: str = Field(description="Starting policy (the SFT model): the one trained.")
    reference_path: str | None = Field(
        default=None, description="Frozen reference π_ref; default: the starting policy."
    )


class DPOConfig(StageIO, DPOParams, PolicyInputs):
    kind: Literal["dpo"] = "dpo"


class SafeDPOConfig(StageIO, SafeDPOParams, PolicyInputs):
    kind: Literal["safe_dpo"] = "safe_dpo"


class PolicyVersion(Frozen):
    name: str = Field(description="Display name, e.g. sft, round-1.")
    path: str = Field(description="Model folder.")
    round: int | None = Field(
        default=None, ge=0, description="The round that produced it (0 = the SFT or starting "
        "model); the round report's row.",
    )


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
    SFTConfig | RewardConfig | CostConfig | PPOLagConfig | EvaluateConfig | CollectConfig
    | DPOConfig | SafeDPOConfig,
    Field(discriminator="kind"),
]

PARAMS_BY_KIND: dict[str, type[Frozen]] = {
    "sft": SFTParams,
    "reward": RewardParams,
    "cost": CostParams,
    "ppo_lag": PPOLagParams,
    "evaluate": EvaluateParams,
    "collect": CollectParams,
    "dpo": DPOParams,
    "safe_dpo": SafeDPOParams,
}
CONFIG_BY_KIND: dict[str, type[StageIO]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "cost": CostConfig,
    "ppo_lag": PPOLagConfig,
    "evaluate": EvaluateConfig,
    "collect": CollectConfig,
    "dpo": DPOConfig,
    "safe_dpo": SafeDPOConfig,
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
