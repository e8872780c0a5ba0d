"""Cheap-first escalation in the reconcile loop (fake clock, fake executor): the PPO-Lag branch
after an `escalate` gate runs only when the offline policy misses the gate, is skipped as not
needed when it meets it, and the job says which happened and why."""

from __future__ import annotations

from pathlib import Path

from saferlhf.service.scheduler.launch import not_needed
from saferlhf.service.state.types import AttemptState, Gate, GateState, JobState, Stage

from tests.unit.service.scheduler.helpers import add_job, make_app, succeed

# The escalation plan's shape (saferlhf.service.planning.plan, offline form with escalation).
ESCALATION = (
    ("r1/sft", "sft", ()),
    ("r1/safe_dpo", "safe_dpo", ("r1/sft",)),
    ("r1/evaluate_safe_dpo", "evaluate", ("r1/sft", "r1/safe_dpo")),
    ("r1/reward", "reward", ("r1/sft", "r1/evaluate_safe_dpo")),
    ("r1/cost", "cost", ("r1/sft", "r1/evaluate_safe_dpo")),
    ("r1/ppo_lag", "ppo_lag", ("r1/safe_dpo", "r1/reward", "r1/cost", "r1/evaluate_safe_dpo")),
    ("r1/evaluate", "evaluate", ("r1/sft", "r1/safe_dpo", "r1/ppo_lag", "r1/reward",
                                 "r1/cost")),
)
BRANCH = ["r1/reward", "r1/cost", "r1/ppo_lag", "r1/evaluate"]
SCREEN = Gate("r1/evaluate_safe_dpo/escalate", "", "r1/evaluate_safe_dpo", "eval/harmful_rate",
              "<=", 0.05, "escalate")


def states(app, job_id="j-1") -> dict[str, str]:
    return {s.id: s.state.value for s in app.store.list_stages(job_id)}


def run_offline_part(app, ex, harmful_rate: float) -> None:
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    succeed(app, ex, "r1/safe_dpo")
    succeed(app, ex, "r1/evaluate_safe_dpo", result={"eval/harmful_rate": harmful_rate})


def test_the_branch_is_skipped_as_not_needed_when_the_offline_policy_meets_the_gate(
        tmp_path: Path):
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path, pipeline=ESCALATION, gates=(
        SCREEN, Gate("r1/evaluate/0", "", "r1/evaluate", "eval/harmful_rate", "<=", 0.05)))
    run_offline_part(app, ex, harmful_rate=0.02)
    app.scheduler.tick()
    assert ex.live() == []  # no reward, cost or ppo_lag attempt was ever submitted
    assert ex.submitted == ["j-1/r1/sft/1", "j-1/r1/safe_dpo/1", "j-1/r1/evaluate_safe_dpo/1"]
    assert {k: v for k, v in states(app).items() if k in BRANCH} == dict.fromkeys(BRANCH,
                                                                                  "SKIPPED")
    gates = {g.id: g for g in app.store.list_gates("j-1")}
    assert gates[SCREEN.id].state == GateState.PASSED and gates[SCREEN.id].observed == 0.02
    assert gates["r1/evaluate/0"].state == GateState.PASSED  # nothing ran to compare
    job = app.store.get_job("j-1")
    assert job.state == JobState.SUCCEEDED
    assert job.conditions["Escalation"].startswith("not needed: eval/harmful_rate = 0.02 <= 0.05")
    # every skip is a stored transition saying why
    why = [t for _, t in app.store.transitions("j-1") if t.subject == "r1/ppo_lag"
           and t.to_state == "SKIPPED"]
    assert why and why[0].reason == "NotNeeded" and SCREEN.id in why[0].message


def test_the_branch_runs_from_the_offline_policy_when_the_gate_is_missed(tmp_path: Path):
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path, pipeline=ESCALATION, gates=(SCREEN,))
    run_offline_part(app, ex, harmful_rate=0.31)
    gate = app.store.list_gates("j-1")[0]
    assert gate.state == GateState.ESCALATED and gate.observed == 0.31
    job = app.store.get_job("j-1")
    assert job.state == JobState.RUNNING  # a missed escalate gate is not a failure
    assert job.conditions["Escalation"].startswith(
        "escalated: eval/harmful_rate = 0.31, expected <= 0.05")
    assert sorted(ex.live()) == ["r1/cost", "r1/reward"]  # RM ∥ CM, after the decision
    succeed(app, ex, "r1/reward", "r1/cost")
    assert ex.live() == ["r1/ppo_lag"]
    succeed(app, ex, "r1/ppo_lag")
    succeed(app, ex, "r1/evaluate")
    app.scheduler.tick()
    assert app.store.get_job("j-1").state == JobState.SUCCEEDED
    assert set(states(app).values()) == {"SUCCEEDED"}
    transitions = [(t.subject, t.to_state, t.reason) for _, t in app.store.transitions("j-1")]
    assert ("gate:" + SCREEN.id, "ESCALATED", "GateEscalated") in transitions


def test_an_evaluation_that_does_not_report_the_metric_fails_the_job_instead_of_guessing(
        tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, pipeline=ESCALATION, gates=(
        Gate(SCREEN.id, "", SCREEN.after_stage, "eval/never_reported", "<=", 0.05, "escalate"),))
    run_offline_part(app, ex, harmful_rate=0.01)  # reports eval/harmful_rate only
    app.scheduler.tick()
    job = app.store.get_job("j-1")
    assert job.state == JobState.FAILED and "did not report eval/never_reported" in job.message
    assert job.conditions["Escalation"].startswith("undecided")
    assert app.store.list_gates("j-1")[0].state == GateState.FAILED
    assert ex.live() == []


def test_not_needed_follows_dependencies_through_the_branch_only():
    def stage(sid: str, deps: tuple[str, ...], state=AttemptState.PENDING) -> Stage:
        return Stage(id=sid, job_id="j", round=1, kind="x", depends_on=deps, state=state)

    done = AttemptState.SUCCEEDED
    stages = [stage(sid, deps, done if sid in ("r1/sft", "r1/safe_dpo", "r1/evaluate_safe_dpo")
                    else AttemptState.PENDING) for sid, _, deps in ESCALATION]
    passed = Gate(SCREEN.id, "j", SCREEN.after_stage, "m", "<=", 1.0, "escalate",
                  GateState.PASSED)
    assert sorted(s.id for s, _ in not_needed(stages, [passed])) == sorted(BRANCH)
    for state in (GateState.PENDING, GateState.ESCALATED):
        assert not_needed(stages, [Gate(**{**passed.__dict__, "state": state})]) == []
    # an ordinary gate that passed decides nothing
    assert not_needed(stages, [Gate(**{**passed.__dict__, "on_fail": "fail"})]) == []


def test_the_api_and_the_cli_show_an_escalated_gate_and_the_jobs_reason(tmp_path: Path):
    from saferlhf.service.api.convert import gate_to_proto, job_to_proto
    from saferlhf.service.cli import render
    from saferlhf.v1 import resources_pb2 as pb

    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path, pipeline=ESCALATION, gates=(SCREEN,))
    run_offline_part(app, ex, harmful_rate=0.31)
    gate = gate_to_proto(app.store.list_gates("j-1")[0])
    assert gate.state == pb.GATE_STATE_ESCALATED and gate.on_fail == "escalate"
    assert "ESCALATED" in render.gates_block([gate])
    job = job_to_proto(app.store.get_job("j-1"))
    lines = render.condition_lines(job.conditions)
    assert lines == [f"! Escalation: {job.conditions['Escalation']}"]
    assert "r1/ppo_lag" in lines[0]  # names the stages that now run
