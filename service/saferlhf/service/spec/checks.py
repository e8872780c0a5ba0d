"""Checks that need the whole validated spec: cross-field rules, hub references, `use:` folders,
and submit-time data checks (file exists, parses, safety labels consistent — the reference
crashes mid-training on one bad row). Returns violations; never raises."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from typing import Any

from saferlhf.runners.common.config import (
    BUILTIN_LORA_LAYERS,
    DataSource,
    ModelSpec,
    rollout_backend_conflict,
)
from saferlhf.runners.common.engine_checks import (
    builtin_config,
    folder_config,
    gpu_layout_problem,
    vllm_model_problems,
)
from saferlhf.service.errors import FieldViolation
from saferlhf.service.metrics_catalog import CATALOG
from saferlhf.service.spec.models import (
    CHAIN_STAGES,
    OFFLINE_STAGES,
    JobSpec,
    UsedStage,
    escalation_value,
)
from saferlhf.service.spec.yamlmap import Loc, dotted, line_of

# Record type each stage's data fields hold (saferlhf.runners.common.data `validate_source`).
RECORD_KIND: dict[tuple[str, str], str | None] = {
    ("sft", "data"): "supervised", ("sft", "eval_data"): "supervised",
    ("reward", "data"): "preference", ("reward", "eval_data"): "preference",
    ("cost", "data"): "safety_preference", ("cost", "eval_data"): "safety_preference",
    ("ppo_lag", "prompts"): "prompt_only", ("ppo_lag", "eval_prompts"): "prompt_only",
    ("ppo_lag", "ptx_data"): "supervised", ("eval", "prompts"): "prompt_only",
    ("safe_dpo", "data"): "safety_labelled_preference",
    ("safe_dpo", "eval_data"): "safety_labelled_preference",
    ("dpo", "data"): None, ("dpo", "eval_data"): None,  # None: the stage's `record_kind`
}
# Metric keys the runners report (the catalog's sources plus a few more). A gate naming a key that
# is *almost* one of these is a typo caught at submit time instead of a gate that fails when its
# stage ends hours later; keys unlike all of these are allowed (runners may report more).
KNOWN_METRICS = frozenset(
    [key.strip() for m in CATALOG for key in m.source.split("|")
     if key.strip().startswith(("train/", "eval/")) and "<" not in key]
    + ["eval/harmful_rate", "eval/reward_mean", "eval/reward_std", "eval/cost_mean",
       "eval/cost_std", "eval/loss", "train/loss", "train/accuracy", "train/accuracy_sign",
       "train/shaped_reward", "eval/harmful_rate_delta", "eval/helpfulness_delta",
       "eval/win_rate_vs_previous", "eval/reward_accuracy", "eval/reward_margin",
       "train/reward_accuracy", "train/reward_margin", "eval/helpfulness",
       "eval/over_refusal_rate"]
)
HUB_OFF = ("the service has no hub access (air-gapped or HF_HUB_OFFLINE); download it and "
           "give a local `path:` instead")


def check_spec(
    job: JobSpec, lines: dict[Loc, int], *, check_data: bool, allow_hub: bool
) -> list[FieldViolation]:
    def at(loc: Loc, description: str) -> FieldViolation:
        return FieldViolation(dotted(loc), description, line_of(lines, loc))

    out = _cross_field(job, at)
    out += _lora_targets(job, at)
    out += _models(job, at, check_data=check_data, allow_hub=allow_hub)
    out += _rollout_engines(job, at, check_data=check_data)
    for loc, source, kind in data_sources(job):
        if source.hub is not None and not allow_hub:
            out.append(at((*loc, "hub"), f"hub dataset {source.hub!r}: {HUB_OFF}"))
        elif source.path is None and source.hub is None:  # a generated format (synthetic)
            problem = _generated_problem(source, kind)
            if problem:
                out.append(at((*loc, "split"), problem))
        elif check_data and source.path is not None:
            out += [at((*loc, "path"), problem) for problem in _check_source(source, kind)]
    return out


def _generated_problem(source: DataSource, kind: str) -> str | None:
    """The generated format's own cheap check (the synthetic split decides the kind)."""
    try:
        from saferlhf.runners.common.data import quick_check
    except ImportError:
        return None
    return quick_check(source, kind)


