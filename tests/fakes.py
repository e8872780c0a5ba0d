"""Fakes for control-plane tests: a clock the test moves by hand and an executor whose attempts
finish when the test says so (writing events.jsonl and result.json the way a runner does).

These are fakes, not runners: they train nothing. Scheduler tests use them so that retries, stalls
and restarts are tested in milliseconds without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saferlhf.service.execution.base import LaunchSpec, RunState, RunStatus, classify_exit


class FakeClock:
    """Unix seconds that move only when the test calls `advance`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


@dataclass
class FakeRun:
    spec: LaunchSpec
    status: RunStatus = field(default_factory=lambda: RunStatus(RunState.RUNNING))
    cancels: list[float] = field(default_factory=list)
    seq: int = 0


class FakeExecutor:
    """Keeps attempts in memory; `finish`/`emit` act out what a runner would do."""

    name = "fake"

    def __init__(self, *, start_state: RunState = RunState.RUNNING,
                 exit_on_cancel: bool = True) -> None:
        self.runs: dict[str, FakeRun] = {}  # handle -> run
        self.start_state = start_state
        self.exit_on_cancel = exit_on_cancel
        self.submitted: list[str] = []  # attempt ids, in submit order
        self.fail_submit: Exception | None = None

    # ---- Executor interface -----------------------------------------------------------------
    def submit(self, spec: LaunchSpec) -> str:
        if self.fail_submit is not None:
            raise self.fail_submit
        handle = "fake:" + spec.attempt_id
        if handle not in self.runs:
            self.runs[handle] = FakeRun(spec, RunStatus(self.start_state))
            self.submitted.append(spec.attempt_id)
        return handle

    def poll(self, handle: str) -> RunStatus:
        run = self.runs.get(handle)
        return run.status if run else RunStatus(RunState.LOST, message="unknown handle")

    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        run = self.runs[handle]
        run.cancels.append(grace_seconds)
        if self.exit_on_cancel and run.status.state in (RunState.RUNNING, RunState.PENDING):
            run.status = RunStatus(RunState.FAILED, -15, classify_exit(-15), "killed by SIGTERM")

    def logs(self, handle: str, follow: bool = False) -> Iterator[str]:
        yield f"log of {self.runs[handle].spec.attempt_id}"

    def adopt(self) -> dict[str, str]:
        return {run.spec.attempt_id: h for h, run in self.runs.items()}

    # ---- acting out a runner ----------------------------------------------------------------
    def live(self) -> list[str]:
        """Stage ids of attempts still running, in submit order."""
        return [r.spec.stage for r in self.runs.values()
                if r.status.state in (RunState.RUNNING, RunState.PENDING)]

    def run_of(self, stage: str) -> FakeRun:
        """The latest attempt of a stage."""
        runs = [r for r in self.runs.values() if r.spec.stage == stage]
        if not runs:
            raise AssertionError(f"stage {stage} was never submitted")
        return max(runs, key=lambda r: r.spec.attempt)

    def emit(self, stage: str, type_: str, **fields: Any) -> dict[str, Any]:
        """Append an event to the attempt's events.jsonl (as the runner's EventSink does)."""
        run = self.run_of(stage)
        run.seq += 1
        event = {"seq": run.seq, "attempt": run.spec.attempt, "time": "2026-11-27T10:00:00Z",
                 "type": type_, **fields}
        out = Path(run.spec.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "events.jsonl").open("a") as f:
            f.write(json.dumps(event) + "\n")
        return event

    def finish(self, stage: str, exit_code: int = 0, *,
               result: Mapping[str, Any] | None = None, state: RunState | None = None) -> None:
        run = self.run_of(stage)
        if result is not None:
            Path(run.spec.output_dir, "result.json").write_text(json.dumps(dict(result)))
            self.emit(stage, "result", values=dict(result))
        if state is None:
            state = RunState.SUCCEEDED if exit_code == 0 else RunState.FAILED
        run.status = RunStatus(state, exit_code, classify_exit(exit_code),
                               f"exit code {exit_code}")
