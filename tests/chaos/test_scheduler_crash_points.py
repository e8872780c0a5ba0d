"""The service dies after every single side effect of a job's life; a new service over the same
store and the same (still running) runner processes finishes the job exactly like an uninterrupted
one: every stage ran once, none was launched twice, every runner streams with the token it was
started with, every runner event is stored once.

This is the deterministic half of the service-SIGKILL suite (tests/chaos/test_service_kill.py is
the real-process half, at random moments): a crash is injected right after the N-th side effect —
a committed store transaction or an executor submit, the moments a SIGKILL can fall between — for
every N from 1 to the number of side effects of an uninterrupted run. The runners are the fake
executor's (they train nothing; they write events.jsonl and result.json like a runner, stream
their first events, and live on across the crash).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from saferlhf.runners.common.events import read_events
from saferlhf.service.execution.base import RunState
from saferlhf.service.state.types import AttemptState, Gate, JobState

from tests.fakes import FakeClock, FakeExecutor
from tests.unit.service.scheduler.helpers import add_job, make_app

GATES = (Gate(id="r1/cost/0", job_id="", after_stage="r1/cost", metric="eval/accuracy_sign",
              op=">=", value=0.5),)
FLAKY = "r1/reward"  # its first attempt exits 75: the retry path is crashed into too


class Crash(BaseException):
    """The service process died here (nothing after this line of the tick runs)."""


class CrashAfter:
    """Counts the service's side effects — committed store transactions and executor submits —
    and raises Crash right after the N-th."""

    def __init__(self, after: int | None) -> None:
        self.count, self.after = 0, after

    def _tick(self, what: str) -> None:
        self.count += 1
        if self.after is not None and self.count == self.after:
            raise Crash(f"killed after side effect {self.count} ({what})")

    def wrap_store(self, store) -> None:
        inner = store._tx

        @contextlib.contextmanager
        def tx() -> Iterator:
            with inner() as t:
                yield t
            self._tick("store write")

        store._tx = tx

    def wrap_executor(self, ex: FakeExecutor) -> None:
        inner = ex.submit

        def submit(spec):
            handle = inner(spec)
            self._tick(f"submit {spec.attempt_id}")
            return handle

        ex.submit = submit


class Runners:
    """Acts out the runner processes: each live attempt writes a few events (and streams them
    with the stage token it was started with), then exits."""

    def __init__(self, ex: FakeExecutor) -> None:
        self.ex = ex
        self.double_launches: list[str] = []
        self.refused_streams: list[str] = []
        self._seen: set[str] = set()

    def act(self, app) -> None:
        live: dict[str, int] = {}
        for handle, run in list(self.ex.runs.items()):
            if run.status.state not in (RunState.RUNNING, RunState.PENDING):
                continue
            live[run.spec.stage] = live.get(run.spec.stage, 0) + 1
            if handle in self._seen:
                self._finish(run)
            else:
                self._seen.add(handle)
                events = [self._emit(run, "progress", step=1, total_steps=2),
                          self._emit(run, "metrics", step=1, values={"train/loss": 0.5})]
                self._stream(app, run, events)
        self.double_launches += [s for s, n in live.items() if n > 1]

    def _emit(self, run, type_: str, **fields) -> None:
        run.seq += 1
        event = {"seq": run.seq, "attempt": run.spec.attempt, "time": "t", "type": type_,
                 **fields}
        out = Path(run.spec.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "events.jsonl").open("a") as f:
            f.write(json.dumps(event) + "\n")
        return event

    def _stream(self, app, run, events) -> None:
        from saferlhf.service.errors import Unauthenticated

        try:
            app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"], events)
        except Unauthenticated:
            self.refused_streams.append(run.spec.attempt_id)

    def _finish(self, run) -> None:
        from saferlhf.service.execution.base import RunStatus, classify_exit

        code = 75 if run.spec.stage == FLAKY and run.spec.attempt == 1 else 0
        result = {"eval/accuracy_sign": 0.9}
        if code == 0:
            Path(run.spec.output_dir, "result.json").write_text(json.dumps(result))
            self._emit(run, "result", values=result)
        run.status = RunStatus(RunState.SUCCEEDED if code == 0 else RunState.FAILED, code,
                               classify_exit(code), f"exit code {code}")


def run_job(tmp_path: Path, crash_after: int | None, max_ticks: int = 200):
    """Run the job to its end with a crash after side effect `crash_after` (None: none);
    returns what happened. Only the first service crashes: the restarted one is not wrapped."""
    ex, clock = FakeExecutor(), FakeClock()
    runners = Runners(ex)
    app, _, _ = make_app(tmp_path, executor=ex, clock=clock, max_concurrent_stages=2)
    add_job(app, tmp_path, gates=GATES, max_attempts=3, backoff_seconds=5)
    crash = CrashAfter(crash_after)
    crash.wrap_store(app.store)
    crash.wrap_executor(ex)
    app.scheduler.recover()
    crashed = False
    for _ in range(max_ticks):
        try:
            app.scheduler.tick()
            if app.store.get_job("j-1").state.terminal:
                break
            runners.act(app)  # their event streams are ingested by the service: crashable too
        except Crash:
            crashed = True
            app.store.close()  # kill -9: the new service opens the files afresh
            app, _, _ = make_app(tmp_path, executor=ex, clock=clock, max_concurrent_stages=2)
            app.scheduler.recover()
        clock.advance(10)
    return app, ex, runners, crash.count if not crashed else None, crashed


def check_like_an_uninterrupted_run(app, ex: FakeExecutor, runners: Runners) -> None:
    job = app.store.get_job("j-1")
    assert job.state == JobState.SUCCEEDED, (job.state, job.message)
    assert not runners.double_launches, f"launched twice: {runners.double_launches}"
    assert not runners.refused_streams, f"stage token refused: {runners.refused_streams}"
    attempts = app.store.list_attempts("j-1")
    by_stage: dict[str, list] = {}
    for a in attempts:
        by_stage.setdefault(a.stage_id, []).append(a)
    for stage in app.store.list_stages("j-1"):
        runs = by_stage[stage.id]
        expected = 2 if stage.id == FLAKY else 1
        assert [a.number for a in runs] == list(range(1, expected + 1)), (stage.id, runs)
        assert runs[-1].state == AttemptState.SUCCEEDED
        assert stage.state == AttemptState.SUCCEEDED and stage.attempts == expected
        # every event of every attempt's file stored exactly once (the store's key forbids
        # doubles; equality with the file means none lost)
        for a in runs:
            in_file = [e["seq"] for e in read_events(Path(stage.output_dir) / "events.jsonl")
                       if e["attempt"] == a.number]
            assert [e.seq for e in app.store.attempt_events(a.id)] == in_file, a.id
    assert len(ex.submitted) == len(attempts)  # nothing submitted beyond the stored attempts
    assert all(g.state.value == "PASSED" for g in app.store.list_gates("j-1"))


def test_an_uninterrupted_run_is_the_reference(tmp_path: Path):
    app, ex, runners, writes, _ = run_job(tmp_path, None)
    check_like_an_uninterrupted_run(app, ex, runners)
    assert writes and writes > 40


@pytest.fixture(scope="module")
def total_writes(tmp_path_factory) -> int:
    _, _, _, writes, _ = run_job(tmp_path_factory.mktemp("reference"), None)
    return writes


def test_a_crash_after_any_write_or_submit_ends_like_an_uninterrupted_run(tmp_path: Path,
                                                                          total_writes):
    failures = []
    for n in range(1, total_writes + 1):
        app, ex, runners, _, crashed = run_job(tmp_path / f"crash-{n}", n)
        assert crashed, f"side effect {n} never happened"
        try:
            check_like_an_uninterrupted_run(app, ex, runners)
        except AssertionError as exc:
            failures.append(f"crash after side effect {n}: {exc}")
        finally:
            app.store.close()
    assert not failures, "\n".join(failures[:10]) + f"\n({len(failures)} of {total_writes})"