def data_sources(job: JobSpec) -> Iterator[tuple[Loc, DataSource, str]]:
    """(loc, source, record kind) of every dataset the spec names."""
    for (stage, field), kind in RECORD_KIND.items():
        params = getattr(job.spec.stages, stage)
        if params is None or isinstance(params, UsedStage):
            continue
        for index, source in enumerate(getattr(params, field)):
            yield ("spec", "stages", stage, field, index), source, kind or params.record_kind
    for index, source in enumerate(job.spec.rounds.collect.prompts or []):
        yield ("spec", "rounds", "collect", "prompts", index), source, "prompt_only"


def _check_source(source: DataSource, kind: str) -> list[str]:
    if not os.path.exists(source.path or ""):
        return [f"no such file or folder: {source.path}"]
    validate = _validator()
    if validate is None:
        return []
    try:
        return list(validate(source, kind))
    except Exception as exc:  # a checker bug must not turn a submit into INTERNAL
        return [f"could not be checked: {type(exc).__name__}: {exc}"]


def _validator() -> Any:
    """`saferlhf.runners.common.data.validate_source` when that module is present (it never imports
    torch); None otherwise, leaving the existence check only."""
    try:
        from saferlhf.runners.common.data import validate_source
    except ImportError:
        return None
    return validate_source


def _models(job: JobSpec, at: Any, *, check_data: bool, allow_hub: bool) -> list[FieldViolation]:
    out = []
    models: list[tuple[Loc, ModelSpec]] = [(("spec", "model"), job.spec.model)]
    for stage in ("reward", "cost"):
        params = getattr(job.spec.stages, stage)
        if params is not None and not isinstance(params, UsedStage) and params.model is not None:
            models.append((("spec", "stages", stage, "model"), params.model))
    for loc, model in models:
        if model.path.startswith("builtin:"):
            if model.path not in ("builtin:tiny-gpt2", "builtin:tiny-llama"):
                out.append(at((*loc, "path"), f"unknown builtin model {model.path!r}; expected "
                              "builtin:tiny-gpt2 or builtin:tiny-llama"))
        elif model.revision and not model.path.startswith(("/", "./")):
            if not allow_hub:
                out.append(at((*loc, "path"), f"hub model {model.path!r}: {HUB_OFF}"))
        elif check_data and os.path.isabs(model.path) and not os.path.isdir(model.path):
            out.append(at((*loc, "path"), f"no such model folder: {model.path} (a hub id "
                          "needs a pinned `revision:`)"))
    evaluation = job.spec.stages.eval
    for index, judge in enumerate(evaluation.judges if evaluation is not None else []):
        path = getattr(judge, "path", None)
        if path and check_data and job.spec.executor == "local" \
                and not os.path.isfile(os.path.join(path, "config.json")):
            out.append(at(("spec", "stages", "eval", "judges", index, "path"),
                          f"no model folder with a config.json at {path} (the classifier "
                          "judge reads a local Hugging Face model)"))
    for stage in ("sft", *CHAIN_STAGES, *OFFLINE_STAGES):
        params = getattr(job.spec.stages, stage)
        if isinstance(params, UsedStage) and check_data and job.spec.executor == "local" \
                and not os.path.isdir(params.use):
            out.append(at(("spec", "stages", stage, "use"),
                          f"no such folder: {params.use} (expected the stage's output model)"))
    return out


