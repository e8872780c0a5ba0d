"""PostgreSQL restarts mid-job (a real server, stopped with `-m immediate` and started again):
the service reconnects by itself, the runner's event stream (the real `Reporter`) is answered
UNAVAILABLE meanwhile and re-sends, and the job ends with every event of events.jsonl stored
once — none lost, none doubled — and nothing in the service log but warnings."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import grpc
import pytest
from saferlhf.runners.common.events import read_events
from saferlhf.runners.common.report import Reporter
from saferlhf.service.state.types import JobState
from saferlhf.v1 import job_service_pb2 as api

from tests.fakes import FakeExecutor
from tests.integration.service.app_server import app_server, wait_for
from tests.unit.service.scheduler.helpers import add_job
from tests.unit.service.store.pg_server import PgServer


@pytest.fixture
def pg():
    server = PgServer()
    yield server
    with contextlib.suppress(RuntimeError):  # already stopped by a failed test
        server.stop()


def _emit(ex: FakeExecutor, reporter: Reporter, stage: str, step: int) -> dict:
    event = ex.emit(stage, "metrics", step=step, values={"train/loss": 1.0 / step})
    reporter(event)
    return event


def test_a_postgres_restart_mid_job_loses_and_doubles_no_event(tmp_path, pg, caplog):
    caplog.set_level(logging.WARNING)
    ex = FakeExecutor()
    with app_server(tmp_path / "state", executor=ex, database_url=pg.fresh_database(),
                    artifacts_root=str(tmp_path / "artifacts")) as served:
        add_job(served.app, tmp_path, backoff_seconds=1)
        served.app.kick()
        wait_for(lambda: ex.live() == ["r1/sft"], "sft to start")
        run = ex.run_of("r1/sft")
        reporter = Reporter(served.address, attempt_id=run.spec.attempt_id,
                            token=run.spec.env["SAFERLHF_STAGE_TOKEN"])
        for step in range(1, 6):
            _emit(ex, reporter, "r1/sft", step)
        wait_for(lambda: reporter.sent >= 5, "the first events to be stored")

        pg.stop_server("immediate")  # the database goes away mid-job
        for step in range(6, 11):
            _emit(ex, reporter, "r1/sft", step)  # the runner goes on; its stream is refused
        with pytest.raises(grpc.RpcError) as down:
            served.jobs.GetJob(api.GetJobRequest(job_id="j-1"), timeout=10)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE, down.value.details()
        time.sleep(1.0)  # a few reconcile ticks against the dead database
        pg.start_server()

        wait_for(lambda: reporter.sent >= 10, "the runner's re-sent events", timeout=60)
        reporter.close()
        ex.finish("r1/sft", 0, result={})
        for stage in ("r1/reward", "r1/cost", "r1/ppo_lag", "r1/evaluate"):
            wait_for(lambda s=stage: s in ex.live(), f"{stage} to start", timeout=60)
            ex.emit(stage, "metrics", step=1, values={"train/loss": 0.5})
            ex.finish(stage, 0, result={})
        wait_for(lambda: served.app.store.get_job("j-1").state.terminal, "the job to end")
        job = served.app.store.get_job("j-1")
        assert job.state == JobState.SUCCEEDED, job.message

        for stage in served.app.store.list_stages("j-1"):
            attempts = [a for a in served.app.store.list_attempts("j-1")
                        if a.stage_id == stage.id]
            assert len(attempts) == 1, attempts  # no attempt lost to the outage
            in_file = [(e["seq"], json.dumps(e.get("values"), sort_keys=True))
                       for e in read_events(Path(stage.output_dir) / "events.jsonl")]
            stored = [(e.seq, json.dumps(e.payload.get("values"), sort_keys=True))
                      for e in served.app.store.attempt_events(attempts[0].id)]
            assert stored == in_file, stage.id
    assert "Traceback" not in caplog.text
    assert any("lost the connection to PostgreSQL" in r.getMessage() for r in caplog.records)
    assert any("reconnected to PostgreSQL" in r.getMessage() for r in caplog.records)
