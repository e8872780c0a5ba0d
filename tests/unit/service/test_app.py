"""The App (the ControlPlane domain API) with the real spec loader and planner, a fake executor
and a fake clock."""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

import pytest
import yaml
from saferlhf.service.controlplane import ControlPlane
from saferlhf.service.errors import Conflict, NotFound, SpecError, Unauthenticated
from saferlhf.service.state.types import AttemptState, GateState, JobState

from tests.unit.service.scheduler.helpers import add_job, make_app

SPEC = {
    "apiVersion": "saferlhf.dev/v1alpha1",
    "kind": "SafeRLHFJob",
    "metadata": {"name": "beaver-tiny", "project": "safety-team", "labels": {"team": "a"}},
    "spec": {
        "model": {"path": "builtin:tiny-gpt2"},
        "stages": {
            "sft": {"data": [{"format": "synthetic", "split": "sft"}], "max_steps": 5},
            "reward": {"data": [{"format": "synthetic", "split": "preference"}]},
            "cost": {"data": [{"format": "synthetic", "split": "safety_preference"}]},
            "ppo_lag": {"prompts": [{"format": "synthetic", "split": "prompts"}],
                        "safety_budget": {"max_harmful_rate": 0.02}},
            "eval": {"prompts": [{"format": "synthetic", "split": "eval"}]},
        },
        "rounds": {"count": 1},
        "retries": {"max_attempts": 2, "backoff_seconds": 5},
    },
}


def spec_yaml(**updates) -> str:
    doc = copy.deepcopy(SPEC)
    doc["spec"].update(updates)
    return yaml.safe_dump(doc)


def token_of(ex, stage: str) -> tuple[str, str]:
    run = ex.run_of(stage)
    return run.spec.attempt_id, run.spec.env["SAFERLHF_STAGE_TOKEN"]


