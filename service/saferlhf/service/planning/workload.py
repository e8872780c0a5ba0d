"""What one process of each stage holds and runs, read from the job spec — the planner's inputs.

Which networks a stage keeps resident follows the runners: SFT trains the policy; reward and cost
train a score model; PPO-Lag (runners/ppo_lag/models.py) trains the actor and one critic per
objective (reward critic always, cost critic for `ppo_lag`) and keeps the reference policy and,
unless `reward_source: oracle`, the reward and cost models frozen; evaluate and collect load one
model at a time, in fp32, without DeepSpeed (runners/evaluate/run.py, collect/run.py).

The LoRA and rollout-engine settings are read by duck typing (`lora`, `critic_lora`,
`rollout.engine`, `rollout.gpu_memory_utilization`) so that the stage fields other branches add
land here without a change; absent fields mean full fine-tuning and the HF engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saferlhf.service.planning.memory import Layout
from saferlhf.service.planning.model_config import Unknown, folder_shape, model_shape
from saferlhf.service.planning.plan import effective_backend, effective_resources
from saferlhf.service.planning.shapes import LoraInput, ModelShape
from saferlhf.service.spec.models import CollectStage, CostStage, JobSpec, RewardStage, UsedStage
from saferlhf.service.state.types import Resources

DEFAULT_PROMPT_TOKENS = 512  # CommonParams.max_length_tokens' default
VLLM_DEFAULT_UTILIZATION = 0.9  # vLLM's own default gpu_memory_utilization


@dataclass(frozen=True)
class Network:
    label: str  # "actor", "reference", "reward model", ...
    shape: ModelShape
    head: str  # "lm" (causal LM) or "score" (backbone + Linear(h, 1))
    trained: bool
    lora: LoraInput | None = None
    lora_field: str = ""  # spec path of the LoRA setting (for errors)


@dataclass(frozen=True)
class Generation:
    """Sampling done by the stage: b sequences of prompt + new tokens, HF or vLLM engine."""

    sequences: int
    prompt_tokens: int
    new_tokens: int
    engine: str = "hf"  # hf | vllm
    gpu_memory_utilization: float | None = None  # vLLM's share of the GPU


@dataclass(frozen=True)
class Workload:
    stage: str  # spec stage key: sft, reward, cost, ppo_lag, eval, collect
    networks: tuple[Network, ...]
    layout: Layout
    resources: Resources
    train_sequences: int = 0  # micro-batch of each trained network (0: no training)
    train_tokens: int = 0
    ptx_sequences: int = 0  # PPO-Lag's PTX batch, backpropagated with the actor's loss
    ptx_tokens: int = 0
    checkpointing: bool = False
    generation: Generation | None = None
    sequential: bool = False  # one network resident at a time (evaluate, collect)


def _lora(value: Any) -> LoraInput | None:
    if value is None:
        return None
    targets = getattr(value, "target_modules", None)
    if isinstance(targets, list | tuple):
        targets = tuple(str(t) for t in targets)
    return LoraInput(r=int(value.r), target_modules=targets)


def _layout(job: JobSpec, stage: Any, resources: Resources) -> tuple[Layout, bool]:
    backend = effective_backend(job, stage)
    world = resources.nodes * resources.nproc_per_node
    if backend.kind != "deepspeed":
        return Layout(False, 0, world, "fp32"), backend.gradient_checkpointing
    ds = backend.deepspeed
    return Layout(True, ds.zero_stage, world, ds.precision,
                  offload_params=ds.offload in ("parameter", "all"),
                  offload_optimizer=ds.offload in ("optimizer", "all")), \
        backend.gradient_checkpointing


def _fit(tokens: int, shape: ModelShape) -> int:
    return min(tokens, shape.context) if shape.context else tokens


def _engine(rollout: Any, sequences: int, prompt: int, new: int) -> Generation:
    engine = str(getattr(rollout, "engine", "hf") or "hf")
    util = getattr(rollout, "gpu_memory_utilization", None)
    if engine == "vllm" and util is None:
        util = VLLM_DEFAULT_UTILIZATION
    return Generation(sequences, prompt, new, engine, util)


class Inventory:
    """Shapes of the job's models, looked up once: policy, reward model, cost model."""

    def __init__(self, job: JobSpec) -> None:
        self.job = job
        stages = job.spec.stages
        base = model_shape(job.spec.model)
        self.policy = folder_shape(stages.sft.use) if isinstance(stages.sft, UsedStage) else base
        self.scorers = {name: self._scorer(name) for name in ("reward", "cost")}

    def _scorer(self, name: str) -> ModelShape | Unknown:
        stage = getattr(self.job.spec.stages, name)
        if isinstance(stage, UsedStage):
            return folder_shape(stage.use)
        if stage.init_from == "model" and stage.model is not None:
            return model_shape(stage.model)
        return self.policy

    def workload(self, name: str) -> Workload | Unknown | None:
        """The stage's workload; Unknown when a shape is; None when the stage does not run."""
        stage = getattr(self.job.spec.stages, name)
        if name == "collect":
            if self.job.spec.rounds.count < 2:
                return None
            stage = stage or CollectStage()  # rounds ≥ 2 collect with the defaults
        if isinstance(stage, UsedStage) and name in ("reward", "cost") \
                and self.job.spec.rounds.count >= 2:
            stage = _retrained(name, stage)  # rounds ≥ 2 retrain it (plan.py score_model)
        if stage is None or isinstance(stage, UsedStage):
            return None
        build = {"sft": self._sft, "reward": self._score, "cost": self._score,
                 "ppo_lag": self._ppo, "eval": self._sampler, "collect": self._sampler}[name]
        try:
            return build(name, stage)
        except _UnknownShape as missing:
            return missing.unknown

    def _known(self, shape: ModelShape | Unknown) -> ModelShape:
        if isinstance(shape, Unknown):
            raise _UnknownShape(shape)
        return shape

    def _sft(self, name: str, stage: Any) -> Workload:
        shape = self._known(self.policy)
        resources = effective_resources(self.job, stage)
        layout, gc = _layout(self.job, stage, resources)
        net = Network("policy", shape, "lm", True, _lora(getattr(stage, "lora", None)),
                      f"spec.stages.{name}.lora")
        return Workload(name, (net,), layout, resources, stage.batch_size,
                        _fit(stage.max_length_tokens, shape), checkpointing=gc)

    def _score(self, name: str, stage: Any) -> Workload:
        retrained = isinstance(getattr(self.job.spec.stages, name), UsedStage)
        shape = self._known(self.policy if retrained else self.scorers[name])
        resources = effective_resources(self.job, stage)
        layout, gc = _layout(self.job, stage, resources)
        net = Network(f"{name} model", shape, "score", True,
                      _lora(getattr(stage, "lora", None)), f"spec.stages.{name}.lora")
        # A micro-batch of pairs runs both sides at once: 2·batch_size sequences.
        return Workload(name, (net,), layout, resources, 2 * stage.batch_size,
                        _fit(stage.max_length_tokens, shape), checkpointing=gc)

    def _ppo(self, name: str, stage: Any) -> Workload:
        actor = self._known(self.policy)
        resources = effective_resources(self.job, stage)
        layout, gc = _layout(self.job, stage, resources)
        lora = _lora(getattr(stage, "lora", None))
        critic_lora = _lora(getattr(stage, "critic_lora", None))
        base = f"spec.stages.{name}"
        nets = [Network("actor", actor, "lm", True, lora, f"{base}.lora")]
        if lora is None:  # with LoRA the reference is the base with adapters disabled
            nets.append(Network("reference", actor, "lm", False))
        model_scores = stage.reward_source == "model"
        if model_scores:
            nets.append(Network("reward model", self._known(self.scorers["reward"]), "score",
                                False))
            nets.append(Network("cost model", self._known(self.scorers["cost"]), "score", False))
        critics = ["reward"] + (["cost"] if stage.algorithm == "ppo_lag" else [])
        for critic in critics:
            from_scorer = model_scores and stage.critic_init == "score_model"
            shape = self._known(self.scorers[critic]) if from_scorer else actor
            nets.append(Network(f"{critic} critic", shape, "score", True, critic_lora,
                                f"{base}.critic_lora"))
        rollout = stage.rollout
        tokens = _fit(stage.max_length_tokens + rollout.max_new_tokens, actor)
        new = min(rollout.max_new_tokens, tokens)
        gen = _engine(rollout, stage.batch_size, tokens - new, new)
        ptx = bool(stage.ptx_data)
        return Workload(name, tuple(nets), layout, resources, stage.batch_size, tokens,
                        stage.batch_size if ptx else 0,
                        _fit(stage.max_length_tokens, actor) if ptx else 0, gc, gen)

    def _sampler(self, name: str, stage: Any) -> Workload:
        """evaluate / collect: policies one at a time, then (evaluate) the RM and the CM."""
        actor = self._known(self.policy)
        resources = effective_resources(self.job, stage)
        layout = Layout(False, 0, resources.nodes * resources.nproc_per_node, "fp32")
        nets = [Network("policy", actor, "lm", False)]
        if name == "eval":
            nets += [Network("reward model", self._known(self.scorers["reward"]), "score", False),
                     Network("cost model", self._known(self.scorers["cost"]), "score", False)]
        new = stage.max_new_tokens
        prompt = self._prompt_tokens()
        if actor.context:
            new = min(new, actor.context // 2)  # collect/sample.py context_budget
            prompt = min(prompt, actor.context - new)
        gen = _engine(getattr(stage, "rollout", None), stage.batch_size, prompt, new)
        return Workload(name, tuple(nets), layout, resources, generation=gen, sequential=True)

    def _prompt_tokens(self) -> int:
        """Evaluate and collect cut prompts only at the model's context; assume they are no
        longer than PPO-Lag's `max_length_tokens` (the same kind of prompts)."""
        ppo = self.job.spec.stages.ppo_lag
        return DEFAULT_PROMPT_TOKENS if isinstance(ppo, UsedStage) else ppo.max_length_tokens


def _retrained(name: str, used: UsedStage) -> Any:
    """A reward/cost model given with `use:` is retrained in rounds ≥ 2 from the SFT model with
    the default parameters (and the used stage's overrides)."""
    stage = RewardStage if name == "reward" else CostStage
    return stage.model_construct(data=[], resources=used.resources, backend=used.backend,
                                 deepspeed=used.deepspeed)


class _UnknownShape(Exception):
    def __init__(self, unknown: Unknown) -> None:
        super().__init__(unknown.reason)
        self.unknown = unknown
