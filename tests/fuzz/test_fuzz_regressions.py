"""What the fuzz found, pinned: each test failed before its fix (real gRPC server, real App)."""

from __future__ import annotations

import grpc
import pytest
from saferlhf.service.api.errors import field_violations
from saferlhf.v1 import job_service_pb2 as api

from tests.integration.service.app_server import app_server
from tests.unit.service.scheduler.helpers import add_job


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("regressions")
    with app_server(root / "state") as ctx:
        add_job(ctx.app, root)
        yield ctx


def test_an_error_that_echoes_a_100_kb_id_still_reaches_the_client(served):
    """The NOT_FOUND message quoted the whole id: 100 KB of trailing metadata, over the client's
    16 KiB limit, so the client saw RESOURCE_EXHAUSTED ("Stream removed") instead."""
    with pytest.raises(grpc.RpcError) as err:
        served.jobs.GetJob(api.GetJobRequest(job_id="x" * 100_000), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    assert len(err.value.details()) <= 1000 and "characters)" in err.value.details()


def test_a_spec_with_thousands_of_violations_answers_the_first_ones(served):
    spec = "apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nmetadata: {name: x}\n" \
           "spec:\n  stages:\n" + "".join(f"    bogus_{i}_{'y' * 200}: 1\n" for i in range(2000))
    with pytest.raises(grpc.RpcError) as err:
        served.jobs.CreateJob(api.CreateJobRequest(spec_yaml=spec, validate_only=True),
                              timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    violations = field_violations(err.value)
    assert 1 < len(violations) <= 21 and violations[-1][0] == "(more)"
    assert all(len(f) <= 120 and len(d) <= 240 for f, d in violations)


def test_watching_from_a_cursor_the_job_never_gave_out_is_invalid_argument(served):
    """It used to wait silently, then skip every update up to that cursor as they happened."""
    last = served.app.store.max_cursor("j-1")
    with pytest.raises(grpc.RpcError) as err:
        next(iter(served.jobs.WatchJob(api.WatchJobRequest(job_id="j-1",
                                                           after_cursor=last + 1000),
                                       timeout=10)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert [f for f, _ in field_violations(err.value)] == ["after_cursor"]
    first = next(iter(served.jobs.WatchJob(api.WatchJobRequest(job_id="j-1"), timeout=10)))
    assert first.cursor == 1


def test_a_watch_ends_without_touching_the_store_once_the_app_stops(tmp_path):
    """Shutdown: watchers woken by the stop read the store as it closed (INTERNAL with a
    'closed database' traceback in the log)."""
    from tests.unit.service.scheduler.helpers import make_app

    app, _, _ = make_app(tmp_path)
    add_job(app, tmp_path)
    stream = app.watch_job("j-1", after_cursor=app.store.max_cursor("j-1"))
    app.stop()
    app.store.close()
    assert list(stream) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_nan_metric_is_stored_not_an_internal_error(tmp_path, backend, request):
    """A runner whose loss went NaN: SQLite turned NaN into NULL, the NOT NULL latest_metrics
    column refused the batch (INTERNAL to the stream) and the gap fill of the finished attempt
    raised on every tick, so the job never ended."""
    import math

    from saferlhf.service.state.types import AttemptState, JobState

    from tests.unit.service.scheduler.helpers import make_app

    settings = {}
    if backend == "postgres":
        settings["database_url"] = request.getfixturevalue("pg_server").fresh_database()
    app, ex, _ = make_app(tmp_path, **settings)
    add_job(app, tmp_path)
    app.scheduler.tick()
    run = ex.run_of("r1/sft")
    token = run.spec.env["SAFERLHF_STAGE_TOKEN"]
    streamed = ex.emit("r1/sft", "metrics", step=1, values={"train/loss": float("nan")})
    assert app.report_events(run.spec.attempt_id, token, [streamed]) == 1
    ex.emit("r1/sft", "metrics", step=2, values={"train/loss": float("nan"), "x": 1.0})
    ex.finish("r1/sft", 0, result={"train/loss": float("nan")})
    app.scheduler.tick()  # the gap fill reads the NaN event from events.jsonl
    assert app.store.get_stage("j-1", "r1/sft").state == AttemptState.SUCCEEDED
    assert math.isnan(app.store.latest_metrics("j-1")["r1/sft"]["train/loss"])
    assert app.store.get_job("j-1").state == JobState.RUNNING


@pytest.mark.parametrize(("event", "field"), [
    ({"type": "progress", "step": 1, "total_steps": "abc"}, "events[0].total_steps"),
    ({"type": "progress", "step": "x", "total_steps": 3}, "events[0].step"),
    ({"type": "progress", "step": 1, "total_steps": 0.0}, "events[0].total_steps"),
    ({"type": "progress", "step": 10**400, "total_steps": 5}, "events[0].step"),
    ({"type": "metrics", "step": [1], "values": {"train/loss": 1.0}}, "events[0].step"),
])
def test_runner_events_with_unusable_numbers_are_invalid_argument_and_not_stored(
        tmp_path, event, field):
    """These raised ValueError / ZeroDivisionError / OverflowError (INTERNAL) after the batch was
    already stored, skipping the attempt's liveness and progress updates."""
    from saferlhf.service.errors import SpecError

    from tests.unit.service.scheduler.helpers import make_app

    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path)
    app.scheduler.tick()
    run = ex.run_of("r1/sft")
    with pytest.raises(SpecError) as err:
        app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"],
                          [{"seq": 1, "attempt": 1, "time": "t", **event}])
    assert field in [v.field for v in err.value.violations]
    assert app.store.attempt_events(run.spec.attempt_id) == []


def test_an_int_beyond_float_range_in_metric_values_is_stored_and_ignored_as_a_metric(tmp_path):
    from tests.unit.service.scheduler.helpers import make_app

    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path)
    app.scheduler.tick()
    run = ex.run_of("r1/sft")
    assert app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"], [
        {"seq": 1, "attempt": 1, "time": "t", "type": "metrics", "step": 1,
         "values": {"train/lambda": 10**400, "train/loss": 0.5}}]) == 1
    assert app.store.latest_metrics("j-1")["r1/sft"] == {"train/loss": 0.5}


