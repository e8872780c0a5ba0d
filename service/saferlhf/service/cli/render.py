"""How the CLI shows things: `-o json|yaml` documents, tables, a job with its stages and
progress bars, and the per-round report (report.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import yaml
from google.protobuf.json_format import MessageToDict
from saferlhf.service.cli.constraint import condition_lines, constraints, constraints_block
from saferlhf.service.cli.report import has_report, round_report
from saferlhf.service.cli.tables import fmt_value, table
from saferlhf.v1 import resources_pb2 as pb


def to_data(msg: Any) -> dict[str, Any]:
    """A proto message as plain data; `*_json` fields become the objects they hold."""
    data = MessageToDict(msg, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)
    return _expand_json(data)


def _expand_json(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k.endswith("_json") and isinstance(v, str):
                try:
                    out[k[: -len("_json")]] = json.loads(v) if v else {}
                    continue
                except json.JSONDecodeError:
                    pass
            out[k] = _expand_json(v)
        return out
    if isinstance(value, list):
        return [_expand_json(v) for v in value]
    return value


def dump(data: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    return json.dumps(data, indent=2, ensure_ascii=False)


def state_name(enum_type: Any, number: int) -> str:
    name = enum_type.Name(number)
    return name.split("_STATE_", 1)[-1] if "_STATE_" in name else name


def job_state(number: int) -> str:
    return state_name(pb.JobState, number)


def attempt_state(number: int) -> str:
    return state_name(pb.AttemptState, number)


def gate_state(number: int) -> str:
    return state_name(pb.GateState, number)


def age(ts: Any, now: float | None = None) -> str:
    if not ts.seconds:
        return "-"
    seconds = max(0, int((now or time.time()) - ts.seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def jobs_table(jobs: Iterable[pb.Job], now: float | None = None) -> str:
    rows = [[j.id, j.name, j.project, job_state(j.state), age(j.create_time, now)] for j in jobs]
    return table(rows, ["ID", "NAME", "PROJECT", "STATE", "AGE"])


def bar(ratio: float, width: int = 20) -> str:
    ratio = min(1.0, max(0.0, ratio))
    filled = int(round(ratio * width))
    return "[" + "#" * filled + "." * (width - filled) + f"] {ratio * 100:3.0f}%"


def latest_metrics(msgs: Iterable[pb.MetricPoint]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for p in msgs:
        out.setdefault(p.stage_id, {})[p.name] = p.value
    return out


def stages_block(stages: Iterable[pb.Stage]) -> str:
    rows = [[s.id, attempt_state(s.state), bar(s.progress if s.state != pb.ATTEMPT_STATE_SUCCEEDED
                                               else 1.0),
             str(s.attempts) if s.attempts else "-"] for s in stages]
    return table(rows, ["STAGE", "STATE", "PROGRESS", "ATTEMPTS"])


def gates_block(gates: Iterable[pb.Gate]) -> str:
    rows = [[g.id, f"{g.metric} {g.op} {g.value:g}",
             fmt_value(g.observed if g.HasField("observed") else None), gate_state(g.state)]
            for g in gates]
    return table(rows, ["GATE", "CONDITION", "OBSERVED", "STATE"]) if rows else ""


def job_data(view: Any) -> dict[str, Any]:
    """GetJobResponse → the `-o json|yaml` document: the response, plus `constraints` — per
    PPO-Lagrangian stage the budget, threshold d (calibrated or raw), λ and J_C that the text
    view shows (the guard conditions are in `job.conditions`)."""
    data = to_data(view)
    found = constraints(view.stages, latest_metrics(view.latest_metrics))
    data["constraints"] = [c.as_data() for c in found]
    return data


def job_text(view: Any, now: float | None = None) -> str:
    """GetJobResponse → the human view of `saferlhf get`."""
    job = view.job
    parts = [f"{job.id}  {job.name}  project={job.project}  state={job_state(job.state)}"
             f"  age={age(job.create_time, now)}"]
    if job.message:
        parts.append(f"message: {job.message}")
    parts += condition_lines(job.conditions)  # guard warnings, `! VacuousThreshold: …`
    parts += ["", stages_block(view.stages)]
    gates = gates_block(view.gates)
    if gates:
        parts += ["", gates]
    metrics = latest_metrics(view.latest_metrics)
    constraint = constraints_block(view.stages, metrics)
    if constraint:
        parts += ["", constraint]
    if has_report(view.stages, metrics):
        parts += ["", round_report(view.stages, metrics)]
    return "\n".join(parts)
