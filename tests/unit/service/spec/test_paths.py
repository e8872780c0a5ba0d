"""Path confinement (DESIGN §11): specs cannot reach outside their allowed roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from saferlhf.service.errors import SpecError
from saferlhf.service.spec.load import load_spec

from tests.tools import require_shared_data
from tests.unit.service.spec.specs import spec_dict, to_yaml


def _with_eval_path(path: str) -> str:
    doc = spec_dict()
    doc["spec"]["stages"]["eval"]["prompts"] = [{"format": "safe_rlhf_eval", "path": path}]
    return to_yaml(doc)


def _fields(text: str, **kwargs: object) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        load_spec(text, **kwargs)  # type: ignore[arg-type]
    return {v.field: v.description for v in info.value.violations}


FIELD = "spec.stages.eval.prompts[0].path"


@pytest.mark.parametrize("path", ["../secrets.json", "data/../../etc/passwd", "./a/../b"])
def test_a_path_with_dot_dot_is_rejected(tmp_path: Path, path: str) -> None:
    found = _fields(_with_eval_path(path), source_dir=str(tmp_path), check_data=False)
    assert "'..'" in found[FIELD]


def test_an_absolute_path_outside_the_allowed_roots_is_rejected(tmp_path: Path) -> None:
    found = _fields(_with_eval_path("/etc/passwd"), source_dir=str(tmp_path), check_data=False)
    assert "outside the allowed roots" in found[FIELD]


def test_a_home_relative_path_is_rejected(tmp_path: Path) -> None:
    found = _fields(_with_eval_path("~/data.json"), source_dir=str(tmp_path), check_data=False)
    assert "'~'" in found[FIELD]


def test_a_symlink_leading_out_of_the_root_is_rejected(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "problem.json").write_text("[]")
    os.symlink(outside, root / "link")
    found = _fields(_with_eval_path("link/problem.json"), allowed_roots=[root], check_data=False)
    assert "symlink" in found[FIELD]


def test_a_relative_path_resolves_inside_the_spec_directory(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "problem.json").write_text("[]")
    job = load_spec(_with_eval_path("data/problem.json"), source_dir=str(tmp_path),
                    check_data=False)
    assert job.spec.stages.eval.prompts[0].path == str((tmp_path / "data/problem.json").resolve())


def test_an_absolute_path_inside_an_allowed_root_is_accepted(tmp_path: Path) -> None:
    target = tmp_path / "problem.json"
    target.write_text("[]")
    job = load_spec(_with_eval_path(str(target)), allowed_roots=[tmp_path], check_data=False)
    assert job.spec.stages.eval.prompts[0].path == str(target.resolve())


def test_the_artifacts_root_is_an_allowed_root(tmp_path: Path) -> None:
    target = tmp_path / "artifacts" / "p.json"
    target.parent.mkdir()
    target.write_text("[]")
    job = load_spec(_with_eval_path(str(target)), artifacts_root=str(tmp_path / "artifacts"),
                    check_data=False)
    assert job.spec.stages.eval.prompts[0].path == str(target.resolve())


def test_a_file_artifacts_uri_is_confined_too(tmp_path: Path) -> None:
    text = to_yaml(spec_dict(artifacts={"uri": "file:///var/lib/elsewhere"}))
    found = _fields(text, source_dir=str(tmp_path))
    assert "outside the allowed roots" in found["spec.artifacts.uri"]
    job = load_spec(to_yaml(spec_dict(artifacts={"uri": "file://./out"})), source_dir=str(tmp_path))
    assert job.spec.artifacts.uri == f"file://{(tmp_path / 'out').resolve()}"


def test_a_relative_path_is_found_in_the_shared_data_root(tmp_path: Path) -> None:
    require_shared_data("safe_rlhf_eval/problem.json")
    job = load_spec(_with_eval_path("safe_rlhf_eval/problem.json"), source_dir=str(tmp_path))
    assert job.spec.stages.eval.prompts[0].path.endswith("shared/data/safe_rlhf_eval/problem.json")


def test_a_missing_data_file_is_reported_when_data_checks_are_on(tmp_path: Path) -> None:
    found = _fields(_with_eval_path("nowhere.json"), source_dir=str(tmp_path))
    assert "no such file" in found[FIELD]
    load_spec(_with_eval_path("nowhere.json"), source_dir=str(tmp_path), check_data=False)
