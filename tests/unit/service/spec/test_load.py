"""load_spec: every violation at once, with field paths and YAML lines; never anything but
SpecError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from saferlhf.service.errors import SpecError
from saferlhf.service.spec.load import load_spec
from saferlhf.service.spec.models import JobSpec, UsedStage

from tests.tools import ROOT, require_shared_data
from tests.unit.service.spec.specs import spec_dict, to_yaml


def line_no(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle` (so tests don't hand-count lines)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def violations(text: str, **kwargs: object) -> dict[str, tuple[str, int | None]]:
    with pytest.raises(SpecError) as info:
        load_spec(text, **kwargs)  # type: ignore[arg-type]
    return {v.field: (v.description, v.line) for v in info.value.violations}


BROKEN = textwrap.dedent("""\
    apiVersion: saferlhf.dev/v1alpha1
    kind: SafeRLHFJob
    metadata: {name: Beaver_Tiny, project: safety-team}
    spec:
      executor: local
      model: {path: builtin:tiny-gpt2}
      stages:
        sft: {data: [{format: synthetic, split: sft}], epochs: 0}
        reward: {data: [{format: synthetic, split: preference}], loss: pairwise}
        cost: {data: [{format: synthetic, split: safety_preference}]}
        ppo_lag:
          prompts: [{format: synthetic, split: prompts}]
          safety_budget: {max_harmful_rate: 0.02}
          lambda_lr: -1
          lamda_max: 5
        eval: {prompts: [{format: synthetic, split: eval}]}
      gates:
        - {after: eval, metric: eval/harmful_rate, op: "=<", value: 0.1}
      retries: {max_attempts: 0}
    """)


def test_a_valid_spec_loads_into_a_job_spec_with_its_metadata() -> None:
    job = load_spec(to_yaml(spec_dict()))
    assert isinstance(job, JobSpec)
    assert (job.metadata.name, job.metadata.project) == ("beaver-tiny", "safety-team")
    assert job.metadata.labels == {"purpose": "test"}
    assert job.spec.stages.ppo_lag.safety_budget.max_harmful_rate == 0.02


def test_every_violation_is_reported_at_once_with_its_path_and_line() -> None:
    found = violations(BROKEN)
    expected = {
        "metadata.name": "name: Beaver_Tiny",
        "spec.stages.sft.epochs": "epochs: 0",
        "spec.stages.reward.loss": "loss: pairwise",
        "spec.stages.ppo_lag.lambda_lr": "lambda_lr: -1",
        "spec.stages.ppo_lag.lamda_max": "lamda_max: 5",
        "spec.gates[0].op": '"=<"',
        "spec.retries.max_attempts": "max_attempts: 0",
    }
    assert set(found) == set(expected)
    for field, needle in expected.items():
        assert found[field][1] == line_no(BROKEN, needle), field
    assert "got -1" in found["spec.stages.ppo_lag.lambda_lr"][0]
    assert "greater than 0" in found["spec.stages.ppo_lag.lambda_lr"][0]


def test_a_misspelt_field_gets_a_did_you_mean_suggestion() -> None:
    found = violations(BROKEN)
    assert "did you mean 'lambda_max'?" in found["spec.stages.ppo_lag.lamda_max"][0]


def test_the_error_message_lists_every_violation_with_its_line() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(BROKEN)
    message = str(info.value)
    assert "spec.stages.ppo_lag.lambda_lr" in message
    assert f"(line {line_no(BROKEN, 'lambda_lr')})" in message


def test_a_yaml_syntax_error_names_its_line() -> None:
    text = "apiVersion: saferlhf.dev/v1alpha1\nkind: SafeRLHFJob\nspec: {model: [unclosed\n"
    found = violations(text)
    assert list(found) == ["<document>"]
    description, line = found["<document>"]
    assert "invalid YAML" in description
    assert line is not None and line >= 3


@pytest.mark.parametrize("text", ["", "- a list\n- not a job\n", "just a string", "42"])
def test_a_document_that_is_not_a_mapping_is_one_clear_error(text: str) -> None:
    found = violations(text)
    assert list(found) == ["<document>"]


def test_a_duplicate_key_is_reported_instead_of_silently_overwritten() -> None:
    text = to_yaml(spec_dict()).replace("  seed: 7\n", "  seed: 7\n  seed: 8\n")
    found = violations(text)
    assert "duplicate key" in found["spec.seed"][0]
    assert found["spec.seed"][1] == line_no(text, "seed: 8")


def test_a_wrong_api_version_or_kind_says_what_is_expected() -> None:
    doc = spec_dict()
    doc["apiVersion"], doc["kind"] = "saferlhf.dev/v2", "TrainingJob"
    found = violations(to_yaml(doc))
    assert "saferlhf.dev/v1alpha1" in found["apiVersion"][0]
    assert "SafeRLHFJob" in found["kind"][0]


def test_a_missing_required_stage_is_reported_at_its_parent_line() -> None:
    doc = spec_dict()
    del doc["spec"]["stages"]["cost"]
    text = to_yaml(doc)
    description, line = violations(text)["spec.stages.cost"]
    assert description.startswith("required field is missing") and line == line_no(text, "stages:")
    assert "reward, cost and ppo_lag together" in description  # the chain needs all three


def test_threshold_and_safety_budget_together_are_one_error_naming_both() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["ppo_lag"]["threshold"] = 0.0
    doc["spec"]["stages"]["ppo_lag"]["lambda_lr"] = -1  # another error in the same stage
    found = violations(to_yaml(doc))
    description, _ = found["spec.stages.ppo_lag.safety_budget"]
    assert "threshold" in description and "safety_budget" in description
    assert "spec.stages.ppo_lag.lambda_lr" in found
    assert not any(f == "spec.stages.ppo_lag" for f in found)  # not reported twice


def test_neither_threshold_nor_safety_budget_is_an_error_naming_both() -> None:
    doc = spec_dict()
    del doc["spec"]["stages"]["ppo_lag"]["safety_budget"]
    found = violations(to_yaml(doc))
    description, _ = found["spec.stages.ppo_lag"]
    assert "threshold" in description and "safety_budget" in description


def test_plain_ppo_needs_neither_threshold_nor_budget() -> None:
    doc = spec_dict()
    ppo = doc["spec"]["stages"]["ppo_lag"]
    del ppo["safety_budget"]
    ppo["algorithm"] = "ppo"
    assert load_spec(to_yaml(doc)).spec.stages.ppo_lag.algorithm == "ppo"


def test_a_hub_dataset_without_network_is_an_error_naming_the_field() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["cost"]["data"] = [
        {"format": "pku_saferlhf", "hub": "PKU-Alignment/PKU-SafeRLHF", "revision": "abc123"}]
    found = violations(to_yaml(doc))
    assert "no hub access" in found["spec.stages.cost.data[0].hub"][0]
    assert load_spec(to_yaml(doc), allow_hub=True).spec.stages.cost.data[0].hub


def test_a_hub_model_without_network_is_an_error_naming_the_field() -> None:
    doc = spec_dict(model={"path": "openai-community/gpt2", "revision": "607a30d"})
    found = violations(to_yaml(doc))
    assert "no hub access" in found["spec.model.path"][0]


def test_an_unknown_builtin_model_is_rejected() -> None:
    found = violations(to_yaml(spec_dict(model={"path": "builtin:gpt-5"})))
    assert "builtin:tiny-gpt2" in found["spec.model.path"][0]


def test_a_used_stage_may_carry_only_overrides() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["sft"] = {"use": "models/sft", "epochs": 3}
    found = violations(to_yaml(doc), check_data=False)
    assert "`use:`" in found["spec.stages.sft.epochs"][0]


def test_a_used_stage_parses_as_skipped(tmp_path) -> None:
    (tmp_path / "sft-model").mkdir()
    doc = spec_dict()
    doc["spec"]["stages"]["sft"] = {"use": "sft-model", "resources": {"cpu": 1}}
    job = load_spec(to_yaml(doc), source_dir=str(tmp_path))
    assert isinstance(job.spec.stages.sft, UsedStage)
    assert job.spec.stages.sft.use == str((tmp_path / "sft-model").resolve())


def test_a_used_folder_that_does_not_exist_is_an_error_when_local(tmp_path) -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["sft"] = {"use": "missing-model"}
    found = violations(to_yaml(doc), source_dir=str(tmp_path))
    assert "no such folder" in found["spec.stages.sft.use"][0]


def test_numbers_for_kubernetes_quantities_are_read_as_strings() -> None:
    doc = spec_dict(defaults={"resources": {"cpu": 4, "memory": "16Gi"}})
    assert load_spec(to_yaml(doc)).spec.defaults.resources.cpu == "4"


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"kubernetes": {"image": "repo/img:1; rm -rf /"}}, "spec.kubernetes.image"),
        ({"kubernetes": {"namespace": "Team_A"}}, "spec.kubernetes.namespace"),
        ({"kubernetes": {"node_selector": {"gpu type": "a100"}}}, "spec.kubernetes.node_selector"),
        ({"kubernetes": {"queue": "$(whoami)"}}, "spec.kubernetes.queue"),
        ({"kubernetes": {"image_pull_secrets": ["a b"]}}, "spec.kubernetes.image_pull_secrets[0]"),
        ({"defaults": {"resources": {"memory": "8 GB"}}}, "spec.defaults.resources.memory"),
        ({"artifacts": {"uri": "ftp://host/x"}}, "spec.artifacts.uri"),
        ({"gates": [{"after": "eval", "metric": "x; y", "op": "<", "value": 1}]},
         "spec.gates[0].metric"),
    ],
)
def test_values_that_reach_kubernetes_or_command_lines_are_checked_by_pattern(
    update: dict, field: str
) -> None:
    assert field in violations(to_yaml(spec_dict(**update)))


def test_a_job_name_must_be_a_short_dns_label() -> None:
    doc = spec_dict()
    doc["metadata"]["name"] = "a" * 41
    assert "metadata.name" in violations(to_yaml(doc))


def test_a_gate_after_a_stage_that_does_not_run_is_rejected() -> None:
    doc = spec_dict(gates=[{"after": "collect", "metric": "x/y", "op": "<", "value": 1},
                           {"after": "eval", "metric": "eval/harmful_rate", "op": "<",
                            "value": 1, "rounds": [2]}])
    found = violations(to_yaml(doc))
    assert "spec.gates[0].after" in found
    assert "round 2" in found["spec.gates[1].rounds"][0]


def test_the_local_executor_refuses_several_nodes() -> None:
    found = violations(to_yaml(spec_dict(defaults={"resources": {"nodes": 2}})))
    assert "kubernetes" in found["spec.defaults.resources.nodes"][0]


def test_oracle_labels_need_synthetic_prompts() -> None:
    doc = spec_dict(rounds={"count": 2, "collect": {"labeler": "oracle", "prompts": [
        {"format": "jsonl", "kind": "prompt_only", "path": "prompts.jsonl"}]}})
    found = violations(to_yaml(doc), check_data=False)
    assert "labeler: import" in found["spec.rounds.collect.labeler"][0]


def test_deepspeed_shortcut_conflicting_with_a_plain_backend_is_rejected() -> None:
    doc = spec_dict(defaults={"backend": {"kind": "plain"}, "deepspeed": {"zero_stage": 3}})
    assert "spec.defaults.deepspeed" in violations(to_yaml(doc))


def test_bf16_precision_is_the_plain_backends_and_points_deepspeed_users_to_theirs() -> None:
    assert load_spec(to_yaml(spec_dict(defaults={"backend": {"precision": "bf16"}})))
    doc = spec_dict(defaults={"backend": {"precision": "bf16"}, "deepspeed": {"zero_stage": 2}})
    description, _ = violations(to_yaml(doc))["spec.defaults.backend.precision"]
    assert "deepspeed.precision" in description


def test_a_dumped_spec_loads_back_to_the_same_spec() -> None:
    job = load_spec(to_yaml(spec_dict()))
    again = load_spec(yaml.safe_dump(job.model_dump(mode="json")))
    assert again == job


def test_loading_a_spec_never_imports_torch() -> None:
    code = ("import sys; from saferlhf.service.spec.load import load_spec; "
            "from saferlhf.service.planning.plan import plan_job; "
            "from saferlhf.service.spec.schema import json_schema; json_schema(); "
            "job = load_spec(open('examples/quickstart.yaml').read(), source_dir='examples'); "
            "plan_job(job, job_id='j', artifacts_root='/tmp/a'); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_pattern_error_says_in_words_what_is_expected() -> None:
    found = violations(BROKEN)
    description = found["metadata.name"][0]
    assert "DNS-1123 label" in description and "got 'Beaver_Tiny'" in description


def test_bad_rows_in_a_data_file_are_reported_with_file_row_and_field(tmp_path) -> None:
    source = require_shared_data("pku_saferlhf/pku_saferlhf_alpaca7b_test_first16.jsonl")
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    broken = dict(rows[0])
    del broken["prompt"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in (rows[1], broken)) + "\n")
    doc = spec_dict()
    doc["spec"]["stages"]["cost"]["data"] = [{"format": "pku_saferlhf", "path": "bad.jsonl"}]
    text = to_yaml(doc)
    found = violations(text, source_dir=str(tmp_path))
    description, line = found["spec.stages.cost.data[0].path"]
    assert "row 2" in description and "prompt" in description
    assert line == line_no(text, "bad.jsonl")
    doc["spec"]["stages"]["cost"]["data"] = [{"format": "pku_saferlhf", "path": str(source)}]
    assert load_spec(to_yaml(doc)).spec.stages.cost.data[0].path == str(source.resolve())


def test_the_doc_holds_the_current_generated_field_reference() -> None:
    from saferlhf.service.spec.docgen import reference

    doc = (ROOT / "docs" / "job_spec.md").read_text()
    assert reference() in doc, (
        "regenerate: python -m saferlhf.service.spec.docgen (see docs/job_spec.md)")


def test_a_synthetic_split_that_gives_the_wrong_records_is_reported() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["reward"]["data"] = [{"format": "synthetic", "split": "sft"}]
    doc["spec"]["stages"]["eval"]["prompts"] = [{"format": "synthetic", "split": "evil"}]
    found = violations(to_yaml(doc))
    assert "use split preference" in found["spec.stages.reward.data[0].split"][0]
    assert "unknown synthetic split" in found["spec.stages.eval.prompts[0].split"][0]


def test_eval_and_collect_cannot_be_skipped_with_use() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["eval"] = {"use": "somewhere"}
    found = violations(to_yaml(doc), check_data=False)
    assert "unknown field 'use'" in found["spec.stages.eval.use"][0]


def test_an_unreadable_spec_file_is_a_spec_error(tmp_path) -> None:
    from saferlhf.service.spec.load import load_spec_file

    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "absent.yaml")


def test_tolerations_follow_kubernetes_operator_rules() -> None:
    doc = spec_dict(kubernetes={"tolerations": [{"key": "gpu", "operator": "Exists", "value": "x"},
                                                {"operator": "Equal", "value": "y"}]})
    found = violations(to_yaml(doc))
    assert "takes no `value`" in found["spec.kubernetes.tolerations[0]"][0]
    assert "needs a `key`" in found["spec.kubernetes.tolerations[1]"][0]


def test_a_misspelt_gate_metric_is_caught_at_submit_time() -> None:
    doc = spec_dict(gates=[
        {"after": "eval", "metric": "eval/harmfull_rate", "op": "<=", "value": 0.1},
        {"after": "eval", "metric": "eval/harmful_rate/keyword", "op": "<=", "value": 0.1},
    ])
    found = violations(to_yaml(doc))
    assert "did you mean 'eval/harmful_rate'" in found["spec.gates[0].metric"][0]
    assert "spec.gates[1].metric" not in found  # a per-judge key is not a typo


def test_lora_settings_are_validated_with_field_paths() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["sft"]["lora"] = {"r": 0, "rank": 4}
    found = violations(to_yaml(doc))
    assert "greater than 0" in found["spec.stages.sft.lora.r"][0]
    assert "spec.stages.sft.lora.rank" in found


def test_a_lora_target_a_builtin_model_lacks_is_rejected_at_submit_time() -> None:
    doc = spec_dict()
    stages = doc["spec"]["stages"]
    stages["ppo_lag"]["lora"] = {"target_modules": ["c_attn", "q_proj"], "save_merged": True}
    stages["ppo_lag"]["critic_lora"] = {"target_modules": ["c_fc"]}
    text = to_yaml(doc)
    found = violations(text)
    description, line = found["spec.stages.ppo_lag.lora.target_modules[1]"]
    assert "'q_proj'" in description and "c_attn, c_proj, c_fc" in description
    assert line == line_no(text, "q_proj")
    assert list(found) == ["spec.stages.ppo_lag.lora.target_modules[1]"]
    stages["ppo_lag"]["lora"] = {"target_modules": ["c_attn"], "save_merged": True}
    assert load_spec(to_yaml(doc)).spec.stages.ppo_lag.lora.save_merged


def _with_judges(judges: list, **eval_fields: object) -> str:
    doc = spec_dict()
    doc["spec"]["stages"]["eval"].update({"judges": judges, **eval_fields})
    return to_yaml(doc)


def test_judge_entries_are_typed_by_kind_and_errors_name_the_judge_field() -> None:
    text = _with_judges(["keyword", {"kind": "llm", "name": "gpt", "model": "m",
                                     "base_url": "ftp://x", "max_concurrency": 0},
                         {"kind": "classifier", "path": "/models/cls", "format": "regex"}])
    found = violations(text)
    assert "spec.stages.eval.judges[1].base_url" in found
    assert "spec.stages.eval.judges[1].max_concurrency" in found
    assert "spec.stages.eval.judges[2].format" in found
    assert found["spec.stages.eval.judges[1].base_url"][1] == line_no(text, "ftp://x")
    job = load_spec(_with_judges(["keyword", {"kind": "llm", "name": "gpt", "model": "m",
                                              "base_url": "http://vllm:8000/v1"}]))
    assert [(j.name, j.kind) for j in job.spec.stages.eval.judges] == [("keyword", "keyword"),
                                                                        ("gpt", "llm")]


def test_an_api_key_typed_into_the_spec_is_refused_without_echoing_it() -> None:
    secret = "sk-live-THIS-MUST-NOT-BE-ECHOED"
    with pytest.raises(SpecError) as info:
        load_spec(_with_judges([{"kind": "llm", "name": "gpt", "model": "m",
                                 "base_url": "http://h/v1", "api_key": secret}]))
    text = str(info.value) + repr(info.value.violations)
    assert "never the key itself" in text and "spec.stages.eval.judges[0]" in text
    assert secret not in text


def test_duplicate_judge_names_are_rejected() -> None:
    found = violations(_with_judges(["keyword", {"kind": "keyword"}]))
    assert any("unique" in d for d, _ in found.values())


def test_the_worsened_flag_is_a_known_gate_metric() -> None:
    doc = spec_dict(gates=[{"after": "eval", "metric": "eval/worsned", "op": "==", "value": 0},
                           {"after": "eval", "metric": "eval/worsened", "op": "==", "value": 0,
                            "on_fail": "pause"}])
    found = violations(to_yaml(doc))
    assert "did you mean 'eval/worsened'" in found["spec.gates[0].metric"][0]
    assert "spec.gates[1].metric" not in found


def test_a_classifier_judge_folder_must_exist_for_the_local_executor(tmp_path) -> None:
    text = _with_judges(["keyword", {"kind": "classifier", "path": "no-such-model"}])
    found = violations(text, source_dir=str(tmp_path))
    description, line = found["spec.stages.eval.judges[1].path"]
    assert "config.json" in description and line == line_no(text, "no-such-model")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "config.json").write_text("{}")
    job = load_spec(_with_judges([{"kind": "classifier", "path": "cls"}]),
                    source_dir=str(tmp_path))
    assert job.spec.stages.eval.judges[0].path == str(tmp_path / "cls")  # made absolute