def _lora_targets(job: JobSpec, at: Any) -> list[FieldViolation]:
    """LoRA target names a builtin model lacks (a folder's layers are checked by the runner)."""
    layers = BUILTIN_LORA_LAYERS.get(job.spec.model.path)
    stages = job.spec.stages
    if layers is None or isinstance(stages.sft, UsedStage):
        return []
    specs: list[tuple[Loc, Any]] = []
    for name, fields in (("sft", ("lora",)), ("reward", ("lora",)), ("cost", ("lora",)),
                         ("ppo_lag", ("lora", "critic_lora")), ("safe_dpo", ("lora",)),
                         ("dpo", ("lora",))):
        params = getattr(stages, name)
        if params is None or isinstance(params, UsedStage) \
                or getattr(params, "model", None) is not None:
            continue  # absent, skipped, or a score model on another backbone
        specs += [(("spec", "stages", name, f), getattr(params, f)) for f in fields]
    out = []
    for loc, lora in specs:
        for index, target in enumerate((lora.target_modules or []) if lora else []):
            if target.rsplit(".", 1)[-1] not in layers:
                out.append(at((*loc, "target_modules", index), f"{target!r} is not a layer LoRA "
                              f"can adapt in {job.spec.model.path}; expected one of "
                              f"{', '.join(layers)}"))
    return out


def _cross_field(job: JobSpec, at: Any) -> list[FieldViolation]:
    spec = job.spec
    out = []
    for index, gate in enumerate(spec.gates):
        loc: Loc = ("spec", "gates", index)
        if gate.after != "collect" and getattr(spec.stages, gate.after) is None:
            out.append(at((*loc, "after"), f"after: {gate.after}, but spec.stages.{gate.after} "
                          "is not set"))
        family = gate.metric.rpartition("/")[0]  # eval/harmful_rate/<judge> → eval/harmful_rate
        if gate.metric not in KNOWN_METRICS and family not in KNOWN_METRICS:
            close = difflib.get_close_matches(gate.metric, sorted(KNOWN_METRICS), n=1, cutoff=0.85)
            if close:
                out.append(at((*loc, "metric"), f"unknown metric {gate.metric!r}; did you mean "
                              f"{close[0]!r}? (a gate on a metric its stage never reports fails "
                              "when the stage ends)"))
        rounds_with_stage = set(range(2 if gate.after == "collect" else 1, spec.rounds.count + 1))
        if gate.after == "sft":
            rounds_with_stage = {1}
        stage = getattr(spec.stages, gate.after, None)
        if isinstance(stage, UsedStage):
            rounds_with_stage.discard(1)  # skipped in round 1: it reports no metrics there
        for r in gate.rounds or []:
            if r not in rounds_with_stage:
                out.append(at((*loc, "rounds"), f"{gate.after} does not run in round {r}; it "
                              f"runs in rounds {sorted(rounds_with_stage) or 'none'}"))
        if gate.rounds is None and not rounds_with_stage:
            out.append(at((*loc, "after"), f"{gate.after} runs in no round of this job (it is "
                          "skipped with `use:` or needs rounds.count ≥ 2)"))
    if spec.executor == "local":
        for loc, resources in _resources(job):
            if resources.nodes > 1:
                out.append(at((*loc, "nodes"), f"the local executor runs on one machine, got "
                              f"nodes={resources.nodes}; use executor: kubernetes"))
    if spec.rounds.count >= 2 and spec.rounds.collect.labeler == "oracle":
        prompts = spec.rounds.collect.prompts
        where: Loc = ("spec", "rounds", "collect", "prompts")
        ppo = spec.stages.ppo_lag
        if prompts is None and ppo is not None and not isinstance(ppo, UsedStage):
            prompts, where = ppo.prompts, ("spec", "stages", "ppo_lag", "prompts")
        if prompts is None:
            out.append(at(("spec", "rounds", "collect", "prompts"),
                          "required when ppo_lag is skipped with `use:` and rounds.count ≥ 2"))
        elif any(p.format != "synthetic" for p in prompts):
            out.append(at(("spec", "rounds", "collect", "labeler"), "labeler: oracle labels with "
                          f"the synthetic benchmark's exact functions, but {dotted(where)} names "
                          "other data; use labeler: import (human labels) or synthetic prompts"))
    elif spec.rounds.count >= 2 and spec.rounds.collect.prompts is None \
            and isinstance(spec.stages.ppo_lag, UsedStage):
        out.append(at(("spec", "rounds", "collect", "prompts"),
                      "required when ppo_lag is skipped with `use:` and rounds.count ≥ 2"))
    if spec.rounds.count >= 2 and isinstance(spec.stages.ppo_lag, UsedStage):
        out.append(at(("spec", "stages", "ppo_lag", "use"), "`use:` skips PPO-Lag in round 1 "
                      "only, but rounds ≥ 2 need its parameters; give them (without use:) or set "
                      "rounds.count: 1"))
    out += _backend_conflicts(job, at)
    out += _method_rules(job, at)
    return out