def test_every_error_status_fits_the_clients_metadata_limit():
    """Whatever the error holds, both trailers stay under gRPC's 8 KiB soft limit."""
    from saferlhf.service.api.errors import TRAILER_BUDGET_BYTES, _wire_bytes, to_status
    from saferlhf.service.errors import FieldViolation, NotFound, SpecError

    huge = SpecError([FieldViolation("f" * 500 + str(i), "é" * 2000) for i in range(500)],
                     "ü" * 50_000)
    for error in (huge, NotFound("job " + "x" * 100_000 + " not found")):
        assert _wire_bytes(to_status(error)) <= TRAILER_BUDGET_BYTES < 8192


def test_a_stored_metric_beyond_float_range_does_not_break_watching_its_job(tmp_path):
    """The 10,000-request fuzz: a metrics event holding 10**400 (stored, it is valid JSON) made
    every WatchJob of its job fail with INTERNAL when its metric points were converted."""
    with app_server(tmp_path / "state") as served:
        add_job(served.app, tmp_path)
        served.app.kick()
        from tests.integration.service.app_server import wait_for

        wait_for(lambda: served.executor.live(), "sft to start")
        run = served.executor.run_of("r1/sft")
        assert served.app.report_events(run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"], [
            {"seq": 1, "attempt": 1, "time": "t", "type": "metrics", "step": 3,
             "values": {"train/lambda": 10**400, "train/loss": 0.5}}]) == 1
        last = served.app.store.max_cursor("j-1")
        updates = []
        for update in served.jobs.WatchJob(api.WatchJobRequest(job_id="j-1"), timeout=10):
            updates.append(update)
            if update.cursor >= last:
                break
        points = [p for u in updates if u.WhichOneof("update") == "event"
                  for p in u.metric_points]
        assert [(p.name, p.value, p.step) for p in points] == [("train/loss", 0.5, 3)]
