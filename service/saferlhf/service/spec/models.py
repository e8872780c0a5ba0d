"""The job spec (DESIGN §4) as pydantic models: one YAML document describes every stage and round.

Stage parameters are the runners' own `*Params` models (saferlhf.runners.common.config), extended
with
the per-stage overrides the control plane needs (resources, backend, retries, timeouts) — so a
spec is validated by exactly the code that will later read `stage.json`. A stage may instead be
skipped by giving its output (`use: <path>`). Everything here is pure: no I/O, no torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from saferlhf.runners.common.config import (
    BackendSpec,
    CollectParams,
    CostParams,
    DataSource,
    DeepSpeedSpec,
    DPOParams,
    EvaluateParams,
    Frozen,
    ModelSpec,
    PPOLagParams,
    RewardParams,
    RolloutEngineSpec,
    SafeDPOParams,
    SFTParams,
)

API_VERSION = "saferlhf.dev/v1alpha1"
KIND = "SafeRLHFJob"

# Spec stage key -> runner kind (`python -m saferlhf.runners.<kind>`).
RUNNER_KIND = {
    "sft": "sft",
    "reward": "reward",
    "cost": "cost",
    "ppo_lag": "ppo_lag",
    "eval": "evaluate",
    "collect": "collect",
    "dpo": "dpo",
    "safe_dpo": "safe_dpo",
}
# stages whose output is a model folder
USABLE_STAGES = ("sft", "reward", "cost", "ppo_lag", "dpo", "safe_dpo")
OFFLINE_STAGES = ("safe_dpo", "dpo")  # the cheap alternatives to reward ∥ cost → ppo_lag
CHAIN_STAGES = ("reward", "cost", "ppo_lag")  # the Safe RLHF chain they replace

# --- regexes for values that end up in Kubernetes objects (DESIGN §11) ------------------------
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # ≤ 63 chars
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = rf"^({DNS1123_SUBDOMAIN[1:-1]}/)?{LABEL_NAME}$"
LABEL_VALUE = rf"^({LABEL_NAME})?$"
# registry[:port]/path[:tag][@sha256:digest] — no spaces, quotes or shell metacharacters.
IMAGE_REF = (
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
CPU_QUANTITY = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
METRIC_NAME = r"^[a-z_]+/[A-Za-z0-9_./-]+$"
ARTIFACT_URI = r"^(file://.+|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9_.-]+)*/?|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.-]+)*/?)$"  # noqa: E501
JOB_NAME_MAX = 40  # Kubernetes names get "-r<round>-<stage>-<attempt>" appended (≤ 63 in all)


def _number_to_str(value: Any) -> Any:
    """YAML reads `cpu: 2` as an int; Kubernetes quantities are strings."""
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int | float) else value


Quantity = Annotated[str, BeforeValidator(_number_to_str)]
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity_bytes(text: str) -> int:
    """A memory quantity matching MEMORY_QUANTITY ("80Gi", "24G", "81559Mi") in bytes."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", text.strip())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a memory quantity: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


OptionalQuantity = Annotated[str | None, BeforeValidator(_number_to_str)]


class ResourcesSpec(Frozen):
    """Compute for one stage (→ `saferlhf.service.state.types.Resources`, and torchrun's
    layout)."""

    nodes: int = Field(default=1, ge=1, le=1024, description="Nodes (torchrun --nnodes).")
    nproc_per_node: int = Field(
        default=1, ge=1, le=64, description="Processes per node (usually = GPUs per node)."
    )
    gpus_per_node: int = Field(default=0, ge=0, le=64, description="GPUs requested per node.")
    cpu: Quantity = Field(default="2", pattern=CPU_QUANTITY, description='CPU, e.g. "2", "500m".')
    memory: Quantity = Field(default="8Gi", pattern=MEMORY_QUANTITY, description='e.g. "8Gi".')
    shm_size: Quantity = Field(
        default="1Gi", pattern=MEMORY_QUANTITY, description="/dev/shm size (memory volume)."
    )
    gpu_memory: OptionalQuantity = Field(
        default=None, pattern=MEMORY_QUANTITY,
        description='Memory of one GPU, e.g. "80Gi" (A100/H100 80GB) or "24Gi". With GPUs and '
        "this set, submit rejects a stage whose estimated memory per GPU exceeds it "
        "(`saferlhf plan` shows the estimates); unset: estimated, not checked.",
    )

    @field_validator("gpu_memory")
    @classmethod
    def _gpu_memory_has_a_unit(cls, value: str | None) -> str | None:
        """`gpu_memory: 80` is 80 bytes: almost surely a missing unit, so say so."""
        if value is not None and re.fullmatch(MEMORY_QUANTITY, value) \
                and quantity_bytes(value) < 2**30:
            raise ValueError(f"{value!r} is less than 1 GiB; give the unit, e.g. 80Gi")
        return value


