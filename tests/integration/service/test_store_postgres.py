"""The App on a real PostgreSQL (started by the test from the machine's packages): a pipeline
runs to the end, runners report concurrently, and a second App over the same database continues
where the first stopped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from saferlhf.service.app import build_app
from saferlhf.service.settings import Settings
from saferlhf.service.state.types import JobState

from tests.fakes import FakeClock, FakeExecutor
from tests.unit.service.scheduler.helpers import add_job
from tests.unit.service.store.pg_server import PgServer


@pytest.fixture(scope="module")
def pg():
    server = PgServer()
    yield server
    server.stop()


def make(tmp_path: Path, url: str, ex: FakeExecutor, clock: FakeClock):
    s = Settings(state_dir=str(tmp_path / "state"), artifacts_root=str(tmp_path / "art"),
                 database_url=url, max_concurrent_stages=2)
    return build_app(s, clock=clock, registry=CollectorRegistry(), executor=ex)


def test_a_job_runs_on_postgres_across_a_service_restart(tmp_path: Path, pg: PgServer) -> None:
    url = pg.fresh_database()
    ex, clock = FakeExecutor(), FakeClock()
    app = make(tmp_path, url, ex, clock)
    add_job(app, tmp_path)
    app.scheduler.tick()
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    runs = [ex.run_of("r1/reward"), ex.run_of("r1/cost")]
    errors: list[Exception] = []

    def report(run) -> None:
        try:
            for i in range(1, 41):
                event = ex.emit(run.spec.stage, "metrics", step=i, values={"train/loss": 1.0})
                app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"],
                                  [event])
        except Exception as exc:  # pragma: no cover - shown by the assert
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cursors = [e.cursor for e in app.store.events("j-1")]
    assert len(cursors) == 80 and len(set(cursors)) == 80
    app.store.close()

    app2 = make(tmp_path, url, ex, clock)
    app2.scheduler.recover()
    for s in ("r1/reward", "r1/cost"):
        ex.finish(s, 0)
    app2.scheduler.tick()
    ex.finish("r1/ppo_lag", 0)
    app2.scheduler.tick()
    ex.finish("r1/evaluate", 0)
    app2.scheduler.tick()
    assert app2.store.get_job("j-1").state == JobState.SUCCEEDED
    assert len(ex.submitted) == 5
    app2.store.close()