def _method_rules(job: JobSpec, at: Any) -> list[FieldViolation]:
    """Which method the spec runs: the PPO-Lag chain, an offline stage (safe_dpo / dpo), or the
    offline stage with escalation to the chain (docs/choosing_a_method.md)."""
    spec, stages = job.spec, job.spec.stages
    out = []
    chain = [name for name in CHAIN_STAGES if getattr(stages, name) is not None]
    offline = [name for name in OFFLINE_STAGES if getattr(stages, name) is not None]
    if not chain and not offline:
        out.append(at(("spec", "stages"), "no alignment method: give the PPO-Lag chain (reward, "
                      "cost and ppo_lag) or an offline stage (safe_dpo or dpo)"))
    for name in CHAIN_STAGES:
        if chain and name not in chain:
            out.append(at(("spec", "stages", name), "required field is missing: the PPO-Lag "
                          f"chain needs reward, cost and ppo_lag together (or drop "
                          f"{', '.join(chain)} and use an offline stage such as safe_dpo)"))
    if len(offline) > 1:
        out.append(at(("spec", "stages", "dpo"), "give one offline stage, safe_dpo or dpo, not "
                      "both (run them as two jobs to compare)"))
    if offline and chain and spec.escalation is None:
        out.append(at(("spec", "stages", offline[0]), f"both {offline[0]} and the PPO-Lag chain "
                      f"are set: add `spec.escalation` to run ppo_lag only when {offline[0]}'s "
                      "evaluation misses a gate, or drop one of them"))
    if offline and spec.rounds.count > 1:
        out.append(at(("spec", "rounds", "count"), f"{offline[0]} runs in one round; rounds ≥ 2 "
                      "(collect → relabel → retrain → PPO-Lag) belong to the PPO-Lag chain; set "
                      "rounds.count: 1"))
    kinds = {j.kind for j in stages.eval.judges} if stages.eval is not None else set()
    if offline and stages.eval is not None and kinds <= {"cost_model"}:
        out.append(at(("spec", "stages", "eval", "judges"), f"judge cost_model needs a cost "
                      f"model, which {offline[0]} does not train; add keyword (or synthetic on "
                      "the synthetic benchmark)"))
    if spec.escalation is not None:
        out += _escalation_rules(job, at, offline, chain)
    return out


def _escalation_rules(job: JobSpec, at: Any, offline: list[str], chain: list[str]
                      ) -> list[FieldViolation]:
    spec = job.spec
    assert spec.escalation is not None
    loc: Loc = ("spec", "escalation")
    out = []
    if not offline or len(chain) < len(CHAIN_STAGES):
        out.append(at(loc, "escalation needs an offline stage to try first (safe_dpo or dpo) and "
                      "the PPO-Lag chain to escalate to (reward, cost and ppo_lag)"))
    if spec.stages.eval is None:
        out.append(at(loc, "escalation decides on an evaluation of the offline policy: set "
                      "spec.stages.eval"))
    if isinstance(spec.stages.ppo_lag, UsedStage):
        out.append(at(("spec", "stages", "ppo_lag", "use"), "escalation runs ppo_lag from the "
                      f"{offline[0] if offline else 'offline'} policy; give its parameters, not "
                      "`use:`"))
    if escalation_value(spec) is None:
        out.append(at((*loc, "value"), f"set the bound {spec.escalation.metric} must meet (the "
                      "default, ppo_lag.safety_budget.max_harmful_rate, applies only to metric "
                      "eval/harmful_rate with a budget of scope harmful_prompts)"))
    metric = spec.escalation.metric
    family = metric.rpartition("/")[0]
    if metric not in KNOWN_METRICS and family not in KNOWN_METRICS:
        close = difflib.get_close_matches(metric, sorted(KNOWN_METRICS), n=1, cutoff=0.85)
        if close:
            out.append(at((*loc, "metric"), f"unknown metric {metric!r}; did you mean "
                          f"{close[0]!r}? (the evaluation would never report it, and a gate on a "
                          "missing metric fails the job)"))
    return out


