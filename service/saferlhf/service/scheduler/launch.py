"""Which stages may start now, and what an attempt is started with. Pure except for writing
stage.json (the one file the service writes for a runner)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saferlhf.service.state.transitions import GATE_OPEN
from saferlhf.service.state.types import (
    ESCALATE,
    Attempt,
    AttemptState,
    Gate,
    GateState,
    Resources,
    Stage,
)

DONE = (AttemptState.SUCCEEDED, AttemptState.SKIPPED)


def awaiting_labels(stage: Stage) -> bool:
    """A collect stage with `labeler: import` that exported pairs and waits for ImportLabels."""
    return (stage.kind == "collect" and stage.state == AttemptState.SUCCEEDED
            and bool(stage.result.get("awaiting_labels")))


def dependency_open(dep: Stage | None, gates: list[Gate]) -> bool:
    """A dependency lets its dependents start once it is done, not waiting for labels, and every
    gate after it has passed or been approved."""
    if dep is None or dep.state not in DONE or awaiting_labels(dep):
        return False
    return all(g.state in GATE_OPEN for g in gates if g.after_stage == dep.id)


def not_needed(stages: list[Stage], gates: list[Gate]) -> list[tuple[Stage, Gate]]:
    """PENDING stages of an escalation branch that will never run, each with the `escalate`
    gate that made them unnecessary: a stage is not needed when any stage it depends on,
    directly or through others, has an `escalate` gate that PASSED (the offline policy met it).
    Pure; the scheduler marks them SKIPPED."""
    by_id = {s.id: s for s in stages}
    declined = {g.after_stage: g for g in gates
                if g.on_fail == ESCALATE and g.state == GateState.PASSED}
    if not declined:
        return []
    memo: dict[str, Gate | None] = {}

    def reason(stage_id: str) -> Gate | None:  # the declined gate above `stage_id`, if any
        if stage_id not in memo:
            memo[stage_id] = None  # the plan is a DAG; this only guards a malformed one
            stage = by_id.get(stage_id)
            found = None
            for dep in stage.depends_on if stage is not None else ():
                found = declined.get(dep) or reason(dep)
                if found is not None:
                    break
            memo[stage_id] = found
        return memo[stage_id]

    out = []
    for stage in stages:
        gate = reason(stage.id) if stage.state == AttemptState.PENDING else None
        if gate is not None:
            out.append((stage, gate))
    return out


def ready_stages(
    stages: list[Stage], gates: list[Gate], attempts: list[Attempt], now: float
) -> list[tuple[Stage, Attempt | None]]:
    """PENDING stages whose dependencies are open and whose backoff is over, in plan order, each
    with its waiting retry attempt (None: a first attempt is due). Nothing is ready in a job
    with a failed stage or a failed/rejected gate; stages an escalation gate made unnecessary
    (`not_needed`) never are."""
    if any(s.state == AttemptState.FAILED for s in stages) or any(
            g.state in (GateState.FAILED, GateState.REJECTED) for g in gates):
        return []
    skipped = {s.id for s, _ in not_needed(stages, gates)}
    by_id = {s.id: s for s in stages}
    latest: dict[str, Attempt] = {}
    for a in attempts:
        if a.stage_id not in latest or a.number > latest[a.stage_id].number:
            latest[a.stage_id] = a
    out: list[tuple[Stage, Attempt | None]] = []
    for stage in stages:
        if stage.state != AttemptState.PENDING or stage.id in skipped:
            continue
        if not all(dependency_open(by_id.get(d), gates) for d in stage.depends_on):
            continue
        pending: Attempt | None = latest.get(stage.id)
        if pending is not None and pending.state in (AttemptState.QUEUED, AttemptState.RUNNING):
            # A live attempt under a PENDING stage: the service died between storing the one
            # and the other. It must not be launched twice (the reconcile step repairs the
            # stage's state from its attempt).
            continue
        if pending is not None and pending.state != AttemptState.PENDING:
            pending = None
        if pending is not None and pending.not_before is not None and pending.not_before > now:
            continue  # backing off
        out.append((stage, pending))
    return out


def write_stage_config(stage: Stage) -> Path:
    """Write the stage's resolved config as output_dir/stage.json (atomically); returns the path.

    A `labeler: import` collect stage whose labels file does not exist yet runs without
    `labels_path`, so the runner exports the pairs first (the labels arrive by ImportLabels)."""
    out = Path(stage.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(stage.config)
    if stage.kind == "collect" and config.get("labels_path") and \
            not Path(config["labels_path"]).exists():
        config["labels_path"] = None
    path = out / "stage.json"
    tmp = out / "stage.json.tmp"
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def resources_of(raw: Mapping[str, Any]) -> Resources:
    """The stored resources mapping → the executor's Resources (unknown keys ignored)."""
    known = {k: raw[k] for k in Resources.__dataclass_fields__ if k in raw}
    for k in ("nodes", "nproc_per_node", "gpus_per_node"):
        if k in known:
            known[k] = int(known[k])
    for k in ("cpu", "memory", "shm_size"):
        if k in known:
            known[k] = str(known[k])
    return Resources(**known)
