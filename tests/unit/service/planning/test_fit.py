"""The submit-time memory check: impossible specs are rejected with the stage, the estimate, the
budget and what would fit; the shipped examples are accepted; what is not checked says why."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from saferlhf.runners.common.config import RolloutParams
from saferlhf.service.errors import SpecError
from saferlhf.service.planning.estimate import estimate
from saferlhf.service.planning.fit import memory_plan, memory_violations
from saferlhf.service.planning.workload import Inventory
from saferlhf.service.spec.load import load_spec, load_spec_file

from tests.tools import ROOT
from tests.unit.service.planning.model_configs import LLAMA2_70B, LLAMA_7B, write_model_folder
from tests.unit.service.spec.specs import spec_dict, to_yaml

GiB = 1 << 30
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _spec(model: Path, **resources) -> str:
    return to_yaml(spec_dict(
        model={"path": str(model)},
        defaults={"resources": {"gpus_per_node": 1, "gpu_memory": "80Gi", **resources},
                  "deepspeed": {"zero_stage": 3, "precision": "bf16"}}))


def _load(text: str, root: Path, **kwargs):
    return load_spec(text, allowed_roots=[root], checks=(memory_violations,), **kwargs)


@pytest.fixture
def llama_70b(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path / "llama-2-70b", LLAMA2_70B)


@pytest.fixture
def llama_7b(tmp_path: Path) -> Path:
    return write_model_folder(tmp_path / "llama-7b", LLAMA_7B)


@pytest.fixture
def hub_cache_with_llama_7b(tmp_path: Path, monkeypatch) -> Path:
    """The published LLaMA-7B config.json at gpu_cluster.yaml's pinned revision, in a local HF
    cache (what `huggingface-cli download` leaves behind)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    revision = load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False,
                              allow_hub=True).spec.model.revision
    write_model_folder(tmp_path / "hub" / "models--huggyllama--llama-7b" / "snapshots" /
                       str(revision), LLAMA_7B)
    return tmp_path / "hub"


def test_a_70b_full_fine_tune_on_one_80gb_gpu_is_rejected_naming_stage_estimate_and_fixes(
        llama_70b: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        _load(_spec(llama_70b), tmp_path)
    by_field = {v.field: v for v in info.value.violations}
    assert {"spec.stages.sft", "spec.stages.reward", "spec.stages.cost",
            "spec.stages.ppo_lag", "spec.stages.eval"} <= set(by_field)
    sft = by_field["spec.stages.sft"]
    text = sft.description
    assert text.startswith("does not fit: the sft stage needs about ") and "per GPU" in text
    assert "80.0 GiB (resources.gpu_memory)" in text and "79.0 GiB are usable" in text
    assert "Adam states" in text  # the largest terms are named
    assert "offload: all" in text and "gradient_checkpointing" in text and "LoRA" in text
    assert "nodes × 1 GPU" in text  # how many GPUs it would take
    assert sft.line is not None
    # The estimate is what the plan shows: 69 B parameters of ZeRO-3 model states on one GPU
    # alone are 20 bytes each (≈ 1.3 TiB).
    row = next(r for r in memory_plan(_load_unchecked(_spec(llama_70b), tmp_path))
               if r.stage == "sft")
    assert row.peak_bytes is not None and row.peak_bytes > 20 * 68.9e9


def _load_unchecked(text: str, root: Path):
    return load_spec(text, allowed_roots=[root])


def test_every_suggested_fix_that_claims_to_fit_does_fit(llama_7b: Path, tmp_path: Path) -> None:
    # 7B full fine-tune, DeepSpeed ZeRO-0 bf16 on 8 GPUs of 80 GiB: SFT does not fit; the advice
    # names ZeRO-3, which the plan then accepts.
    text = to_yaml(spec_dict(
        model={"path": str(llama_7b)},
        defaults={"resources": {"nproc_per_node": 8, "gpus_per_node": 8, "gpu_memory": "80Gi"},
                  "deepspeed": {"zero_stage": 0, "precision": "bf16"},
                  "backend": {"gradient_checkpointing": True}}))
    rows = {r.stage: r for r in memory_plan(_load_unchecked(text, tmp_path))}
    assert rows["sft"].status == "does not fit"
    zero3 = next(a for a in rows["sft"].advice if a.startswith("deepspeed: {zero_stage: 3"))
    assert zero3.endswith("(fits)")
    fixed = text.replace("zero_stage: 0", "zero_stage: 3")
    rows = {r.stage: r for r in memory_plan(_load_unchecked(fixed, tmp_path))}
    assert rows["sft"].status in ("fits", "tight")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_passes_the_memory_check(path: Path) -> None:
    load_spec_file(path, check_data=False, allow_hub=True, checks=(memory_violations,))


def test_the_gpu_cluster_example_fits_its_2_nodes_of_8_80gb_gpus_with_the_7b_config(
        hub_cache_with_llama_7b: Path) -> None:
    job = load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False,
                         allow_hub=True, checks=(memory_violations,))
    rows = {r.stage: r for r in memory_plan(job)}
    assert {s: r.status for s, r in rows.items()} == {
        s: "fits" for s in ("sft", "reward", "cost", "ppo_lag", "eval", "collect")}
    assert rows["ppo_lag"].layout == "DeepSpeed ZeRO-3 bf16"
    assert rows["ppo_lag"].devices == "2 × 8 GPUs (16 processes)"
    assert 20 * GiB < (rows["ppo_lag"].peak_bytes or 0) < 79 * GiB


