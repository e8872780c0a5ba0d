"""`saferlhf get` and `watch` show, per PPO-Lagrangian stage, the safety budget and the threshold d
it was calibrated into (or the raw d), with λ and J_C, and the job's guard conditions as `! …`
lines (issue 6). The views are built by hand as the service would send them (domain → proto)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from saferlhf.service.api.convert import job_view_to_proto
from saferlhf.service.cli import render
from saferlhf.service.cli.main import main
from saferlhf.service.cli.watch import LiveView
from saferlhf.service.controlplane import JobView
from saferlhf.service.state.types import AttemptState, Job, Stage
from saferlhf.v1 import job_service_pb2 as api
from saferlhf.v1 import resources_pb2 as pb

from tests.unit.service.api.fake_controlplane import FakeControlPlane, running_server

BUDGET = {"max_harmful_rate": 0.02, "scope": "harmful_prompts", "calibration_samples": 512}
CALIBRATION = {"target": 0.02, "scope": "harmful_prompts", "threshold": -2.77142,
               "mean_cost_safe": -3.35, "mean_cost_unsafe": 3.35, "harmful_prompt_share": 0.5,
               "mean_cost_benign": -3.2, "start_harmful_rate": 0.4, "start_episode_cost": 1.1,
               "break_even_lambda": 0.3, "samples": 64, "harmful_samples": 32,
               "prompt_labels": "data"}
CALIBRATION_METRICS = {f"calibration/{k}": float(v) for k, v in CALIBRATION.items()
                       if isinstance(v, int | float)}
VACUOUS = ("VacuousThreshold: the starting policy already satisfies J_C = -1 ≤ d = 0 while its "
           "harmful rate is 50.0% > target 5.0%; λ can only fall and harm may rise.")
BUDGET_LINE = ("r1/ppo_lag  budget ≤ 2.0% harmful (harmful_prompts) → threshold d = -2.771"
               "  λ = 1.84  J_C = -3.10")


def _ppo(config: dict, result: dict | None = None, state=AttemptState.SUCCEEDED, round=1):
    return Stage(id=f"r{round}/ppo_lag", job_id="j-1", round=round, kind="ppo_lag",
                 state=state, config={"algorithm": "ppo_lag", **config}, result=result or {})


def _view(stages: list[Stage], metrics: dict, conditions: dict | None = None):
    job = Job(id="j-1", name="demo", project="p", spec={}, conditions=conditions or {})
    sft = Stage(id="r1/sft", job_id="j-1", round=1, kind="sft", state=AttemptState.SUCCEEDED)
    return job_view_to_proto(JobView(job=job, stages=(sft, *stages), attempts=(), gates=(),
                                     transitions=(), latest_metrics=metrics))


def test_a_finished_stage_shows_its_budget_and_calibrated_threshold_from_the_result():
    result = {"calibration": CALIBRATION, "final_lambda": 1.8412, "episode_cost": -3.1}
    text = render.job_text(_view([_ppo({"safety_budget": BUDGET}, result)], {}))
    assert BUDGET_LINE in text.splitlines()


def test_a_running_stage_shows_the_calibration_from_its_latest_metrics():
    metrics = {"r1/ppo_lag": {**CALIBRATION_METRICS, "train/lambda": 1.8412,
                              "train/episode_cost": -3.1, "train/threshold": -2.77142}}
    stage = _ppo({"safety_budget": BUDGET}, state=AttemptState.RUNNING)
    assert BUDGET_LINE in render.job_text(_view([stage], metrics)).splitlines()


def test_each_round_shows_its_own_calibrated_threshold():
    metrics = {"r1/ppo_lag": {**CALIBRATION_METRICS},
               "r2/ppo_lag": {**CALIBRATION_METRICS, "calibration/threshold": -1.5}}
    stages = [_ppo({"safety_budget": BUDGET}), _ppo({"safety_budget": BUDGET}, round=2)]
    lines = render.job_text(_view(stages, metrics)).splitlines()
    assert "r1/ppo_lag  budget ≤ 2.0% harmful (harmful_prompts) → threshold d = -2.771" in lines
    assert "r2/ppo_lag  budget ≤ 2.0% harmful (harmful_prompts) → threshold d = -1.500" in lines


def test_a_budget_not_calibrated_yet_says_so():
    stage = _ppo({"safety_budget": {**BUDGET, "scope": "all_prompts"}},
                 state=AttemptState.RUNNING)
    assert ("r1/ppo_lag  budget ≤ 2.0% harmful (all_prompts) → threshold d = (not calibrated yet)"
            in render.job_text(_view([stage], {})).splitlines())


def test_a_raw_threshold_is_shown_as_raw_without_a_budget():
    metrics = {"r1/ppo_lag": {"train/lambda": 0.5, "train/episode_cost": 0.25,
                              "train/threshold": 0.0}}
    text = render.job_text(_view([_ppo({"threshold": 0.0}, state=AttemptState.RUNNING)],
                                 metrics))
    assert "r1/ppo_lag  threshold d = 0.000 (raw)  λ = 0.50  J_C = 0.25" in text.splitlines()
    assert "budget" not in text


@pytest.mark.parametrize("algorithm", ["ppo", "reward_shaping"])
def test_stages_without_a_lagrangian_constraint_show_no_threshold(algorithm):
    stage = _ppo({"algorithm": algorithm, "threshold": None})
    assert "threshold d" not in render.job_text(_view([stage], {}))


def test_guard_conditions_are_shown_as_bang_lines_above_the_stages():
    text = render.job_text(_view([_ppo({"threshold": 0.0})], {},
                                 {"VacuousThreshold": VACUOUS, "LambdaPinned": "stuck at max"}))
    lines = text.splitlines()
    assert f"! {VACUOUS}" in lines
    assert "! LambdaPinned: stuck at max" in lines  # a message without its name gets it
    assert lines.index(f"! {VACUOUS}") < next(i for i, ln in enumerate(lines)
                                              if ln.startswith("STAGE"))


def test_the_json_document_carries_the_constraint_and_the_conditions():
    result = {"calibration": CALIBRATION, "final_lambda": 1.8412, "episode_cost": -3.1}
    data = render.job_data(_view([_ppo({"safety_budget": BUDGET}, result)], {},
                                 {"VacuousThreshold": VACUOUS}))
    assert data["constraints"] == [{
        "stage_id": "r1/ppo_lag", "threshold_source": "calibrated", "threshold": -2.77142,
        "max_harmful_rate": 0.02, "scope": "harmful_prompts", "lambda_value": 1.8412,
        "episode_cost": -3.1}]
    assert data["job"]["conditions"] == {"VacuousThreshold": VACUOUS}
    assert data["stages"][1]["result"]["calibration"]["threshold"] == -2.77142


def _event(cursor: int, type_: int, payload: dict, points=()) -> api.WatchJobResponse:
    msg = api.WatchJobResponse(cursor=cursor, event=pb.Event(
        seq=cursor, stage_id="r1/ppo_lag", type=type_, payload_json=json.dumps(payload)))
    msg.metric_points.extend(pb.MetricPoint(stage_id="r1/ppo_lag", round=1, name=n, value=v)
                             for n, v in points)
    return msg


def _calibrated_then_warned(view: LiveView) -> None:
    view.apply(_event(1, pb.EVENT_TYPE_METRICS, {"step": 0}, CALIBRATION_METRICS.items()))
    view.apply(_event(2, pb.EVENT_TYPE_METRICS, {"step": 4},
                      [("train/lambda", 1.8412), ("train/episode_cost", -3.1)]))
    view.apply(_event(3, pb.EVENT_TYPE_LOG, {"level": "warning", "message": VACUOUS}))


def test_the_live_view_shows_the_budget_and_raises_guard_warnings_as_conditions():
    out = io.StringIO()
    view = LiveView(out, "tty", clock=lambda: 0.0)
    view.seed(_view([_ppo({"safety_budget": BUDGET}, state=AttemptState.RUNNING)], {}))
    _calibrated_then_warned(view)
    view.draw(force=True)
    frame = out.getvalue().split("\x1b[H\x1b[J")[-1].splitlines()
    assert BUDGET_LINE in frame
    assert f"! {VACUOUS}" in frame


def test_plain_watch_lines_show_the_calibration_and_the_warning():
    out = io.StringIO()
    view = LiveView(out, "plain")
    view.seed(_view([_ppo({"safety_budget": BUDGET}, state=AttemptState.RUNNING)], {}))
    _calibrated_then_warned(view)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("stage r1/ppo_lag  budget ≤ 2.0% harmful (harmful_prompts) → "
                             "threshold d = -2.771")
    assert lines[-1].endswith(f"! {VACUOUS} [r1/ppo_lag]")


def test_watch_json_documents_gain_the_constraint_and_conditions_when_they_change():
    out = io.StringIO()
    view = LiveView(out, "json")
    stage = job_view_to_proto(JobView(
        job=Job(id="j-1", name="d", project="p", spec={}),
        stages=(_ppo({"safety_budget": BUDGET}, state=AttemptState.RUNNING),), attempts=(),
        gates=(), transitions=(), latest_metrics={})).stages[0]
    view.apply(api.WatchJobResponse(cursor=1, stage=stage))
    _calibrated_then_warned(view)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0]["constraint"]["threshold_source"] == "pending"
    assert docs[1]["constraint"]["threshold"] == -2.77142
    assert docs[2]["constraint"]["lambda_value"] == 1.8412
    assert "constraint" not in docs[3]  # unchanged by the log event
    assert docs[3]["conditions"] == {"VacuousThreshold": VACUOUS}


def test_get_over_grpc_shows_the_budget_line_and_conditions(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\n"
                    "metadata: {name: demo, project: p}\n")
    app = FakeControlPlane()
    with running_server(app) as (address, _):
        assert main(["--server", address, "submit", str(spec)], stdout=io.StringIO(),
                    stderr=io.StringIO()) == 0
        job_id = next(iter(app.jobs))
        app.jobs[job_id] = replace(app.jobs[job_id], conditions={"VacuousThreshold": VACUOUS})
        app.stages[job_id].append(replace(_ppo({"safety_budget": BUDGET},
                                               state=AttemptState.RUNNING), job_id=job_id))
        app.latest_metrics[job_id] = {"r1/ppo_lag": {
            **CALIBRATION_METRICS, "train/lambda": 1.8412, "train/episode_cost": -3.1}}
        out = io.StringIO()
        assert main(["--server", address, "get", job_id], stdout=out, stderr=io.StringIO()) == 0
        lines = out.getvalue().splitlines()
        assert BUDGET_LINE in lines and f"! {VACUOUS}" in lines
        out = io.StringIO()
        main(["--server", address, "get", job_id, "-o", "json"], stdout=out,
             stderr=io.StringIO())
        data = json.loads(out.getvalue())
        assert data["constraints"][0]["threshold"] == -2.77142
        assert data["job"]["conditions"]["VacuousThreshold"] == VACUOUS
