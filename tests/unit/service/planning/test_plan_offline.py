"""The offline forms of a job spec — safe_dpo (or dpo) instead of the PPO-Lag chain, and cheap-first
escalation — validated with field paths and planned into the DAG the scheduler runs."""

from __future__ import annotations

import copy

import pytest
from saferlhf.runners.common.config import parse_stage_config
from saferlhf.service.errors import SpecError
from saferlhf.service.planning.plan import Plan, plan_job
from saferlhf.service.spec.load import load_spec

from tests.unit.service.spec.specs import BASE, to_yaml

SAFE_DPO = {"data": [{"format": "synthetic", "split": "safety_labelled_preference"}],
            "beta": 0.1, "safety_margin": 2.0, "max_steps": 5}
JUDGES = ["synthetic", "keyword"]


def offline_doc(*, escalation: dict | None = None, chain: bool = False, **stages) -> dict:
    doc = copy.deepcopy(BASE)
    spec = doc["spec"]
    if not chain:
        for name in ("reward", "cost", "ppo_lag"):
            del spec["stages"][name]
    spec["stages"]["safe_dpo"] = copy.deepcopy(SAFE_DPO)
    spec["stages"]["eval"]["judges"] = list(JUDGES)
    spec["stages"].update(copy.deepcopy(stages))
    if escalation is not None:
        spec["escalation"] = escalation
    return doc


def plan(doc: dict) -> Plan:
    return plan_job(load_spec(to_yaml(doc)), job_id="j-1", artifacts_root="/srv/artifacts")