def test_without_gradient_checkpointing_the_gpu_cluster_example_would_not_fit(
        hub_cache_with_llama_7b: Path) -> None:
    text = (ROOT / "examples" / "gpu_cluster.yaml").read_text().replace(
        "backend: {gradient_checkpointing: true}", "backend: {gradient_checkpointing: false}")
    assert "gradient_checkpointing: false" in text
    with pytest.raises(SpecError) as info:
        load_spec(text, check_data=False, allow_hub=True, checks=(memory_violations,),
                  source_dir=str(ROOT / "examples"))
    fields = {v.field for v in info.value.violations}
    assert {"spec.stages.reward", "spec.stages.cost", "spec.stages.ppo_lag"} <= fields


def test_a_hub_model_without_a_local_config_is_unknown_not_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    job = load_spec_file(ROOT / "examples" / "gpu_cluster.yaml", check_data=False,
                         allow_hub=True, checks=(memory_violations,))
    rows = memory_plan(job)
    assert {r.status for r in rows} == {"unknown"}
    assert "not in the local Hugging Face cache" in rows[0].reason


def test_cpu_stages_are_estimated_but_never_checked(llama_70b: Path, tmp_path: Path) -> None:
    job = _load(_spec(llama_70b, gpus_per_node=0), tmp_path)  # no violation
    rows = memory_plan(job)
    assert {r.status for r in rows} == {"cpu"} and all(r.peak_bytes for r in rows)


def test_gpu_stages_without_gpu_memory_are_estimated_and_say_how_to_check(
        llama_70b: Path, tmp_path: Path) -> None:
    text = _spec(llama_70b).replace("gpu_memory: 80Gi", "cpu: '2'")
    rows = memory_plan(_load(text, tmp_path))
    assert {r.status for r in rows} == {"not checked"}
    assert "resources.gpu_memory" in rows[0].reason and rows[0].peak_bytes


def test_a_stage_override_gives_its_own_budget(llama_7b: Path, tmp_path: Path) -> None:
    doc = spec_dict(model={"path": str(llama_7b)},
                    defaults={"resources": {"nproc_per_node": 8, "gpus_per_node": 8,
                                            "gpu_memory": "80Gi"},
                              "deepspeed": {"zero_stage": 3, "precision": "bf16"},
                              "backend": {"gradient_checkpointing": True}})
    doc["spec"]["stages"]["sft"]["resources"] = {"gpu_memory": "16Gi"}
    with pytest.raises(SpecError) as info:
        _load(to_yaml(doc), tmp_path)
    assert [v.field for v in info.value.violations] == ["spec.stages.sft"]
    assert "16.0 GiB (resources.gpu_memory)" in info.value.violations[0].description


def test_processes_sharing_a_gpu_add_up(llama_7b: Path, tmp_path: Path) -> None:
    one = memory_plan(_load_unchecked(_spec(llama_7b, gpu_memory="1000Gi"), tmp_path))
    two = memory_plan(_load_unchecked(_spec(llama_7b, gpu_memory="1000Gi", nproc_per_node=2),
                                      tmp_path))
    sft1, sft2 = one[0], two[0]
    est = sft2.estimate
    assert est is not None and est.processes_per_gpu == 2
    per_process = max(est.phase_bytes(p, None) or 0 for p in est.phases)
    assert sft2.peak_bytes == 2 * per_process
    assert sft2.peak_bytes < 2 * (sft1.peak_bytes or 0)  # ZeRO-3 over 2 ranks halves the states


def _ppo_workload(job, **extra):
    """PPO-Lag's workload with the stage fields other branches add (`lora`, `rollout.engine`),
    set by attribute the way those branches' pydantic fields will appear."""
    stage = job.spec.stages.ppo_lag

    class Stage:
        def __getattr__(self, name):
            return extra[name] if name in extra else getattr(stage, name)

    return Inventory(job)._ppo("ppo_lag", Stage())


def test_lora_trains_only_the_adapters_and_the_reference_is_the_adapterless_base(
        llama_7b: Path, tmp_path: Path) -> None:
    job = _load_unchecked(_spec(llama_7b), tmp_path)
    full = estimate(_ppo_workload(job))
    lora = estimate(_ppo_workload(job, lora=SimpleNamespace(r=16, target_modules=["q_proj",
                                                                                    "v_proj"])))
    assert "reference" in full.params and "reference" not in lora.params
    total, trained = lora.params["actor"]
    assert trained == 16 * (4096 + 4096) * 2 * 32  # r·(in + out) for q and v in 32 layers
    assert total == full.params["actor"][0] + trained
    assert lora.resident_bytes < full.resident_bytes


