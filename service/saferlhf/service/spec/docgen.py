"""The field reference of docs/job_spec.md, generated from the spec models so defaults and
descriptions are never typed twice. `python -m saferlhf.service.spec.docgen` writes it to stdout; a
test
checks that the doc holds the current version."""

from __future__ import annotations

import sys
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from saferlhf.runners.common import judge_config as jc
from saferlhf.runners.common.config import (
    LoraSpec,
    OptimSpec,
    PolicyLoraSpec,
    RolloutEngineSpec,
    RolloutParams,
    SafetyBudget,
)
from saferlhf.service.spec import models as m

BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE (python -m saferlhf.service.spec.docgen) -->"
END = "<!-- END GENERATED FIELD REFERENCE -->"

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("Top level", m.JobSpec), ("metadata", m.Metadata), ("spec", m.Spec),
    ("spec.model (ModelSpec)", m.ModelSpec), ("spec.artifacts", m.ArtifactsSpec),
    ("spec.defaults", m.DefaultsSpec), ("resources", m.ResourcesSpec),
    ("backend", m.BackendSpec), ("deepspeed", m.DeepSpeedSpec),
    ("Stage overrides (every stage)", m.StageOverrides),
    ("A skipped stage (`use:`)", m.UsedStage),
    ("spec.stages.sft", m.SFTStage), ("spec.stages.reward / spec.stages.cost", m.RewardStage),
    ("spec.stages.ppo_lag", m.PPOLagStage), ("ppo_lag.safety_budget", SafetyBudget),
    ("ppo_lag.rollout", RolloutParams), ("optim / actor_optim / critic_optim", OptimSpec),
    ("sft.lora / ppo_lag.lora / safe_dpo.lora / dpo.lora (LoRA on a policy)", PolicyLoraSpec),
    ("ppo_lag.critic_lora / reward.lora / cost.lora (LoRA on a score model)", LoraSpec),
    ("spec.stages.safe_dpo", m.SafeDPOStage), ("spec.stages.dpo", m.DPOStage),
    ("spec.stages.eval", m.EvalStage),
    ("eval.judges[] kind: keyword", jc.KeywordJudge),
    ("eval.judges[] kind: cost_model", jc.CostModelJudge),
    ("eval.judges[] kind: synthetic", jc.SyntheticJudge),
    ("eval.judges[] kind: llm", jc.LLMJudge), ("llm api_key", jc.ApiKeyRef),
    ("api_key.secret", jc.SecretKeyRef),
    ("eval.judges[] kind: classifier", jc.ClassifierJudge),
    ("spec.stages.collect", m.CollectStage),
    ("eval.rollout / collect.rollout (the engine that samples)", RolloutEngineSpec),
    ("Data sources (data, eval_data, prompts, ptx_data, eval_prompts)", m.DataSource),
    ("spec.rounds", m.RoundsSpec), ("spec.rounds.collect", m.CollectRoundSpec),
    ("spec.gates[]", m.GateSpec), ("spec.escalation", m.EscalationSpec),
    ("spec.retries", m.RetrySpec),
    ("spec.kubernetes", m.KubernetesSpec), ("kubernetes.tolerations[]", m.Toleration),
]


def _type_name(tp: Any) -> str:
    text = repr(tp) if typing.get_origin(tp) else getattr(tp, "__name__", repr(tp))
    if "JudgeSpec" in text or "KeywordJudge" in text:
        return "list of judges (a kind, or {name, kind, …} below)"
    for noise in ("typing.", "saferlhf.runners.common.config.", "saferlhf.service.spec.models.",
                  "saferlhf.runners.common.judge_config.", "NoneType"):
        text = text.replace(noise, "None" if noise == "NoneType" else "")
    return text.replace("|", "\\|")


def _default(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "doc_default" in extra:
        return str(extra["doc_default"])
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            return "`[" + ", ".join(str(getattr(v, "name", type(v).__name__)) for v in value) + "]`"
        if isinstance(value, BaseModel):
            changed = value.model_dump(exclude_defaults=True)
            return f"its defaults, except `{changed}`" if changed else "its defaults"
        return f"`{value}`"
    return "—" if field.default in (None, PydanticUndefined) else f"`{field.default!r}`"


def _constraints(field: Any) -> str:
    parts = []
    for meta in field.metadata:
        for name in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern"):
            value = getattr(meta, name, None)
            if value is not None:
                parts.append(f"{name} {value}" if name != "pattern" else "pattern")
    return ", ".join(parts)


def reference() -> str:
    out = [BEGIN, ""]
    for title, model in SECTIONS:
        out += [f"#### {title}", "", "| field | type | default | constraints | description |",
                "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | "
                       f"{_constraints(field)} | {description} |")
        out.append("")
    out.append(END)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