def _resources(job: JobSpec) -> Iterator[tuple[Loc, Any]]:
    yield ("spec", "defaults", "resources"), job.spec.defaults.resources
    for name in ("sft", *CHAIN_STAGES, *OFFLINE_STAGES, "eval", "collect"):
        stage = getattr(job.spec.stages, name)
        if stage is not None and stage.resources is not None:
            yield ("spec", "stages", name, "resources"), stage.resources


def _backend_conflicts(job: JobSpec, at: Any) -> list[FieldViolation]:
    out = []
    holders: list[tuple[Loc, Any]] = [(("spec", "defaults"), job.spec.defaults)]
    for name in ("sft", *CHAIN_STAGES, *OFFLINE_STAGES, "eval", "collect"):
        stage = getattr(job.spec.stages, name)
        if stage is not None:
            holders.append((("spec", "stages", name), stage))
    for loc, holder in holders:
        backend = holder.backend
        if holder.deepspeed is not None and backend is not None \
                and "kind" in backend.model_fields_set and backend.kind == "plain":
            out.append(at((*loc, "deepspeed"), "`deepspeed:` selects the DeepSpeed backend, but "
                          "backend.kind is plain; drop one of them"))
        if backend is not None and backend.precision != "fp32" and (
                holder.deepspeed is not None or backend.kind == "deepspeed"):
            out.append(at((*loc, "backend", "precision"), "backend.precision is the plain "
                          "backend's; under DeepSpeed set deepspeed.precision (e.g. "
                          "`deepspeed: {precision: bf16}`)"))
    return out


def _rollout_engines(job: JobSpec, at: Any, *, check_data: bool) -> list[FieldViolation]:
    """`rollout.engine: vllm` where it cannot work: ZeRO-3 (sharded weights cannot be synced),
    several processes per GPU node, or a policy vLLM cannot run on the stage's hardware (an
    unknown architecture; on CPU, an attention head size its kernels lack)."""
    stages = job.spec.stages
    users: list[tuple[str, Any]] = [(name, getattr(stages, name)) for name in
                                    ("ppo_lag", "eval", "collect")]
    out = []
    policy: tuple[dict[str, Any] | None, str] | None = None
    for name, stage in users:
        if stage is None or isinstance(stage, UsedStage) or stage.rollout.engine != "vllm":
            continue
        if name == "collect" and job.spec.rounds.count < 2:
            continue  # collect runs in rounds ≥ 2 only
        loc: Loc = ("spec", "stages", name, "rollout", "engine")
        problem = rollout_backend_conflict(stage.rollout, job.spec.stage_backend(stage)) \
            if name == "ppo_lag" else None
        if problem:
            out.append(at(loc, problem))
        resources = job.spec.stage_resources(stage)
        problem = gpu_layout_problem(gpus_per_node=resources.gpus_per_node,
                                     nproc_per_node=resources.nproc_per_node)
        if problem:
            out.append(at(loc, problem))
        policy = policy or _policy_config(job, check_data=check_data)
        config, where = policy
        if config is not None:
            out += [at(loc, f"{where}: {p}")
                    for p in vllm_model_problems(config, on_gpu=resources.gpus_per_node > 0)]
    return out


def _policy_config(job: JobSpec, *, check_data: bool) -> tuple[dict[str, Any] | None, str]:
    """The config.json of the policy every sampling stage runs (the SFT model keeps the starting
    model's architecture), and where it comes from; None where it cannot be read here (a hub
    model, a folder on another machine)."""
    sft = job.spec.stages.sft
    if isinstance(sft, UsedStage):
        where, folder = "spec.stages.sft.use", sft.use
    else:
        model = job.spec.model
        builtin = builtin_config(model)
        if builtin is not None:
            return builtin, (f"spec.model ({model.path}, n_embd {model.n_embd}, "
                             f"n_head {model.n_head})")
        where, folder = "spec.model.path", model.path
    if not check_data or not os.path.isdir(folder):
        return None, where
    return folder_config(folder), where
