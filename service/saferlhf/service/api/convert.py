"""Pure converters between domain types (saferlhf.service.state.types) and protos (STYLE rule 10).

No I/O and no business logic: every function maps one value to another, and each domain → proto
converter has an inverse so tests can check round trips. Times are unix seconds in the domain and
google.protobuf.Timestamp on the wire; free-form dicts (spec, stage config, results, event
payloads) travel as JSON object text so integers stay integers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from saferlhf.service.controlplane import JobView, WatchUpdate
from saferlhf.service.state.types import (
    Attempt,
    AttemptState,
    FailureClass,
    Gate,
    GateState,
    Job,
    JobState,
    Stage,
    StoredEvent,
    Transition,
)
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb

# --- enums: domain StrEnum value X <-> proto <ENUM>_X -----------------------------------------


def _to_enum(prefix: str, value: str) -> Any:  # an enum number (the stubs type it per enum)
    return pb.DESCRIPTOR.enum_types_by_name[_ENUM_NAMES[prefix]].values_by_name[
        f"{prefix}_{value}"
    ].number


def _from_enum(prefix: str, number: int) -> str:
    name = pb.DESCRIPTOR.enum_types_by_name[_ENUM_NAMES[prefix]].values_by_number[number].name
    return name[len(prefix) + 1 :]


_ENUM_NAMES = {
    "JOB_STATE": "JobState",
    "ATTEMPT_STATE": "AttemptState",
    "FAILURE_CLASS": "FailureClass",
    "GATE_STATE": "GateState",
    "EVENT_TYPE": "EventType",
}


def job_state_to_proto(state: JobState) -> Any:
    return _to_enum("JOB_STATE", state.value)


def job_state_from_proto(number: int) -> JobState:
    return JobState(_from_enum("JOB_STATE", number))


def event_type_to_proto(type_: str) -> Any:
    """"metrics" → EVENT_TYPE_METRICS; raises KeyError for an unknown type."""
    return _to_enum("EVENT_TYPE", type_.upper())


def event_type_from_proto(number: int) -> str:
    return _from_enum("EVENT_TYPE", number).lower()


# --- times and JSON --------------------------------------------------------------------------


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    whole = int(seconds // 1)
    ts.seconds = whole
    ts.nanos = int(round((seconds - whole) * 1e9)) % 1_000_000_000
    return ts


def _set_time(field: Timestamp, seconds: float | None) -> None:
    if seconds is not None:
        field.CopyFrom(_ts(seconds))


def _time(msg: Any, name: str) -> float | None:
    if not msg.HasField(name):
        return None
    ts = getattr(msg, name)
    return ts.seconds + ts.nanos / 1e9


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _loads(text: str) -> Any:
    return json.loads(text) if text else {}


# --- resources -------------------------------------------------------------------------------


def job_to_proto(job: Job) -> pb.Job:
    msg = pb.Job(
        id=job.id, name=job.name, project=job.project, state=job_state_to_proto(job.state),
        request_id=job.request_id, labels=dict(job.labels), message=job.message,
        conditions=dict(job.conditions), spec_json=_dumps(job.spec),
    )
    _set_time(msg.create_time, job.created_at)
    _set_time(msg.update_time, job.updated_at)
    _set_time(msg.finish_time, job.finished_at)
    return msg


def job_from_proto(msg: pb.Job) -> Job:
    return Job(
        id=msg.id, name=msg.name, project=msg.project, spec=_loads(msg.spec_json),
        state=job_state_from_proto(msg.state), request_id=msg.request_id,
        labels=dict(msg.labels), created_at=_time(msg, "create_time") or 0.0,
        updated_at=_time(msg, "update_time") or 0.0, finished_at=_time(msg, "finish_time"),
        message=msg.message, conditions=dict(msg.conditions),
    )


def stage_to_proto(stage: Stage) -> pb.Stage:
    return pb.Stage(
        id=stage.id, job_id=stage.job_id, round=stage.round, kind=stage.kind,
        depends_on=list(stage.depends_on), state=_to_enum("ATTEMPT_STATE", stage.state.value),
        config_json=_dumps(stage.config), output_dir=stage.output_dir, attempts=stage.attempts,
        skipped_with=stage.skipped_with or "", progress=stage.progress,
        result_json=_dumps(stage.result),
    )


def stage_from_proto(msg: pb.Stage) -> Stage:
    return Stage(
        id=msg.id, job_id=msg.job_id, round=msg.round, kind=msg.kind,
        depends_on=tuple(msg.depends_on),
        state=AttemptState(_from_enum("ATTEMPT_STATE", msg.state)),
        config=_loads(msg.config_json), output_dir=msg.output_dir, attempts=msg.attempts,
        skipped_with=msg.skipped_with or None, progress=msg.progress,
        result=_loads(msg.result_json),
    )


def attempt_to_proto(a: Attempt) -> pb.Attempt:
    msg = pb.Attempt(
        id=a.id, job_id=a.job_id, stage_id=a.stage_id, number=a.number,
        state=_to_enum("ATTEMPT_STATE", a.state.value), handle=a.handle,
        failure=_to_enum("FAILURE_CLASS", a.failure.value), message=a.message,
    )
    if a.exit_code is not None:
        msg.exit_code = a.exit_code
    _set_time(msg.create_time, a.created_at)
    _set_time(msg.start_time, a.started_at)
    _set_time(msg.finish_time, a.finished_at)
    _set_time(msg.last_event_time, a.last_event_at)
    _set_time(msg.not_before_time, a.not_before)
    return msg


def attempt_from_proto(msg: pb.Attempt) -> Attempt:
    """The stage token hash never leaves the service, so it comes back empty."""
    return Attempt(
        id=msg.id, job_id=msg.job_id, stage_id=msg.stage_id, number=msg.number,
        state=AttemptState(_from_enum("ATTEMPT_STATE", msg.state)), handle=msg.handle,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        failure=FailureClass(_from_enum("FAILURE_CLASS", msg.failure)), message=msg.message,
        created_at=_time(msg, "create_time") or 0.0, started_at=_time(msg, "start_time"),
        finished_at=_time(msg, "finish_time"), last_event_at=_time(msg, "last_event_time"),
        not_before=_time(msg, "not_before_time"),
    )


def gate_to_proto(g: Gate) -> pb.Gate:
    msg = pb.Gate(
        id=g.id, job_id=g.job_id, after_stage=g.after_stage, metric=g.metric, op=g.op,
        value=g.value, on_fail=g.on_fail, state=_to_enum("GATE_STATE", g.state.value),
        message=g.message,
    )
    if g.observed is not None:
        msg.observed = g.observed
    return msg


def gate_from_proto(msg: pb.Gate) -> Gate:
    return Gate(
        id=msg.id, job_id=msg.job_id, after_stage=msg.after_stage, metric=msg.metric, op=msg.op,
        value=msg.value, on_fail=msg.on_fail,
        state=GateState(_from_enum("GATE_STATE", msg.state)),
        observed=msg.observed if msg.HasField("observed") else None, message=msg.message,
    )


def transition_to_proto(t: Transition) -> pb.Transition:
    return pb.Transition(
        time=_ts(t.at), subject=t.subject, from_state=t.from_state, to_state=t.to_state,
        reason=t.reason, message=t.message,
    )


def transition_from_proto(msg: pb.Transition) -> Transition:
    return Transition(
        at=_time(msg, "time") or 0.0, subject=msg.subject, from_state=msg.from_state,
        to_state=msg.to_state, reason=msg.reason, message=msg.message,
    )


# --- events ----------------------------------------------------------------------------------

_EVENT_HEADER = ("seq", "attempt", "time", "type")


def runner_event_to_proto(event: dict[str, Any]) -> pb.Event:
    """An events.jsonl object → Event (what report.py sends). Unknown types raise KeyError."""
    payload = {k: v for k, v in event.items() if k not in _EVENT_HEADER}
    return pb.Event(
        seq=int(event["seq"]), attempt=int(event.get("attempt", 1)), time=str(event["time"]),
        type=event_type_to_proto(str(event["type"])), payload_json=_dumps(payload),
    )


def runner_event_from_proto(msg: pb.Event) -> dict[str, Any]:
    """Event → the events.jsonl object it came from (header fields + payload)."""
    payload = _loads(msg.payload_json)
    if not isinstance(payload, dict):
        raise ValueError("payload_json must be a JSON object")
    return {**payload, "seq": msg.seq, "attempt": msg.attempt, "time": msg.time,
            "type": event_type_from_proto(msg.type)}


def stored_event_to_proto(e: StoredEvent) -> pb.Event:
    payload = {k: v for k, v in e.payload.items() if k not in _EVENT_HEADER}
    attempt = e.payload.get("attempt", 1)
    try:
        type_number = event_type_to_proto(e.type)
    except KeyError:
        type_number = pb.EVENT_TYPE_UNSPECIFIED
    return pb.Event(
        seq=e.seq, attempt=int(attempt), time=e.time, type=type_number,
        payload_json=_dumps(payload), job_id=e.job_id, attempt_id=e.attempt_id,
        stage_id=e.stage_id, cursor=e.cursor,
    )


def stored_event_from_proto(msg: pb.Event) -> StoredEvent:
    payload = _loads(msg.payload_json)
    payload = {"attempt": msg.attempt, **payload}
    return StoredEvent(
        job_id=msg.job_id, attempt_id=msg.attempt_id, stage_id=msg.stage_id, seq=msg.seq,
        type=event_type_from_proto(msg.type) if msg.type else "", time=msg.time,
        payload=payload, cursor=msg.cursor,
    )


def _stage_round(stage_id: str) -> int:
    head = stage_id.split("/", 1)[0]
    return int(head[1:]) if head.startswith("r") and head[1:].isdigit() else 0


_INT64 = 2**63


def _as_float(v: Any) -> float | None:
    """A metric value as a float; None for non-numbers and ints beyond float range (a stored
    event with one made every WatchJob of its job fail with INTERNAL)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _as_step(v: Any) -> int:
    number = _as_float(v)
    if number is None or not math.isfinite(number) or abs(number) >= _INT64:
        return -1
    return int(number)


