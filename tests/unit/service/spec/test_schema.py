"""json_schema(): the exported schema describes the same specs load_spec accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from saferlhf.service.spec.schema import json_schema

from tests.tools import ROOT
from tests.unit.service.spec.specs import spec_dict

jsonschema = pytest.importorskip("jsonschema")


def test_the_schema_is_a_draft_2020_12_schema_of_the_whole_job() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert schema["additionalProperties"] is False


def test_every_example_validates_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        errors = list(validator.iter_errors(yaml.safe_load(Path(path).read_text())))
        assert not errors, f"{path.name}: {errors[0].message}"


def test_the_schema_rejects_an_unknown_stage_parameter() -> None:
    doc = spec_dict()
    doc["spec"]["stages"]["ppo_lag"]["lamda_lr"] = 0.1
    validator = jsonschema.Draft202012Validator(json_schema())
    assert not validator.is_valid(doc)
    assert validator.is_valid(spec_dict())
