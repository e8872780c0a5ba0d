"""Load a job spec from YAML text: every error at once, each with its field path and line.

    job = load_spec(text, artifacts_root="/srv/artifacts")      # raises SpecError, nothing else

Order: YAML syntax → document shape → path confinement (on the raw data) → pydantic validation
(the runners' own Params models) → cross-field and data checks (`checks.py`). Each step adds its
violations; the later steps run only as far as the earlier ones leave something to check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from pydantic import ValidationError
from saferlhf.service.errors import FieldViolation, SpecError
from saferlhf.service.spec.checks import check_spec
from saferlhf.service.spec.errors import violations_from
from saferlhf.service.spec.models import API_VERSION, KIND, JobSpec
from saferlhf.service.spec.paths import Roots, confine_paths, default_roots
from saferlhf.service.spec.yamlmap import Loc, parse_yaml

MAX_SPEC_BYTES = 1 << 20  # a spec is a page of YAML; refuse megabytes before parsing them
# A check that needs the whole valid spec, from a layer above this one (e.g. the memory planner's
# `saferlhf.service.planning.fit.memory_violations`): (spec, YAML lines) → violations.
SpecCheck = Callable[[JobSpec, Mapping[Loc, int]], list[FieldViolation]]


def load_spec(
    text: str,
    *,
    artifacts_root: str | None = None,
    check_data: bool = True,
    source_dir: str | None = None,
    allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
    allow_hub: bool = False,
    checks: Sequence[SpecCheck] = (),
) -> JobSpec:
    """Parse and validate a job spec; raise `SpecError` with every violation.

    - `source_dir`: the spec file's directory (relative paths are looked up there first).
    - `allowed_roots`: where spec paths may point; default: `source_dir`, `artifacts_root` and
      ../shared/data when present (the current directory when none is given).
    - `check_data`: check that data files and `use:` / model folders exist and parse.
    - `allow_hub`: the service can reach the Hugging Face hub; off by default (air-gapped), so a
      hub reference is an error naming its field, never a hang.
    - `checks`: more checks on the valid spec, reported with the others (CreateJob and
      `saferlhf validate` pass the memory planner's).
    """
    if not isinstance(text, str):
        raise SpecError([FieldViolation("<document>", "expected YAML text")])
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError([FieldViolation("<document>", f"spec larger than {MAX_SPEC_BYTES} bytes")])
    raw, lines, violations = parse_yaml(text)
    if raw is None and not violations:
        violations.append(FieldViolation("<document>", "empty document: expected a SafeRLHFJob"))
    if raw is None or any(v.field == "<document>" for v in violations):
        raise SpecError(violations)
    if not isinstance(raw, dict):
        raise SpecError([FieldViolation(
            "<document>", f"expected a mapping with apiVersion, kind, metadata and spec, got "
            f"{type(raw).__name__}", 1)])
    violations += _header(raw, lines)
    roots = Roots.of(allowed_roots) if allowed_roots is not None else default_roots(
        source_dir, artifacts_root)
    violations += confine_paths(raw, roots, lines)
    violations += threshold_or_budget(raw, lines)
    try:
        job = JobSpec.model_validate(raw)
    except ValidationError as exc:
        found = [v for v in violations_from(exc, lines) if not _is_threshold_rule(v)]
        raise SpecError(violations + found) from None
    except RecursionError:
        raise SpecError(violations + [FieldViolation("<document>", "nested too deeply")]) from None
    violations += check_spec(job, lines, check_data=check_data, allow_hub=allow_hub)
    for check in checks:
        violations += check(job, lines)
    if violations:
        raise SpecError(violations)
    return job


def load_spec_file(path: str | os.PathLike[str], **kwargs: object) -> JobSpec:
    """Read a spec file (the CLI's `validate` / `run`): its directory is the `source_dir`."""
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([FieldViolation("<document>", f"cannot read {file}: {exc}")]) from None
    kwargs.setdefault("source_dir", os.path.dirname(os.path.abspath(file)))
    return load_spec(text, **kwargs)  # type: ignore[arg-type]


def threshold_or_budget(raw: dict[object, object], lines: dict) -> list[FieldViolation]:
    """PPO-Lag needs exactly one of `threshold` and `safety_budget` (issue 6). Checked on the
    raw data so it is reported even when other ppo_lag fields are invalid (pydantic skips model
    validators then)."""
    spec = raw.get("spec")
    stages = spec.get("stages") if isinstance(spec, dict) else None
    ppo = stages.get("ppo_lag") if isinstance(stages, dict) else None
    if not isinstance(ppo, dict) or "use" in ppo or ppo.get("algorithm", "ppo_lag") != "ppo_lag":
        return []
    base = ("spec", "stages", "ppo_lag")
    has_threshold = ppo.get("threshold") is not None
    has_budget = ppo.get("safety_budget") is not None
    if has_threshold and has_budget:
        return [FieldViolation(
            "spec.stages.ppo_lag.safety_budget",
            "give either `threshold` or `safety_budget`, not both: `threshold` is a raw cost in "
            "cost-model units, `safety_budget` a harmful-rate target calibrated into one "
            f"(threshold is at line {lines.get((*base, 'threshold'))})",
            lines.get((*base, "safety_budget")))]
    if not has_threshold and not has_budget:
        return [FieldViolation(
            "spec.stages.ppo_lag",
            "algorithm ppo_lag needs `threshold` (cost-model units) or `safety_budget` (e.g. "
            "{max_harmful_rate: 0.02}); neither is set, and the reference default threshold 0 "
            "can be vacuous (docs/safety_budget.md)", lines.get(base))]
    return []


def _is_threshold_rule(violation: FieldViolation) -> bool:
    return violation.field == "spec.stages.ppo_lag" and "safety_budget" in violation.description


def _header(raw: dict[object, object], lines: dict) -> list[FieldViolation]:
    """Friendlier messages than pydantic's for the two header fields people get wrong first."""
    out = []
    version = raw.get("apiVersion")
    if version is not None and version != API_VERSION:
        out.append(FieldViolation("apiVersion", f"expected {API_VERSION!r}, got {version!r}",
                                  lines.get(("apiVersion",))))
        raw.pop("apiVersion")
        raw["apiVersion"] = API_VERSION  # reported once here, not again by pydantic
    kind = raw.get("kind")
    if kind is not None and kind != KIND:
        out.append(FieldViolation("kind", f"expected {KIND!r}, got {kind!r}",
                                  lines.get(("kind",))))
        raw["kind"] = KIND
    return out