def metric_points(e: StoredEvent) -> list[pb.MetricPoint]:
    """The metric points a metrics or result event carries (numeric values only)."""
    if e.type not in ("metrics", "result"):
        return []
    values = e.payload.get("values") or {}
    step = _as_step(e.payload.get("step", -1)) if e.type == "metrics" else -1
    points = []
    for name, v in sorted(values.items()):
        value = _as_float(v)
        if value is not None:
            points.append(pb.MetricPoint(stage_id=e.stage_id, round=_stage_round(e.stage_id),
                                         name=name, value=value, step=step, time=e.time))
    return points


# --- responses -------------------------------------------------------------------------------


def job_view_to_proto(view: JobView) -> api.GetJobResponse:
    latest = [
        pb.MetricPoint(stage_id=sid, round=_stage_round(sid), name=name, value=float(v), step=-1)
        for sid, values in sorted(view.latest_metrics.items())
        for name, v in sorted(values.items())
    ]
    return api.GetJobResponse(
        job=job_to_proto(view.job), stages=[stage_to_proto(s) for s in view.stages],
        attempts=[attempt_to_proto(a) for a in view.attempts],
        gates=[gate_to_proto(g) for g in view.gates],
        transitions=[transition_to_proto(t) for t in view.transitions], latest_metrics=latest,
    )


