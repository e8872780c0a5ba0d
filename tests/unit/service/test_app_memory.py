"""CreateJob runs the memory planner: a spec that cannot fit its GPUs is refused before anything
is stored (with validate_only too), and one that fits is created as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from saferlhf.service.errors import SpecError

from tests.unit.service.planning.model_configs import LLAMA2_70B, LLAMA_7B, write_model_folder
from tests.unit.service.scheduler.helpers import make_app
from tests.unit.service.spec.specs import spec_dict, to_yaml


def _spec(model: Path, gpu_memory: str) -> str:
    return to_yaml(spec_dict(
        model={"path": str(model)},
        defaults={"resources": {"nproc_per_node": 8, "gpus_per_node": 8,
                                "gpu_memory": gpu_memory},
                  "deepspeed": {"zero_stage": 3, "precision": "bf16"},
                  "backend": {"gradient_checkpointing": True}}))


@pytest.mark.parametrize("validate_only", [True, False])
def test_create_job_refuses_a_70b_job_on_8_gpus_of_24gb_and_stores_nothing(
        tmp_path: Path, validate_only: bool) -> None:
    app, _, _ = make_app(tmp_path)
    model = write_model_folder(tmp_path / "artifacts" / "models" / "llama-2-70b", LLAMA2_70B)
    with pytest.raises(SpecError) as info:
        app.create_job(_spec(model, "24Gi"), project=None, request_id="r",
                       validate_only=validate_only)
    violation = next(v for v in info.value.violations if v.field == "spec.stages.ppo_lag")
    assert "does not fit: the ppo_lag stage needs about" in violation.description
    assert "24.0 GiB (resources.gpu_memory)" in violation.description
    assert app.list_jobs(projects=None, filter="", page_size=10, page_token="").jobs == ()


def test_create_job_accepts_a_7b_job_that_fits_8_gpus_of_80gb(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)
    model = write_model_folder(tmp_path / "artifacts" / "models" / "llama-7b", LLAMA_7B)
    job = app.create_job(_spec(model, "80Gi"), project=None, request_id="r",
                         validate_only=False)
    assert job is not None
    stages = app.get_job(job.id).stages
    assert {s.resources["gpu_memory"] for s in stages} == {"80Gi"}  # stored with the stage
