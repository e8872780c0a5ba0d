"""Render one stage's `stage.json`: user parameters + resolved inputs, validated by the runner's
own `*Config` model (saferlhf.runners.common.config), so a planner bug fails here, loudly, and never
reaches a runner as a malformed config."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from saferlhf.runners.common.config import CONFIG_BY_KIND, BackendSpec, DistributedSpec
from saferlhf.service.planning.dag import PlanError
from saferlhf.service.spec.models import StageOverrides

OVERRIDE_FIELDS = frozenset(StageOverrides.model_fields)


def params_of(stage: Any) -> dict[str, Any]:
    """The runner parameters of a spec stage: everything but the control-plane overrides."""
    return stage.model_dump(exclude=set(OVERRIDE_FIELDS))


def render_config(
    kind: str,
    params: dict[str, Any],
    *,
    output_dir: str,
    seed: int,
    backend: BackendSpec,
    distributed: DistributedSpec,
    job: str,
    round: int,
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """The stage.json content (a JSON-able dict) for runner `kind`."""
    model = CONFIG_BY_KIND.get(kind)
    if model is None:
        raise PlanError(f"no runner config model for kind {kind!r}")
    raw = {
        **params,
        **inputs,
        "kind": kind,
        "output_dir": output_dir,
        "seed": seed,
        "backend": backend.model_dump(),
        "distributed": distributed.model_dump(),
        "job": job,
        "round": round,
    }
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise PlanError(f"planner produced an invalid {kind} stage.json: {exc}") from exc
    return config.model_dump(mode="json")