def violations(doc: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(to_yaml(doc))
    return {v.field: v.description for v in info.value.violations}


def test_safe_dpo_instead_of_the_chain_is_sft_then_safe_dpo_then_eval():
    p = plan(offline_doc())
    deps = {s.id: set(s.depends_on) for s in p.stages}
    assert deps == {"r1/sft": set(), "r1/safe_dpo": {"r1/sft"},
                    "r1/evaluate": {"r1/sft", "r1/safe_dpo"}}
    safe_dpo = p.stage("r1/safe_dpo")
    config = parse_stage_config(safe_dpo.config)  # the runner's own loader accepts it
    assert config.kind == "safe_dpo" and config.safety_margin == 2.0
    assert config.policy_path == "/srv/artifacts/safety-team/j-1/r1/sft/model"
    ev = p.stage("r1/evaluate").config
    assert [v["name"] for v in ev["policies"]] == ["sft", "safe_dpo"]
    assert ev["cost_model_path"] is None and ev["reward_model_path"] is None
    assert [g.after_stage for g in p.gates] == ["r1/evaluate"]  # the spec's own gate


def test_the_cost_model_judge_is_left_out_where_no_cost_model_exists():
    doc = offline_doc()
    doc["spec"]["stages"]["eval"]["judges"] = ["cost_model", "keyword"]
    judges = plan(doc).stage("r1/evaluate").config["judges"]
    assert [j["kind"] for j in judges] == ["keyword"]
    doc["spec"]["stages"]["eval"]["judges"] = ["cost_model"]
    assert "does not train" in violations(doc)["spec.stages.eval.judges"]


def test_escalation_screens_the_offline_policy_before_the_ppo_lag_chain():
    p = plan(offline_doc(chain=True, escalation={"metric": "eval/harmful_rate", "op": "<="}))
    deps = {s.id: set(s.depends_on) for s in p.stages}
    screen = "r1/evaluate_safe_dpo"
    assert deps == {
        "r1/sft": set(),
        "r1/safe_dpo": {"r1/sft"},
        screen: {"r1/sft", "r1/safe_dpo"},
        "r1/reward": {"r1/sft", screen},
        "r1/cost": {"r1/sft", screen},
        "r1/ppo_lag": {"r1/safe_dpo", "r1/reward", "r1/cost", screen},
        "r1/evaluate": {"r1/sft", "r1/safe_dpo", "r1/ppo_lag", "r1/reward", "r1/cost"},
    }
    gate = next(g for g in p.gates if g.on_fail == "escalate")
    # the bound defaults to the PPO-Lag safety budget the chain would be held to (2%)
    assert (gate.id, gate.after_stage, gate.metric, gate.op, gate.value) == (
        f"{screen}/escalate", screen, "eval/harmful_rate", "<=", 0.02)
    ppo = p.stage("r1/ppo_lag").config
    safe_dpo_model = "/srv/artifacts/safety-team/j-1/r1/safe_dpo/model"
    assert ppo["actor_path"] == ppo["reference_path"] == safe_dpo_model
    assert p.stage(screen).output_dir.endswith("/r1/evaluate_safe_dpo")
    assert p.stage(screen).config["cost_model_path"] is None
    final = p.stage("r1/evaluate").config
    assert [v["name"] for v in final["policies"]] == ["sft", "safe_dpo", "round-1"]
    assert final["cost_model_path"].endswith("/r1/cost/model")
    # the spec's own `after: eval` gate checks the final evaluation
    assert [g.after_stage for g in p.gates if g.on_fail != "escalate"] == ["r1/evaluate"]


def test_an_explicit_escalation_bound_wins_over_the_budget():
    p = plan(offline_doc(chain=True, escalation={"value": 0.1}))
    assert next(g for g in p.gates if g.on_fail == "escalate").value == 0.1


def test_both_methods_without_escalation_is_an_error_that_says_how_to_fix_it():
    got = violations(offline_doc(chain=True))
    assert "add `spec.escalation`" in got["spec.stages.safe_dpo"]


def test_escalation_needs_the_chain_an_eval_and_a_bound():
    got = violations(offline_doc(escalation={}))
    assert "the PPO-Lag chain to escalate to" in got["spec.escalation"]
    doc = offline_doc(chain=True, escalation={"metric": "eval/helpfulness", "op": ">="})
    assert "set the bound" in violations(doc)["spec.escalation.value"]
    doc = offline_doc(chain=True, escalation={"value": 0.05})
    del doc["spec"]["stages"]["eval"]
    doc["spec"]["gates"] = []
    assert "set spec.stages.eval" in violations(doc)["spec.escalation"]


def test_a_partial_chain_an_empty_method_and_two_offline_stages_are_refused():
    doc = copy.deepcopy(BASE)
    del doc["spec"]["stages"]["cost"]
    assert "required field is missing" in violations(doc)["spec.stages.cost"]
    doc = offline_doc()
    del doc["spec"]["stages"]["safe_dpo"]
    assert "no alignment method" in violations(doc)["spec.stages"]
    doc = offline_doc(dpo={"data": [{"format": "synthetic", "split": "preference"}]})
    assert "not both" in violations(doc)["spec.stages.dpo"]


def test_offline_forms_run_one_round():
    doc = offline_doc()
    doc["spec"]["rounds"] = {"count": 2}
    assert "rounds.count: 1" in violations(doc)["spec.rounds.count"]


def test_a_synthetic_split_of_the_wrong_kind_is_caught_at_submit_time():
    doc = offline_doc()
    doc["spec"]["stages"]["safe_dpo"]["data"] = [{"format": "synthetic", "split": "preference"}]
    got = violations(doc)["spec.stages.safe_dpo.data[0].split"]
    assert "use split safety_labelled_preference" in got


def test_plain_dpo_reads_the_record_kind_its_preference_label_needs():
    doc = offline_doc(dpo={"data": [{"format": "synthetic", "split": "safety_preference"}],
                           "preference": "harmlessness"})
    del doc["spec"]["stages"]["safe_dpo"]
    config = parse_stage_config(plan(doc).stage("r1/dpo").config)
    assert config.kind == "dpo" and config.record_kind == "safety_preference"
    doc["spec"]["stages"]["dpo"]["preference"] = "helpfulness"  # now the split is wrong
    assert "use split preference" in violations(doc)["spec.stages.dpo.data[0].split"]


def test_a_gate_after_a_stage_the_spec_does_not_run_is_refused():
    doc = offline_doc()
    doc["spec"]["gates"] = [{"after": "ppo_lag", "metric": "train/episode_cost", "op": "<=",
                             "value": 0.0}]
    assert "spec.stages.ppo_lag is not set" in violations(doc)["spec.gates[0].after"]


def test_an_existing_offline_model_can_be_screened_with_use():
    doc = offline_doc(chain=True, escalation={"value": 0.05}, safe_dpo={"use": "/srv/m"})
    job = load_spec(to_yaml(doc), check_data=False, allowed_roots=["/srv"])
    p = plan_job(job, job_id="j-1", artifacts_root="/srv/artifacts")
    assert p.stage("r1/safe_dpo").skipped_with == "/srv/m"
    assert p.stage("r1/ppo_lag").config["actor_path"] == "/srv/m"


def test_the_memory_plan_covers_the_offline_stage_as_one_trained_policy():
    from saferlhf.service.planning.fit import memory_plan

    rows = {r.stage: r for r in memory_plan(load_spec(to_yaml(offline_doc())))}
    assert set(rows) == {"sft", "safe_dpo", "eval"}  # no reward, cost or ppo_lag to estimate
    work = rows["safe_dpo"].workload
    assert [(n.label, n.trained) for n in work.networks] == [("policy", True)]  # π_ref is not
    assert work.train_sequences == 2 * 16  # both sides of each pair (batch_size default 16)
    assert [n.label for n in rows["eval"].workload.networks] == ["policy"]  # no RM/CM exists
    escalated = {r.stage for r in memory_plan(load_spec(to_yaml(offline_doc(
        chain=True, escalation={"value": 0.05}))))}
    assert escalated == {"sft", "safe_dpo", "reward", "cost", "ppo_lag", "eval"}