class RetrySpec(Frozen):
    """Retries of a failed stage attempt, counted by the control plane's store."""

    max_attempts: int = Field(default=3, ge=1, le=20, description="Attempts in all (1 = none).")
    backoff_seconds: float = Field(default=30.0, ge=0, description="First retry delay.")
    backoff_max_seconds: float = Field(
        default=600.0, ge=0, description="Cap of the exponential backoff (doubles per retry)."
    )


class StageOverrides(Frozen):
    """Per-stage settings of the control plane (not the runner's); unset = `spec.defaults`."""

    resources: ResourcesSpec | None = Field(default=None, description="Overrides per field.")
    backend: BackendSpec | None = Field(default=None, description="plain or deepspeed.")
    deepspeed: DeepSpeedSpec | None = Field(
        default=None, description="Shortcut: sets backend.kind=deepspeed with these settings."
    )
    retries: RetrySpec | None = Field(default=None, description="Overrides spec.retries.")
    timeout_minutes: float | None = Field(
        default=None, gt=0, description="Cancel an attempt running longer than this."
    )
    stall_minutes: float | None = Field(
        default=None, gt=0, description="Cancel and retry an attempt with no event for this long."
    )


class UsedStage(StageOverrides):
    """A skipped stage: its output is given instead (e.g. an existing SFT model folder)."""

    use: str = Field(min_length=1, description="Path of the stage's output (a model folder).")


class SFTStage(SFTParams, StageOverrides):
    """`saferlhf.runners.sft` parameters plus overrides."""


class RewardStage(RewardParams, StageOverrides):
    """`saferlhf.runners.reward` parameters plus overrides."""


class CostStage(CostParams, StageOverrides):
    """`saferlhf.runners.cost` parameters plus overrides."""


class PPOLagStage(PPOLagParams, StageOverrides):
    """`saferlhf.runners.ppo_lag` parameters plus overrides."""


class DPOStage(DPOParams, StageOverrides):
    """`saferlhf.runners.dpo` parameters plus overrides (plain DPO, the baseline)."""


class SafeDPOStage(SafeDPOParams, StageOverrides):
    """`saferlhf.runners.safe_dpo` parameters plus overrides (SafeDPO)."""


class EvalStage(EvaluateParams, StageOverrides):
    """`saferlhf.runners.evaluate` parameters plus overrides."""


_COLLECT = CollectParams.model_fields


class CollectStage(StageOverrides):
    """Generation settings of the round-≥2 `collect` stages (what to collect: `rounds.collect`)."""

    max_new_tokens: int = Field(default=_COLLECT["max_new_tokens"].default, gt=0)
    temperature: float = Field(default=_COLLECT["temperature"].default, gt=0)
    batch_size: int = Field(default=_COLLECT["batch_size"].default, gt=0)
    rollout: RolloutEngineSpec = Field(
        default_factory=RolloutEngineSpec, description=_COLLECT["rollout"].description)


def _stage_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "use" if "use" in value else "params"
    return "use" if isinstance(value, UsedStage) else "params"


