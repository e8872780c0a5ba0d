"""The JSON Schema of the whole job spec (`saferlhf schema`), for editors and CI linting.

Generated from the same pydantic models that validate specs, so the two cannot drift. Some rules
live outside the schema (path confinement, data checks, cross-field checks): a spec the schema
accepts can still be refused by `load_spec`, never the other way round.
"""

from __future__ import annotations

from typing import Any

from saferlhf.service.spec.models import API_VERSION, JobSpec

SCHEMA_ID = "https://saferlhf.dev/schemas/v1alpha1/safe-rlhf-job.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a SafeRLHFJob document."""
    schema = JobSpec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"SafeRLHFJob ({API_VERSION})",
        **{k: v for k, v in schema.items() if k != "title"},
    }
