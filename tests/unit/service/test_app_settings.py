"""Service settings: defaults < YAML file < SAFERLHF_* environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from saferlhf.service.errors import SpecError
from saferlhf.service.settings import Settings, load_settings


def test_defaults_are_safe_for_a_laptop() -> None:
    s = load_settings(env={})
    assert s.listen_address == "127.0.0.1:50051" and s.metrics_address == "127.0.0.1:9464"
    assert s.executor == "local" and s.max_concurrent_stages == 1
    assert s.resolved_database_url.startswith("sqlite:///") and \
        s.resolved_database_url.endswith(".saferlhf/state.db")
    assert not s.allow_insecure_bind


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "settings.yaml"
    f.write_text("max_concurrent_stages: 3\nstall_minutes: 7\nexecutor: kubernetes\n")
    s = load_settings(f, env={"SAFERLHF_STALL_MINUTES": "9",
                              "SAFERLHF_KUBERNETES_POD_OPTIONS": '{"nodeSelector": {"a": "b"}}'},
                      overrides={"executor": "local", "state_dir": None})
    assert (s.max_concurrent_stages, s.stall_minutes, s.executor) == (3, 9.0, "local")
    assert s.kubernetes_pod_options == {"nodeSelector": {"a": "b"}}
    assert Settings(database_url="postgresql://x/y").resolved_database_url == "postgresql://x/y"


def test_bad_values_name_the_variable_or_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_settings(env={"SAFERLHF_MAX_CONCURRENT_STAGES": "zero"})
    assert err.value.violations[0].field == "SAFERLHF_MAX_CONCURRENT_STAGES"
    f = tmp_path / "s.yaml"
    f.write_text("executor: docker\nnot_a_setting: 1\n")
    with pytest.raises(SpecError) as err:
        load_settings(f, env={})
    assert {v.field for v in err.value.violations} == {f"{f}: executor", f"{f}: not_a_setting"}
    f.write_text("- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_settings(f, env={})