def test_the_app_implements_the_control_plane_protocol(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    for name in ControlPlane.__dict__:
        if not name.startswith("_"):
            assert callable(getattr(app, name)), name


def test_create_job_stores_the_planned_pipeline(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path)
    job = app.create_job(spec_yaml(), project=None, request_id="r1", validate_only=False)
    assert job is not None and job.project == "safety-team" and job.name == "beaver-tiny"
    assert job.labels == {"team": "a"} and job.spec["metadata"]["name"] == "beaver-tiny"
    view = app.get_job(job.id)
    assert [s.id for s in view.stages] == [
        "r1/sft", "r1/reward", "r1/cost", "r1/ppo_lag", "r1/evaluate"]
    sft = view.stages[0]
    assert sft.max_attempts == 2 and sft.backoff_seconds == 5
    assert sft.config["kind"] == "sft" and sft.output_dir.startswith(str(tmp_path / "artifacts"))
    app.scheduler.tick()
    stage_json = json.loads((Path(sft.output_dir) / "stage.json").read_text())
    assert stage_json == sft.config  # the runner's stage.json is the planned config
    assert ex.run_of("r1/sft").spec.config_path == str(Path(sft.output_dir) / "stage.json")


def test_a_repeated_request_id_returns_the_same_job(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    a = app.create_job(spec_yaml(), project=None, request_id="same", validate_only=False)
    b = app.create_job(spec_yaml(), project=None, request_id="same", validate_only=False)
    c = app.create_job(spec_yaml(), project=None, request_id="other", validate_only=False)
    assert a.id == b.id != c.id


def test_validate_only_stores_nothing(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    assert app.create_job(spec_yaml(), project=None, request_id="", validate_only=True) is None
    assert app.list_jobs(projects=None, filter="", page_size=10, page_token="").jobs == ()


def test_an_invalid_spec_is_a_spec_error_with_field_paths(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    bad = yaml.safe_load(spec_yaml())
    bad["spec"]["stages"]["ppo_lag"]["lambda_lr"] = -1
    with pytest.raises(SpecError) as err:
        app.create_job(yaml.safe_dump(bad), project=None, request_id="", validate_only=False)
    assert any("lambda_lr" in v.field for v in err.value.violations)


def test_a_spec_for_another_project_is_refused(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    with pytest.raises(SpecError) as err:
        app.create_job(spec_yaml(), project="other-team", request_id="", validate_only=False)
    assert err.value.violations[0].field == "metadata.project"


def test_list_jobs_filters_and_pages(tmp_path: Path) -> None:
    app, _, clock = make_app(tmp_path)
    ids = []
    for _ in range(5):
        clock.advance(1)
        ids.append(app.create_job(spec_yaml(), project=None, request_id="",
                                  validate_only=False).id)
    page = app.list_jobs(projects=["safety-team"], filter="label.team=a", page_size=2,
                         page_token="")
    assert [j.id for j in page.jobs] == ids[::-1][:2] and page.next_page_token
    rest = app.list_jobs(projects=["safety-team"], filter="label.team=a", page_size=10,
                         page_token=page.next_page_token)
    assert [j.id for j in rest.jobs] == ids[::-1][2:] and rest.next_page_token == ""
    assert app.list_jobs(projects=["elsewhere"], filter="", page_size=10,
                         page_token="").jobs == ()


def test_report_events_needs_the_attempts_own_token(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path)
    app.scheduler.tick()
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    reward_id, reward_token = token_of(ex, "r1/reward")
    cost_id, cost_token = token_of(ex, "r1/cost")
    event = {"seq": 1, "attempt": 1, "time": "t", "type": "metrics", "step": 1,
             "values": {"train/loss": 0.5}}
    with pytest.raises(Unauthenticated):
        app.report_events(reward_id, cost_token, [event])  # another attempt's token
    with pytest.raises(Unauthenticated):
        app.report_events(reward_id, "", [event])
    with pytest.raises(Unauthenticated):
        app.report_events("j-1/r1/nope/1", reward_token, [event])
    assert app.report_events(reward_id, reward_token, [event]) == 1
    assert app.report_events(reward_id, reward_token, [event]) == 0  # idempotent
    assert app.get_job("j-1").latest_metrics == {"r1/reward": {"train/loss": 0.5}}
    # the stored hash is not the token
    assert app.store.get_attempt(reward_id).token_hash not in (reward_token, "")
    with pytest.raises(SpecError) as err:
        app.report_events(cost_id, cost_token, [{"seq": 0, "type": "nonsense"}])
    assert {v.field for v in err.value.violations} == {"events[0].seq", "events[0].type"}


def test_guard_warnings_set_job_conditions_and_progress_moves(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path)
    app.scheduler.tick()
    attempt_id, token = token_of(ex, "r1/sft")
    app.report_events(attempt_id, token, [
        {"seq": 1, "type": "log", "level": "warning",
         "message": "LambdaPinned: λ has sat at lambda_max for 20 steps"},
        {"seq": 2, "type": "log", "level": "info", "message": "VacuousThreshold: not a warning"},
        {"seq": 3, "type": "progress", "step": 5, "total_steps": 20},
    ])
    job = app.store.get_job("j-1")
    assert job.conditions == {"LambdaPinned": "LambdaPinned: λ has sat at lambda_max for 20 steps"}
    assert app.store.get_stage("j-1", "r1/sft").progress == 0.25


def test_watch_replays_from_a_cursor_and_follows_until_the_job_ends(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()),))
    app.scheduler.tick()
    attempt_id, token = token_of(ex, "r1/sft")
    app.report_events(attempt_id, token, [{"seq": 1, "type": "progress", "step": 1,
                                           "total_steps": 2}])
    seen: dict[int, list] = {0: [], 1: [], 2: []}

    def watch(i: int) -> None:
        seen[i] = list(app.watch_job("j-1"))

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(3)]  # fan-out
    for t in threads:
        t.start()
    app.report_events(attempt_id, token, [{"seq": 2, "type": "metrics", "step": 2,
                                           "values": {"train/lambda": 1.5}}])
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive()
    updates = seen[0]
    cursors = [u.cursor for u in updates]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert [u.cursor for u in seen[1]] == cursors == [u.cursor for u in seen[2]]
    assert updates[-1].kind == "job" and updates[-1].job.state == JobState.SUCCEEDED
    assert [u.event.seq for u in updates if u.kind == "event"] == [1, 2]
    middle = cursors[len(cursors) // 2]
    resumed = list(app.watch_job("j-1", after_cursor=middle))
    assert [u.cursor for u in resumed] == [c for c in cursors if c > middle]


def test_watch_of_an_unknown_job_is_not_found(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    with pytest.raises(NotFound):
        app.watch_job("nope")


def test_cancel_and_retry_of_ended_jobs_are_conflicts(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()),))
    with pytest.raises(Conflict):
        app.retry_job("j-1")  # pending, not failed
    app.scheduler.tick()
    ex.finish("r1/sft", 0)
    app.scheduler.tick()
    with pytest.raises(Conflict):
        app.cancel_job("j-1")
    with pytest.raises(Conflict):
        app.retry_job("j-1")  # succeeded, nothing to retry


def test_approving_a_gate_that_does_not_wait_is_a_conflict(tmp_path: Path) -> None:
    from saferlhf.service.state.types import Gate

    app, _, _ = make_app(tmp_path)
    add_job(app, tmp_path, gates=(Gate("g", "", "r1/sft", "eval/accuracy", ">=", 0.5),))
    with pytest.raises(Conflict):
        app.approve_gate("j-1", "g", approve=True)
    with pytest.raises(NotFound):
        app.approve_gate("j-1", "nope", approve=True)
    assert app.store.list_gates("j-1")[0].state == GateState.PENDING


def test_stage_logs_come_from_the_executor(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    add_job(app, tmp_path)
    with pytest.raises(NotFound):
        list(app.stage_logs("j-1", "r1/sft", follow=False))
    app.scheduler.tick()
    assert list(app.stage_logs("j-1", "r1/sft", follow=False)) == ["log of j-1/r1/sft/1"]


def test_the_background_loop_runs_ticks_until_stopped(tmp_path: Path) -> None:
    app, ex, _ = make_app(tmp_path, reconcile_interval_seconds=0.05)
    add_job(app, tmp_path, pipeline=(("r1/sft", "sft", ()),))
    app.start()
    try:
        for _ in range(200):
            if ex.runs:
                ex.finish("r1/sft", 0)
            if app.store.get_job("j-1").state == JobState.SUCCEEDED:
                break
            threading.Event().wait(0.02)
    finally:
        app.stop()
    assert app.store.get_job("j-1").state == JobState.SUCCEEDED
    assert app.store.get_stage("j-1", "r1/sft").state == AttemptState.SUCCEEDED


def test_a_spec_for_another_executor_is_refused(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    with pytest.raises(SpecError) as err:
        app.create_job(spec_yaml(executor="kubernetes"), project=None, request_id="",
                       validate_only=False)
    assert [v.field for v in err.value.violations] == ["spec.executor"]
