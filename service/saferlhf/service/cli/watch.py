"""The live view of a job (`saferlhf watch`, `run`, `submit --wait`): folds WatchJob updates into
the job's current picture and shows it — redrawn in place on a terminal, one plain line per
change when stdout is not a TTY (logs, CI), or one JSON document per update with `-o json`.

Guard warnings (`VacuousThreshold: …`) become the job's conditions in the service without a watch
update of their own, so the view raises them from the warning events itself, as the service does.
A JSON document gains `constraint` (a ppo_lag stage's budget, d, λ, J_C) and `conditions` when they
change."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from saferlhf.service.cli import constraint, render, report
from saferlhf.v1 import resources_pb2 as pb

# The metrics a plain line shows for a metrics event (short label, key).
LINE_METRICS = (("λ", "train/lambda"), ("reward", "train/reward"), ("cost", "train/cost"),
                ("harmful", "train/harmful_rate"), ("episode_cost", "train/episode_cost"),
                ("loss", "train/loss"), ("eval harmful", "eval/harmful_rate"),
                ("helpful", "eval/helpfulness"), ("acc", "eval/accuracy"))
REDRAW_SECONDS = 0.25


class LiveView:
    def __init__(self, out: TextIO, mode: str, *, clock: Callable[[], float] = time.monotonic):
        """mode: "tty" (redraw in place), "plain" (a line per change) or "json"."""
        self.out = out
        self.mode = mode
        self.clock = clock
        self.job: pb.Job | None = None
        self.stages: dict[str, pb.Stage] = {}
        self.gates: dict[str, pb.Gate] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.conditions: dict[str, str] = {}  # guard condition name -> message
        self._json_shown: dict[str, Any] = {}  # stage id / "conditions" -> what JSON last carried
        self.cursor = 0
        self._last_draw = float("-inf")
        self._shown_progress: dict[str, int] = {}

    def seed(self, view: Any) -> None:
        """Start from a GetJobResponse (so stages show before their first update)."""
        self.job = view.job
        self.stages = {s.id: s for s in view.stages}
        self.gates = {g.id: g for g in view.gates}
        self.conditions = dict(view.job.conditions)
        self.metrics = render.latest_metrics(view.latest_metrics)

    def follow(self, updates: Iterable[pb.Job]) -> pb.Job | None:
        for msg in updates:
            self.apply(msg)
        if self.mode == "tty":
            self.draw(force=True)
        return self.job

    def apply(self, msg: Any) -> None:
        self.cursor = msg.cursor
        which = msg.WhichOneof("update")
        line = None
        if which == "job":
            changed = self.job is None or self.job.state != msg.job.state
            self.job = msg.job
            self.conditions.update(msg.job.conditions)
            if changed:
                line = f"job {msg.job.id} {render.job_state(msg.job.state)}" + (
                    f": {msg.job.message}" if msg.job.message else "")
        elif which == "stage":
            line = self._stage(msg.stage)
        elif which == "gate":
            self.gates[msg.gate.id] = msg.gate
            observed = render.fmt_value(msg.gate.observed if msg.gate.HasField("observed")
                                        else None)
            line = (f"gate {msg.gate.id} {render.gate_state(msg.gate.state)} "
                    f"({msg.gate.metric} {msg.gate.op} {msg.gate.value:g}, observed {observed})")
        elif which == "event":
            line = self._event(msg)
        if self.mode == "json":
            self._write_json(msg, msg.stage.id if which == "stage" else
                             msg.event.stage_id if which == "event" else "")
        elif self.mode == "plain" and line:
            self.out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
            self.out.flush()
        elif self.mode == "tty":
            self.draw()

    def _write_json(self, msg: Any, stage_id: str) -> None:
        doc = render.to_data(msg)
        stage = self.stages.get(stage_id)
        found = constraint.constraint_of(stage, self.metrics.get(stage_id, {})) if stage else None
        if found is not None and self._json_shown.get(stage_id) != found:
            self._json_shown[stage_id] = found
            doc["constraint"] = found.as_data()
        if self.conditions and self._json_shown.get("conditions") != self.conditions:
            self._json_shown["conditions"] = dict(self.conditions)
            doc["conditions"] = dict(self.conditions)
        self.out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        self.out.flush()

    def _stage(self, stage: pb.Stage) -> str | None:
        old = self.stages.get(stage.id)
        self.stages[stage.id] = stage
        if old is None or old.state != stage.state:
            return f"stage {stage.id} {render.attempt_state(stage.state)}"
        return None

    def _event(self, msg: Any) -> str | None:
        event = msg.event
        stage = event.stage_id
        for p in msg.metric_points:
            self.metrics.setdefault(p.stage_id, {})[p.name] = p.value
        payload = json.loads(event.payload_json) if event.payload_json else {}
        if event.type == pb.EVENT_TYPE_PROGRESS and payload.get("total_steps"):
            ratio = float(payload.get("step", 0)) / float(payload["total_steps"])
            if stage in self.stages:
                self.stages[stage].progress = min(1.0, ratio)
            decile = int(ratio * 10)
            if self._shown_progress.get(stage) != decile:
                self._shown_progress[stage] = decile
                return f"stage {stage} {render.bar(ratio)}"
            return None
        if event.type == pb.EVENT_TYPE_METRICS:
            values = {p.name: p.value for p in msg.metric_points}
            shown = [f"{label}={render.fmt_value(values[k])}" for label, k in LINE_METRICS
                     if k in values]
            if shown:
                return f"stage {stage} step {payload.get('step', '?')}: " + " ".join(shown)
            if "calibration/threshold" in values and stage in self.stages:  # the budget's d
                found = constraint.constraint_of(self.stages[stage], self.metrics[stage])
                return f"stage {found.line()}" if found else None
            return None
        message = str(payload.get("message", ""))
        name = constraint.condition_name(message)
        if event.type == pb.EVENT_TYPE_LOG and payload.get("level") == "warning" and name:
            self.conditions[name] = message
            return f"! {message} [{stage}]"
        if event.type == pb.EVENT_TYPE_LOG and payload.get("level") in ("warning", "error"):
            return f"stage {stage} {payload['level']}: {payload.get('message', '')}"
        if event.type == pb.EVENT_TYPE_RESULT:
            return f"stage {stage} result ready"
        return None

    def text(self) -> str:
        if self.job is None:
            return "waiting for the job…"
        stages = list(self.stages.values())
        parts = [f"{self.job.id}  {self.job.name}  {render.job_state(self.job.state)}"
                 + (f"  — {self.job.message}" if self.job.message else ""),
                 *constraint.condition_lines(self.conditions), "", render.stages_block(stages)]
        gates = render.gates_block(self.gates.values())
        if gates:
            parts += ["", gates]
        block = constraint.constraints_block(stages, self.metrics)
        if block:
            parts += ["", block]
        if report.has_report(stages, self.metrics):
            parts += ["", report.round_report(stages, self.metrics)]
        return "\n".join(parts)

    def draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_draw < REDRAW_SECONDS:
            return
        self._last_draw = now
        self.out.write("\x1b[H\x1b[J" + self.text() + "\n")
        self.out.flush()