def test_a_lora_target_that_matches_nothing_is_a_spec_error(llama_7b: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    job = _load_unchecked(_spec(llama_7b, gpu_memory="1000Gi"), tmp_path)  # everything fits
    real = Inventory.workload

    def with_bad_lora(self, name):
        if name != "ppo_lag":
            return real(self, name)
        return _ppo_workload(job, lora=SimpleNamespace(r=8, target_modules=["query"]))

    monkeypatch.setattr(Inventory, "workload", with_bad_lora)
    violations = memory_violations(job, {})
    assert [v.field for v in violations] == ["spec.stages.ppo_lag.lora.target_modules"]
    assert "query" in violations[0].description and "q_proj" in violations[0].description


def test_a_vllm_engine_takes_its_share_of_the_gpu_beside_the_resident_trainer(
        llama_7b: Path, tmp_path: Path) -> None:
    job = _load_unchecked(_spec(llama_7b, gpu_memory="80Gi"), tmp_path)
    rollout = SimpleNamespace(**{**job.spec.stages.ppo_lag.rollout.model_dump(),
                                 "engine": "vllm", "gpu_memory_utilization": 0.5})
    est = estimate(_ppo_workload(job, rollout=rollout))
    phase = next(p for p in est.phases if p.name == "rollout")
    assert phase.parts == () and phase.engine_share == 0.5  # no HF KV cache
    assert est.phase_bytes(phase, 80 * GiB) == est.resident_bytes + 40 * GiB
    assert est.phase_bytes(phase, None) is None  # needs the GPU's size
    default = estimate(_ppo_workload(job, rollout=SimpleNamespace(
        **{**job.spec.stages.ppo_lag.rollout.model_dump(), "engine": "vllm"})))
    share = RolloutParams.model_fields["gpu_memory_utilization"].default  # the spec's default
    assert next(p for p in default.phases if p.name == "rollout").engine_share == share


def test_the_check_reports_a_planner_bug_in_the_log_instead_of_failing_the_submit(
        monkeypatch, caplog) -> None:
    import saferlhf.service.planning.fit as fit

    def broken(job):
        raise RuntimeError("planner bug")

    monkeypatch.setattr(fit, "memory_plan", broken)
    job = load_spec_file(ROOT / "examples" / "quickstart.yaml", checks=(memory_violations,))
    assert job.metadata.name == "quickstart"
    assert "memory planner failed" in caplog.text


def testmicro_batch_one_also_shrinks_generation(llama_7b: Path, tmp_path: Path) -> None:
    from saferlhf.service.planning.advice import micro_batch_one

    work = Inventory(_load_unchecked(_spec(llama_7b), tmp_path)).workload("ppo_lag")
    small = micro_batch_one(work)
    assert work.train_sequences == 16 and work.generation.sequences == 16
    assert small.train_sequences == 1 and small.generation.sequences == 1


def test_a_vllm_share_too_small_for_the_policy_is_a_spec_error_on_the_utilization(
        llama_7b: Path, tmp_path: Path, monkeypatch) -> None:
    job = _load_unchecked(_spec(llama_7b, gpu_memory="1000Gi"), tmp_path)
    rollout = SimpleNamespace(**{**job.spec.stages.ppo_lag.rollout.model_dump(), "engine": "vllm",
                                 "gpu_memory_utilization": 0.01})  # 10 GiB < 12.6 GiB of bf16
    real = Inventory.workload
    monkeypatch.setattr(Inventory, "workload", lambda self, name: _ppo_workload(
        job, rollout=rollout) if name == "ppo_lag" else real(self, name))
    violations = memory_violations(job, {})
    assert [v.field for v in violations] == ["spec.stages.ppo_lag.rollout.gpu_memory_utilization"]
    # 2 bytes × 6.74 B weights + one 1,024-token sequence's KV cache = 14.0 GB of 1,000 GiB
    assert "raise it to at least 0.02" in violations[0].description


def test_a_used_reward_model_is_estimated_when_later_rounds_retrain_it(
        llama_7b: Path, tmp_path: Path) -> None:
    used = write_model_folder(tmp_path / "rm", LLAMA_7B)
    doc = spec_dict(model={"path": str(llama_7b)},
                    defaults={"resources": {"gpus_per_node": 1, "gpu_memory": "80Gi"}},
                    rounds={"count": 2})
    doc["spec"]["stages"]["reward"] = {"use": str(used)}
    stages = [r.stage for r in memory_plan(_load_unchecked(to_yaml(doc), tmp_path))]
    assert "reward" in stages and "collect" in stages
    doc["spec"]["rounds"] = {"count": 1}
    stages = [r.stage for r in memory_plan(_load_unchecked(to_yaml(doc), tmp_path))]
    assert "reward" not in stages and "collect" not in stages
