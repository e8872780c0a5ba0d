"""A tiny plan stored directly (no spec, no planner): sft → reward ∥ cost → ppo_lag → evaluate."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from saferlhf.service.app import App, build_app
from saferlhf.service.settings import Settings
from saferlhf.service.state.types import Gate, Job, Stage

from tests.fakes import FakeClock, FakeExecutor

PIPELINE = (
    ("r1/sft", "sft", ()),
    ("r1/reward", "reward", ("r1/sft",)),
    ("r1/cost", "cost", ("r1/sft",)),
    ("r1/ppo_lag", "ppo_lag", ("r1/reward", "r1/cost")),
    ("r1/evaluate", "evaluate", ("r1/ppo_lag",)),
)


def make_app(tmp_path: Path, *, executor: FakeExecutor | None = None,
             clock: FakeClock | None = None, **settings) -> tuple[App, FakeExecutor, FakeClock]:
    executor = executor or FakeExecutor()
    clock = clock or FakeClock()
    s = Settings(state_dir=str(tmp_path / "state"), artifacts_root=str(tmp_path / "artifacts"),
                 **settings)
    app = build_app(s, clock=clock, registry=CollectorRegistry(), executor=executor)
    return app, executor, clock


def add_job(app: App, tmp_path: Path, *, job_id: str = "j-1", gates: tuple[Gate, ...] = (),
            max_attempts: int = 3, backoff_seconds: float = 30.0,
            stall_minutes: float | None = None, pipeline=PIPELINE, project: str = "p",
            skipped: dict[str, str] | None = None) -> Job:
    now = app.clock()
    stages = [
        Stage(id=sid, job_id=job_id, round=int(sid.split("/")[0][1:]), kind=kind,
              depends_on=deps,
              config={"kind": kind, "output_dir": str(tmp_path / job_id / sid)},
              output_dir=str(tmp_path / job_id / sid), max_attempts=max_attempts,
              backoff_seconds=backoff_seconds, backoff_max_seconds=600.0,
              stall_minutes=stall_minutes, skipped_with=(skipped or {}).get(sid))
        for sid, kind, deps in pipeline
    ]
    job = Job(id=job_id, name="demo", project=project, spec={}, created_at=now, updated_at=now)
    gates = tuple(Gate(**{**g.__dict__, "job_id": job_id}) for g in gates)
    created, _ = app.store.create_job(job, stages, list(gates))
    return created


def succeed(app: App, ex: FakeExecutor, *stages: str, result=None) -> None:
    for s in stages:
        ex.finish(s, 0, result=result or {})
    app.scheduler.tick()