_SKIP = Discriminator(_stage_tag)  # a mapping with `use:` is a UsedStage, any other the params
SFTOrUse = Annotated[Annotated[SFTStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]
RewardOrUse = Annotated[
    Annotated[RewardStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]
CostOrUse = Annotated[Annotated[CostStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]
PPOLagOrUse = Annotated[
    Annotated[PPOLagStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]
DPOOrUse = Annotated[Annotated[DPOStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]
SafeDPOOrUse = Annotated[
    Annotated[SafeDPOStage, Tag("params")] | Annotated[UsedStage, Tag("use")], _SKIP]

STAGE_TAGS = ("params", "use")  # appear in pydantic error locations; dropped from field paths


class StagesSpec(Frozen):
    """The Safe RLHF chain (reward ∥ cost → ppo_lag), an offline stage instead of it (safe_dpo
    or dpo), or both with `spec.escalation` (the offline stage first, the chain only when its
    evaluation misses the escalation gate)."""

    sft: SFTOrUse = Field(description="Supervised fine-tuning (or `use:` a model).")
    reward: RewardOrUse | None = Field(
        default=None, description="Reward model (helpfulness); part of the PPO-Lag chain.")
    cost: CostOrUse | None = Field(
        default=None, description="Cost model (harmlessness); part of the PPO-Lag chain.")
    ppo_lag: PPOLagOrUse | None = Field(
        default=None, description="PPO-Lagrangian (or ppo, shaping); needs reward and cost.")
    safe_dpo: SafeDPOOrUse | None = Field(
        default=None, description="SafeDPO on safety-labelled preference pairs: the offline "
        "alternative to the chain (or its cheap first step, with `escalation`).")
    dpo: DPOOrUse | None = Field(
        default=None, description="Plain DPO, the baseline (the same place as safe_dpo).")
    eval: EvalStage | None = Field(default=None, description="Evaluation; omitted = none.")
    collect: CollectStage | None = Field(
        default=None, description="Settings of the collect stages (rounds ≥ 2)."
    )


class CollectRoundSpec(Frozen):
    """What rounds ≥ 2 collect: responses of the previous round's policy, then decoupled labels."""

    samples_per_prompt: int = Field(default=_COLLECT["samples_per_prompt"].default, ge=2)
    labeler: Literal["oracle", "import"] = Field(
        default="oracle",
        description="oracle: the synthetic benchmark's exact functions; import: pause the round "
        "(AWAITING_LABELS) until a labels file is imported.",
    )
    label_noise: float = Field(default=0.0, ge=0, le=0.5, description="Oracle: flip this share.")
    prompts: list[DataSource] | None = Field(
        default=None, description="Prompts to sample on; default: the ppo_lag prompts."
    )


class RoundsSpec(Frozen):
    count: int = Field(default=1, ge=1, le=20, description="Alignment rounds (paper §9).")
    collect: CollectRoundSpec = Field(default_factory=CollectRoundSpec)


GATE_STAGES = Literal["sft", "reward", "cost", "ppo_lag", "eval", "collect", "dpo", "safe_dpo"]


class GateSpec(Frozen):
    """Compare a metric reported by a stage; on failure fail the job or pause for approval."""

    after: GATE_STAGES = Field(description="Stage whose result is checked (in every round).")
    metric: str = Field(pattern=METRIC_NAME, description="e.g. eval/harmful_rate.")
    op: Literal["<", "<=", ">", ">=", "==", "!="] = Field(description="Comparison.")
    value: float = Field(description="Right-hand side.")
    on_fail: Literal["fail", "pause"] = Field(default="fail")
    rounds: list[int] | None = Field(
        default=None, description="Rounds to check (default: every round with that stage)."
    )

    @field_validator("rounds")
    @classmethod
    def _positive_rounds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(r < 1 for r in value):
            raise ValueError("rounds are numbered from 1")
        return value


class EscalationSpec(Frozen):
    """Cheap first: run the offline stage (safe_dpo or dpo), evaluate its policy, and keep it when
    `metric op value` holds; only when it misses, continue with reward ∥ cost → ppo_lag starting
    from that policy, then evaluate again. The plan, the gate (ESCALATED or PASSED) and the
    job's `Escalation` condition say which branch ran and why."""

    metric: str = Field(default="eval/harmful_rate", pattern=METRIC_NAME,
                        description="What the offline policy's evaluation must meet.")
    op: Literal["<", "<=", ">", ">=", "==", "!="] = Field(default="<=", description="Comparison.")
    value: float | None = Field(
        default=None,
        description="The bound. Default for eval/harmful_rate: ppo_lag.safety_budget."
        "max_harmful_rate (the budget PPO-Lag would then be held to).",
    )


class DefaultsSpec(Frozen):
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    backend: BackendSpec = Field(default_factory=BackendSpec)
    deepspeed: DeepSpeedSpec | None = Field(
        default=None, description="Shortcut: sets backend.kind=deepspeed with these settings."
    )
    timeout_minutes: float | None = Field(default=None, gt=0, description="Per attempt.")
    stall_minutes: float | None = Field(
        default=30.0, gt=0, description="No runner event for this long = hung (cancel, retry)."
    )


class ArtifactsSpec(Frozen):
    uri: str | None = Field(
        default=None,
        pattern=ARTIFACT_URI,
        description="file://<dir> | pvc://<claim>/<prefix> | s3://<bucket>/<prefix>; "
        "default: the service's artifact root.",
    )


class Toleration(Frozen):
    key: str | None = Field(default=None, pattern=LABEL_KEY)
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, pattern=LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _operator_rules(self) -> Toleration:
        """Kubernetes' own rules: `Exists` takes no value; `Equal` needs a key."""
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no `value`; drop it or use operator Equal")
        if self.operator == "Equal" and not self.key:
            raise ValueError("operator Equal needs a `key` (or use operator Exists)")
        return self


class KubernetesSpec(Frozen):
    """Used when `executor: kubernetes`. Every value is checked against Kubernetes' syntax."""

    image: str | None = Field(default=None, pattern=IMAGE_REF, description="Runner image.")
    namespace: str | None = Field(default=None, pattern=DNS1123_LABEL, max_length=63)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    queue: str | None = Field(
        default=None, pattern=DNS1123_SUBDOMAIN, max_length=253,
        description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name; Jobs start suspended).",
    )
    service_account: str | None = Field(default=None, pattern=DNS1123_SUBDOMAIN, max_length=253)
    priority_class: str | None = Field(default=None, pattern=DNS1123_SUBDOMAIN, max_length=253)
    image_pull_secrets: list[Annotated[str, Field(pattern=DNS1123_SUBDOMAIN)]] = Field(
        default_factory=list
    )

    @field_validator("node_selector")
    @classmethod
    def _label_syntax(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not re.match(LABEL_KEY, key):
                raise ValueError(f"node_selector key {key!r} is not a Kubernetes label key")
            if not re.match(LABEL_VALUE, val):
                raise ValueError(f"node_selector value {val!r} is not a Kubernetes label value")
        return value


class Metadata(Frozen):
    name: str = Field(
        pattern=DNS1123_LABEL, max_length=JOB_NAME_MAX,
        description="Lower-case letters, digits and '-' (it goes into Kubernetes names).",
    )
    project: str = Field(default="default", pattern=DNS1123_LABEL, max_length=63)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _label_syntax(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not re.match(LABEL_KEY, key):
                raise ValueError(f"label key {key!r} is not a Kubernetes label key")
            if not re.match(LABEL_VALUE, val):
                raise ValueError(f"label value {val!r} is not a Kubernetes label value")
        return value


class Spec(Frozen):
    executor: Literal["local", "kubernetes"] = Field(default="local")
    model: ModelSpec = Field(description="The starting model (builtin, local folder or hub).")
    artifacts: ArtifactsSpec = Field(default_factory=ArtifactsSpec)
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    stages: StagesSpec
    rounds: RoundsSpec = Field(default_factory=RoundsSpec)
    gates: list[GateSpec] = Field(default_factory=list)
    escalation: EscalationSpec | None = Field(
        default=None, description="Run ppo_lag only when the offline stage misses this gate.")
    retries: RetrySpec = Field(default_factory=RetrySpec)
    seed: int = Field(default=42, ge=0, lt=2**31, description="Every stage seed derives from it.")
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)

    def stage_resources(self, stage: StageOverrides | None) -> ResourcesSpec:
        """`defaults.resources` with the fields the stage sets overriding them."""
        merged = self.defaults.resources
        if stage is not None and stage.resources is not None:
            override = stage.resources
            merged = merged.model_copy(
                update={f: getattr(override, f) for f in override.model_fields_set})
        return merged

    def stage_backend(self, stage: StageOverrides | None) -> BackendSpec:
        """The stage's backend: its own `backend:` / `deepspeed:`, else the defaults'."""
        backend = self.defaults.backend
        if self.defaults.deepspeed is not None:
            backend = backend.model_copy(update={"kind": "deepspeed",
                                                 "deepspeed": self.defaults.deepspeed})
        if stage is not None and stage.backend is not None:
            backend = stage.backend
        if stage is not None and stage.deepspeed is not None:
            backend = backend.model_copy(update={"kind": "deepspeed", "deepspeed": stage.deepspeed})
        return backend


class JobSpec(Frozen):
    """One Safe RLHF job: `apiVersion`, `kind`, `metadata`, `spec` (Kubernetes-style)."""

    apiVersion: Literal["saferlhf.dev/v1alpha1"] = Field(description="saferlhf.dev/v1alpha1")
    kind: Literal["SafeRLHFJob"] = Field(description="SafeRLHFJob")
    metadata: Metadata
    spec: Spec


def offline_stage(stages: StagesSpec) -> str | None:
    """Which offline stage the spec runs (safe_dpo or dpo), if any."""
    return next((name for name in OFFLINE_STAGES if getattr(stages, name) is not None), None)


def escalation_value(spec: Spec) -> float | None:
    """The escalation gate's bound: `escalation.value`, else (for eval/harmful_rate) the PPO-Lag
    safety budget's max_harmful_rate when that budget is over harmful prompts — the rate the
    evaluation reports. None when neither applies (the spec checks refuse that)."""
    if spec.escalation is None:
        return None
    if spec.escalation.value is not None:
        return spec.escalation.value
    ppo = spec.stages.ppo_lag
    budget = getattr(ppo, "safety_budget", None)
    if spec.escalation.metric == "eval/harmful_rate" and budget is not None \
            and budget.scope == "harmful_prompts":
        return budget.max_harmful_rate
    return None
