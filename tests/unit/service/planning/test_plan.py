"""plan_job: DAG shapes per round, `use:`, gates, seeds, resources, and stage.json contents that
the runners' own loader accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from saferlhf.runners.common.config import parse_stage_config
from saferlhf.service.planning.plan import Plan, derive_seed, plan_job
from saferlhf.service.spec.load import load_spec
from saferlhf.service.state.types import Resources

from tests.unit.service.spec.specs import spec_dict, to_yaml

ART = "/srv/artifacts"


def _plan(doc: dict, **load_kwargs: object) -> Plan:
    job = load_spec(to_yaml(doc), **load_kwargs)  # type: ignore[arg-type]
    return plan_job(job, job_id="j-1", artifacts_root=ART)


def _rounds(count: int, **collect: object) -> dict:
    return spec_dict(rounds={"count": count, "collect": collect})


def test_one_round_is_sft_then_reward_and_cost_in_parallel_then_ppo_lag_then_eval() -> None:
    plan = _plan(spec_dict())
    deps = {s.id: set(s.depends_on) for s in plan.stages}
    assert deps == {
        "r1/sft": set(),
        "r1/reward": {"r1/sft"},
        "r1/cost": {"r1/sft"},
        "r1/ppo_lag": {"r1/sft", "r1/reward", "r1/cost"},
        "r1/evaluate": {"r1/sft", "r1/ppo_lag", "r1/reward", "r1/cost"},
    }
    assert [s.id for s in plan.stages][0] == "r1/sft"
    assert [s.id for s in plan.stages][-1] == "r1/evaluate"


def test_stages_are_listed_in_dependency_order() -> None:
    plan = _plan(_rounds(3))
    seen: set[str] = set()
    for stage in plan.stages:
        assert set(stage.depends_on) <= seen, stage.id
        seen.add(stage.id)


def test_three_rounds_add_collect_and_chain_the_policies() -> None:
    plan = _plan(_rounds(3))
    ids = [s.id for s in plan.stages]
    assert len(ids) == 5 + 2 * 5
    for r in (2, 3):
        assert f"r{r}/collect" in ids and f"r{r}/sft" not in ids
    sft_model = f"{ART}/safety-team/j-1/r1/sft/model"
    for r in (1, 2, 3):
        ppo = plan.stage(f"r{r}/ppo_lag").config
        previous = sft_model if r == 1 else f"{ART}/safety-team/j-1/r{r - 1}/ppo_lag/model"
        assert ppo["actor_path"] == previous
        assert ppo["reference_path"] == sft_model  # always the initial actor
        assert ppo["reward_model_path"] == f"{ART}/safety-team/j-1/r{r}/reward/model"
        assert ppo["cost_model_path"] == f"{ART}/safety-team/j-1/r{r}/cost/model"
    collect = plan.stage("r3/collect")
    assert collect.config["policy_path"] == f"{ART}/safety-team/j-1/r2/ppo_lag/model"
    assert collect.depends_on == ("r2/ppo_lag",)


def test_later_rounds_retrain_on_base_data_plus_every_collected_set_from_the_sft_model() -> None:
    plan = _plan(_rounds(3))
    for kind in ("reward", "cost"):
        config = plan.stage(f"r3/{kind}").config
        paths = [d["path"] for d in config["data"] if d["path"]]
        assert paths == [f"{ART}/safety-team/j-1/r2/collect/labelled.jsonl",
                         f"{ART}/safety-team/j-1/r3/collect/labelled.jsonl"]
        assert config["data"][0]["format"] == "synthetic"
        assert config["policy_path"] == f"{ART}/safety-team/j-1/r1/sft/model"
        assert {"r2/collect", "r3/collect"} <= set(plan.stage(f"r3/{kind}").depends_on)


def test_eval_compares_sft_as_round_0_with_every_round_so_far() -> None:
    plan = _plan(_rounds(3))
    for r in (1, 2, 3):
        policies = plan.stage(f"r{r}/evaluate").config["policies"]
        assert [p["name"] for p in policies] == ["sft"] + [f"round-{i}" for i in range(1, r + 1)]
        assert [p["round"] for p in policies] == list(range(r + 1))


def test_every_rendered_stage_json_parses_with_the_runners_loader() -> None:
    plan = _plan(_rounds(3, labeler="import"))
    for stage in plan.stages:
        config = parse_stage_config(stage.config)
        assert config.kind == stage.kind
        assert config.output_dir == stage.output_dir
        assert config.round == stage.round
        assert config.job == "beaver-tiny"


def test_import_labelling_points_the_collect_stage_at_the_imported_labels_file() -> None:
    plan = _plan(_rounds(2, labeler="import"))
    config = plan.stage("r2/collect").config
    assert config["labeler"] == "import"
    assert config["labels_path"] == f"{ART}/safety-team/j-1/r2/collect/imported_labels.jsonl"


def test_collect_settings_come_from_rounds_and_the_collect_stage() -> None:
    doc = spec_dict(rounds={"count": 2, "collect": {"samples_per_prompt": 4, "label_noise": 0.1}})
    doc["spec"]["stages"]["collect"] = {"max_new_tokens": 24, "resources": {"cpu": "1"}}
    stage = _plan(doc).stage("r2/collect")
    assert (stage.config["samples_per_prompt"], stage.config["label_noise"]) == (4, 0.1)
    assert stage.config["max_new_tokens"] == 24
    assert stage.config["prompts"][0]["split"] == "prompts"  # default: the ppo_lag prompts
    assert stage.resources.cpu == "1"


def test_a_used_sft_model_is_skipped_and_stands_in_for_its_output(tmp_path: Path) -> None:
    (tmp_path / "my-sft").mkdir()
    doc = _rounds(2)
    doc["spec"]["stages"]["sft"] = {"use": "my-sft"}
    plan = _plan(doc, source_dir=str(tmp_path))
    sft = plan.stage("r1/sft")
    used = str((tmp_path / "my-sft").resolve())
    assert sft.skipped_with == used and sft.config == {}
    assert plan.stage("r1/reward").config["policy_path"] == used
    assert plan.stage("r2/ppo_lag").config["reference_path"] == used
    assert plan.stage("r1/evaluate").config["policies"][0]["path"] == used


def test_a_used_reward_model_skips_round_one_and_round_two_retrains_on_collected_data(
    tmp_path: Path,
) -> None:
    (tmp_path / "rm").mkdir()
    doc = _rounds(2)
    doc["spec"]["stages"]["reward"] = {"use": "rm"}
    plan = _plan(doc, source_dir=str(tmp_path))
    assert plan.stage("r1/reward").skipped_with == str((tmp_path / "rm").resolve())
    assert plan.stage("r1/ppo_lag").config["reward_model_path"] == str((tmp_path / "rm").resolve())
    r2 = plan.stage("r2/reward")
    assert r2.skipped_with is None
    assert [d["path"] for d in r2.config["data"]] == [
        f"{ART}/safety-team/j-1/r2/collect/labelled.jsonl"]


def test_gates_attach_after_their_stage_in_every_round_or_the_rounds_named() -> None:
    doc = _rounds(3)
    doc["spec"]["gates"] = [
        {"after": "cost", "metric": "eval/accuracy_sign", "op": ">=", "value": 0.75},
        {"after": "eval", "metric": "eval/harmful_rate", "op": "<=", "value": 0.1,
         "on_fail": "pause", "rounds": [3]},
    ]
    gates = {g.id: g for g in _plan(doc).gates}
    assert set(gates) == {"r1/cost/0", "r2/cost/0", "r3/cost/0", "r3/evaluate/1"}
    assert gates["r3/evaluate/1"].after_stage == "r3/evaluate"
    assert (gates["r3/evaluate/1"].on_fail, gates["r3/evaluate/1"].op) == ("pause", "<=")
    assert gates["r2/cost/0"].value == 0.75


def test_seeds_are_deterministic_distinct_per_stage_and_follow_the_spec_seed() -> None:
    first, again = _plan(_rounds(2)), _plan(_rounds(2))
    seeds = {s.id: s.config["seed"] for s in first.stages}
    assert seeds == {s.id: s.config["seed"] for s in again.stages}
    assert len(set(seeds.values())) == len(seeds)
    assert seeds["r1/sft"] == derive_seed(7, "r1/sft")
    other = spec_dict(rounds={"count": 2}, seed=8)
    assert _plan(other).stage("r1/sft").config["seed"] != seeds["r1/sft"]


def test_resources_merge_per_field_and_become_the_distributed_layout() -> None:
    doc = spec_dict(executor="kubernetes",
                    defaults={"resources": {"nodes": 2, "nproc_per_node": 8, "gpus_per_node": 8,
                                            "memory": "512Gi"},
                              "deepspeed": {"zero_stage": 3, "precision": "bf16"}})
    doc["spec"]["stages"]["eval"]["resources"] = {"nodes": 1}
    doc["spec"]["stages"]["eval"]["backend"] = {"kind": "plain"}
    plan = _plan(doc)
    ppo = plan.stage("r1/ppo_lag")
    assert ppo.resources == Resources(nodes=2, nproc_per_node=8, gpus_per_node=8, cpu="2",
                                      memory="512Gi", shm_size="1Gi")
    assert ppo.config["distributed"] == {"nnodes": 2, "nproc_per_node": 8}
    assert ppo.config["backend"]["kind"] == "deepspeed"
    assert ppo.config["backend"]["deepspeed"]["zero_stage"] == 3
    evaluate = plan.stage("r1/evaluate")
    assert (evaluate.resources.nodes, evaluate.resources.gpus_per_node) == (1, 8)
    assert evaluate.config["distributed"]["nnodes"] == 1
    assert evaluate.config["backend"]["kind"] == "plain"


def test_retries_and_timeouts_come_from_the_stage_or_the_job() -> None:
    doc = spec_dict(retries={"max_attempts": 5, "backoff_seconds": 10},
                    defaults={"stall_minutes": 12})
    doc["spec"]["stages"]["ppo_lag"]["retries"] = {"max_attempts": 1}
    doc["spec"]["stages"]["ppo_lag"]["timeout_minutes"] = 90
    plan = _plan(doc)
    assert plan.stage("r1/sft").retries.max_attempts == 5
    assert plan.stage("r1/sft").retries.backoff_seconds == 10
    assert plan.stage("r1/ppo_lag").retries.max_attempts == 1
    assert plan.stage("r1/ppo_lag").timeout_minutes == 90
    assert plan.stage("r1/sft").timeout_minutes is None
    assert plan.stage("r1/sft").stall_minutes == 12


def test_retry_backoff_doubles_and_is_capped() -> None:
    policy = _plan(spec_dict(retries={"backoff_seconds": 30, "backoff_max_seconds": 100})) \
        .stage("r1/sft").retries
    assert [policy.delay_seconds(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_output_dirs_follow_the_artifacts_uri() -> None:
    plan = plan_job(load_spec(to_yaml(spec_dict(artifacts={"uri": "pvc://shared-claim/teams/a"}))),
                    job_id="j-9", artifacts_root="/mnt/artifacts")
    assert plan.stage("r1/sft").output_dir == "/mnt/artifacts/teams/a/safety-team/j-9/r1/sft"


def test_a_job_without_eval_plans_no_eval_stage() -> None:
    doc = spec_dict(gates=[])
    del doc["spec"]["stages"]["eval"]
    assert "r1/evaluate" not in [s.id for s in _plan(doc).stages]


@pytest.mark.parametrize("count", [1, 3])
def test_plan_is_pure_same_spec_same_plan(count: int) -> None:
    assert _plan(_rounds(count)) == _plan(_rounds(count))
