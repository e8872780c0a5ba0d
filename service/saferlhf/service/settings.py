"""Service settings: one frozen pydantic model, from defaults < an optional YAML file < SAFERLHF_*
environment variables (e.g. SAFERLHF_MAX_CONCURRENT_STAGES=2). The composition root builds it once
and hands it to `saferlhf.service.app.build_app`; nothing else reads the environment for these
values.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from saferlhf.service.errors import FieldViolation, SpecError

ENV_PREFIX = "SAFERLHF_"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listen_address: str = Field(
        default="127.0.0.1:50051", description="gRPC host:port. Loopback unless told otherwise."
    )
    metrics_address: str = Field(
        default="127.0.0.1:9464", description="host:port of the Prometheus /metrics endpoint."
    )
    state_dir: str = Field(
        default="./.saferlhf", description="Service state: SQLite file, executor pid files."
    )
    database_url: str | None = Field(
        default=None,
        description="sqlite:///path.db or postgresql://user@host/db. "
        "Default: sqlite file state.db inside state_dir.",
    )
    artifacts_root: str | None = Field(
        default=None, description="Where stage outputs go. Default: state_dir/artifacts."
    )
    executor: Literal["local", "kubernetes"] = Field(
        default="local", description="local subprocesses (default) or Kubernetes Jobs."
    )
    max_concurrent_stages: int = Field(
        default=1, gt=0, description="Stage attempts running at once (1 suits a small machine)."
    )
    stall_minutes: float = Field(
        default=30.0, gt=0,
        description="A running attempt with no event for this long is HUNG: cancelled, retried. "
        "A stage's own stall_minutes (from the plan) wins.",
    )
    cancel_grace_seconds: float = Field(
        default=10.0, ge=0, description="SIGTERM, then SIGKILL after this many seconds."
    )
    metrics_retention_seconds: float = Field(
        default=900.0, ge=0, description="Per-job series are dropped this long after a job ends."
    )
    reconcile_interval_seconds: float = Field(
        default=1.0, gt=0, description="Pause between two reconcile ticks of the scheduler."
    )
    tokens_file: str | None = Field(
        default=None, description="YAML of bearer tokens (hashed) scoped to projects."
    )
    tls_cert: str | None = Field(default=None, description="PEM server certificate.")
    tls_key: str | None = Field(default=None, description="PEM server key.")
    tls_ca: str | None = Field(
        default=None, description="PEM CA that signed tls_cert, which local runners trust to "
        "stream events (default: tls_cert itself, right for a self-signed certificate).")
    tls_client_ca: str | None = Field(
        default=None, description="PEM CA bundle: when set, every client (CLI, runners) must "
        "present a certificate it signed (mutual TLS).")
    runner_tls_cert: str | None = Field(
        default=None, description="Client certificate local runners present under mutual TLS.")
    runner_tls_key: str | None = Field(
        default=None, description="Key of runner_tls_cert.")
    allow_insecure_bind: bool = Field(
        default=False, description="Allow a non-loopback bind without tokens or TLS."
    )
    runner_python: str = Field(
        default=sys.executable, description="Python that runs `python -m saferlhf.runners.<kind>`."
    )
    runner_omp_threads: int = Field(
        default=1, gt=0, description="OMP_NUM_THREADS for local runner processes."
    )
    kubernetes_namespace: str = Field(default="saferlhf", description="Namespace of stage Jobs.")
    kubernetes_image: str = Field(
        default="saferlhf-runner:0.1.0", description="Runner image of stage Jobs."
    )
    kubernetes_artifacts_pvc: str | None = Field(
        default=None, description="PVC mounted at the artifacts root in stage pods."
    )
    kubernetes_queue: str | None = Field(
        default=None, description="Kueue LocalQueue name (jobs created suspended)."
    )
    kubernetes_pod_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Stage-pod options (camelCase keys of the chart's executor.stagePods: "
        "serviceAccountName, nodeSelector, tolerations …); JSON text from the environment.",
    )

    @field_validator("kubernetes_pod_options", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite:///" + str(Path(self.state_dir).resolve() / "state.db")

    @property
    def resolved_artifacts_root(self) -> str:
        if self.artifacts_root:
            return str(Path(self.artifacts_root).resolve())
        return str(Path(self.state_dir).resolve() / "artifacts")


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if key in env:
            out[name] = env[key]
    return out


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < YAML file < environment < explicit overrides (e.g. CLI flags).

    Raises SpecError naming the file or variable and field on bad values."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError([FieldViolation(str(p), f"cannot read settings file: {exc}")]) from exc
        if not isinstance(loaded, dict):
            raise SpecError([FieldViolation(str(p), "expected a mapping of setting: value")])
        values.update(loaded)
        source = str(p)
    from_env = _env_values(env)
    values.update(from_env)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        violations = []
        for err in exc.errors():
            name = ".".join(str(x) for x in err["loc"])
            where = ENV_PREFIX + name.upper() if name in from_env else f"{source}: {name}"
            violations.append(FieldViolation(where, f"{err['msg']}, got {err.get('input')!r}"))
        raise SpecError(violations, "invalid settings:\n  " + "\n  ".join(
            f"{v.field}: {v.description}" for v in violations)) from exc