def job_view_from_proto(msg: api.GetJobResponse) -> JobView:
    latest: dict[str, dict[str, float]] = {}
    for p in msg.latest_metrics:
        latest.setdefault(p.stage_id, {})[p.name] = p.value
    return JobView(
        job=job_from_proto(msg.job), stages=tuple(stage_from_proto(s) for s in msg.stages),
        attempts=tuple(attempt_from_proto(a) for a in msg.attempts),
        gates=tuple(gate_from_proto(g) for g in msg.gates),
        transitions=tuple(transition_from_proto(t) for t in msg.transitions),
        latest_metrics=latest,
    )


def watch_update_to_proto(u: WatchUpdate) -> api.WatchJobResponse:
    msg = api.WatchJobResponse(cursor=u.cursor)
    if u.kind == "job" and u.job is not None:
        msg.job.CopyFrom(job_to_proto(u.job))
    elif u.kind == "stage" and u.stage is not None:
        msg.stage.CopyFrom(stage_to_proto(u.stage))
    elif u.kind == "gate" and u.gate is not None:
        msg.gate.CopyFrom(gate_to_proto(u.gate))
    elif u.kind == "event" and u.event is not None:
        msg.event.CopyFrom(stored_event_to_proto(u.event))
        msg.metric_points.extend(metric_points(u.event))
    return msg


def watch_update_from_proto(msg: api.WatchJobResponse) -> WatchUpdate:
    which = msg.WhichOneof("update")
    if which == "job":
        return WatchUpdate(cursor=msg.cursor, kind="job", job=job_from_proto(msg.job))
    if which == "stage":
        return WatchUpdate(cursor=msg.cursor, kind="stage", stage=stage_from_proto(msg.stage))
    if which == "gate":
        return WatchUpdate(cursor=msg.cursor, kind="gate", gate=gate_from_proto(msg.gate))
    return WatchUpdate(cursor=msg.cursor, kind="event", event=stored_event_from_proto(msg.event))
