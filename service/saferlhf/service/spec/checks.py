"""Checks that need the whole validated spec: cross-field rules, hub references, `use:` folders,
and submit-time data checks (file exists, parses, safety labels consistent — the reference
crashes mid-training on one bad row). Returns violations; never raises."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from typing import Any

from saferlhf.runners.common.config import DataSource, ModelSpec
from saferlhf.service.errors import FieldViolation
from saferlhf.service.metrics_catalog import CATALOG
from saferlhf.service.spec.models import JobSpec, UsedStage
from saferlhf.service.spec.yamlmap import Loc, dotted, line_of

# Record type each stage's data fields hold (saferlhf.runners.common.data `validate_source`).
RECORD_KIND = {
    ("sft", "data"): "supervised", ("sft", "eval_data"): "supervised",
    ("reward", "data"): "preference", ("reward", "eval_data"): "preference",
    ("cost", "data"): "safety_preference", ("cost", "eval_data"): "safety_preference",
    ("ppo_lag", "prompts"): "prompt_only", ("ppo_lag", "eval_prompts"): "prompt_only",
    ("ppo_lag", "ptx_data"): "supervised", ("eval", "prompts"): "prompt_only",
}
# Metric keys the runners report (the catalog's sources plus a few more). A gate naming a key that
# is *almost* one of these is a typo caught at submit time instead of a gate that fails when its
# stage ends hours later; keys unlike all of these are allowed (runners may report more).
KNOWN_METRICS = frozenset(
    [key.strip() for m in CATALOG for key in m.source.split("|")
     if key.strip().startswith(("train/", "eval/")) and "<" not in key]
    + ["eval/harmful_rate", "eval/reward_mean", "eval/reward_std", "eval/cost_mean",
       "eval/cost_std", "eval/loss", "train/loss", "train/accuracy", "train/accuracy_sign",
       "train/shaped_reward"]
)
HUB_OFF = ("the service has no hub access (air-gapped or HF_HUB_OFFLINE); download it and "
           "give a local `path:` instead")


def check_spec(
    job: JobSpec, lines: dict[Loc, int], *, check_data: bool, allow_hub: bool
) -> list[FieldViolation]:
    def at(loc: Loc, description: str) -> FieldViolation:
        return FieldViolation(dotted(loc), description, line_of(lines, loc))

    out = _cross_field(job, at)
    out += _models(job, at, check_data=check_data, allow_hub=allow_hub)
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
            yield ("spec", "stages", stage, field, index), source, kind
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
        if not isinstance(params, UsedStage) and params.model is not None:
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
    for stage in ("sft", "reward", "cost", "ppo_lag"):
        params = getattr(job.spec.stages, stage)
        if isinstance(params, UsedStage) and check_data and job.spec.executor == "local" \
                and not os.path.isdir(params.use):
            out.append(at(("spec", "stages", stage, "use"),
                          f"no such folder: {params.use} (expected the stage's output model)"))
    return out


def _cross_field(job: JobSpec, at: Any) -> list[FieldViolation]:
    spec = job.spec
    out = []
    for index, gate in enumerate(spec.gates):
        loc: Loc = ("spec", "gates", index)
        if gate.after == "eval" and spec.stages.eval is None:
            out.append(at((*loc, "after"), "after: eval, but spec.stages.eval is not set"))
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
        if prompts is None and not isinstance(spec.stages.ppo_lag, UsedStage):
            prompts, where = spec.stages.ppo_lag.prompts, ("spec", "stages", "ppo_lag", "prompts")
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
    return out


def _resources(job: JobSpec) -> Iterator[tuple[Loc, Any]]:
    yield ("spec", "defaults", "resources"), job.spec.defaults.resources
    for name in ("sft", "reward", "cost", "ppo_lag", "eval", "collect"):
        stage = getattr(job.spec.stages, name)
        if stage is not None and stage.resources is not None:
            yield ("spec", "stages", name, "resources"), stage.resources


def _backend_conflicts(job: JobSpec, at: Any) -> list[FieldViolation]:
    out = []
    holders: list[tuple[Loc, Any]] = [(("spec", "defaults"), job.spec.defaults)]
    for name in ("sft", "reward", "cost", "ppo_lag", "eval", "collect"):
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
