"""`labeler: import`: a round pauses in AWAITING_LABELS after collect exports its pairs, and
resumes when valid labels are imported; bad labels name their row and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from saferlhf.runners.collect.labels import export_row, write_jsonl
from saferlhf.service.errors import Conflict, SpecError
from saferlhf.service.state.types import JobState

from tests.unit.service.scheduler.helpers import add_job, make_app, succeed

PIPELINE = (
    ("r1/sft", "sft", ()),
    ("r2/collect", "collect", ("r1/sft",)),
    ("r2/reward", "reward", ("r2/collect",)),
)


def labels(*rows: dict) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def label(pair_id: str, **overrides) -> dict:
    return {"id": pair_id, "better_response_id": 0, "safer_response_id": 1,
            "is_response_0_safe": False, "is_response_1_safe": True, **overrides}


def paused_job(tmp_path: Path):
    app, ex, _ = make_app(tmp_path)
    add_job(app, tmp_path, pipeline=PIPELINE)
    collect = app.store.get_stage("j-1", "r2/collect")
    imported = str(Path(collect.output_dir) / "imported_labels.jsonl")
    app.store.update_stage("j-1", "r2/collect", at=1.0, config={
        **collect.config, "labeler": "import", "labels_path": imported})
    app.scheduler.tick()
    succeed(app, ex, "r1/sft")
    write_jsonl([export_row("r2-0", "p0", "a", "b"), export_row("r2-1", "p1", "c", "d")],
                Path(collect.output_dir) / "export.jsonl")
    succeed(app, ex, "r2/collect", result={"awaiting_labels": True, "pairs": 2})
    return app, ex, collect


def test_collect_with_import_pauses_the_job_awaiting_labels(tmp_path: Path) -> None:
    app, ex, collect = paused_job(tmp_path)
    stage_json = json.loads((Path(collect.output_dir) / "stage.json").read_text())
    assert stage_json["labels_path"] is None  # first run exports; labels come later
    job = app.store.get_job("j-1")
    assert job.state == JobState.PAUSED
    assert [t.reason for t in app.get_job("j-1").transitions if t.subject == "job"][-1] == \
        "AWAITING_LABELS"
    assert "r2/reward" not in ex.live()
    name, content = app.export_samples("j-1", 2)
    assert name.endswith("round2-export.jsonl")
    assert [json.loads(x)["id"] for x in content.decode().splitlines()] == ["r2-0", "r2-1"]


def test_bad_labels_name_the_row_and_field_and_keep_the_job_paused(tmp_path: Path) -> None:
    app, _, _ = paused_job(tmp_path)
    with pytest.raises(SpecError) as err:
        app.import_labels("j-1", 2, labels(label("r2-0"), label("r2-1", better_response_id=7)))
    v = err.value.violations[0]
    assert v.field == "labels.better_response_id" and v.line == 2
    with pytest.raises(SpecError):
        app.import_labels("j-1", 2, labels(label("r2-0")))  # r2-1 has no label
    assert app.store.get_job("j-1").state == JobState.PAUSED


def test_valid_labels_resume_the_round(tmp_path: Path) -> None:
    app, ex, collect = paused_job(tmp_path)
    job = app.import_labels("j-1", 2, labels(label("r2-0"), label("r2-1")))
    assert job.state == JobState.RUNNING
    labelled = (Path(collect.output_dir) / "labelled.jsonl").read_text().splitlines()
    assert [json.loads(x)["safer_response_id"] for x in labelled] == [1, 1]
    assert (Path(collect.output_dir) / "imported_labels.jsonl").exists()
    app.scheduler.tick()
    assert ex.live() == ["r2/reward"]
    with pytest.raises(Conflict):
        app.import_labels("j-1", 2, labels(label("r2-0"), label("r2-1")))  # not waiting now
