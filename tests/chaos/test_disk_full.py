"""Disk full / unwritable artifacts (a small tmpfs): the attempt fails classified as STORAGE with
a message that says what could not be written, nothing is half-written where a resume would load
it, and once space is freed the retry resumes and ends bit-equal to an uninterrupted run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from saferlhf.service.execution.base import LaunchSpec, RunState
from saferlhf.service.execution.local import LocalExecutor
from saferlhf.service.state.types import FailureClass

from bench.reliability.resume import run, same_outcome, sft_config, stage_env
from tests.chaos.tmpfs import fill, remount, small_tmpfs


def _launch(ex: LocalExecutor, cfg: dict, attempt: int) -> str:
    out = Path(cfg["output_dir"])
    config = out.parent / "stage.json"
    config.write_text(json.dumps(cfg))
    spec = LaunchSpec(attempt_id=f"j/r1/sft/{attempt}", job_id="j", job_name="disk",
                      project="p", round=1, stage="r1/sft", kind="sft", attempt=attempt,
                      config_path=str(config), output_dir=str(out),
                      log_path=str(out.parent / f"stage-{attempt}.log"))
    return ex.submit(spec)


def _wait(ex: LocalExecutor, handle: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ex.poll(handle)
        if status.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.LOST):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{handle} did not end in {timeout}s")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "sft"
    code, err = run("sft", sft_config(out))
    assert code == 0, err[-3000:]
    return out


def test_a_disk_that_fills_mid_run_is_a_storage_failure_and_the_retry_resumes(tmp_path,
                                                                               straight):
    """Room for the step-4 checkpoint, not for step-8's: exit 74, STORAGE, the reason; `latest`
    still names the complete step-4; after freeing space attempt 2 resumes from it."""
    ex = LocalExecutor(tmp_path / "state", base_env=stage_env())
    with small_tmpfs(8 * 1024) as disk:
        filler = fill(disk, leave_kib=900)  # a checkpoint is ~520 KiB
        cfg = sft_config(disk / "sft")
        status = _wait(ex, _launch(ex, cfg, 1))
        assert status.state == RunState.FAILED and status.exit_code == 74, status
        assert status.failure == FailureClass.STORAGE
        assert "no space left on device" in status.message, status.message
        assert "Traceback" not in (disk / "stage-1.log").read_text(errors="replace")
        root = disk / "sft" / "checkpoints"
        assert (root / "latest").read_text() == "step-4"
        assert (root / "step-4" / "manifest.json").exists()
        assert not (disk / "sft" / "model").exists()
        filler.unlink()
        status = _wait(ex, _launch(ex, {**cfg}, 2))
        assert status.state == RunState.SUCCEEDED, status
        assert same_outcome(straight, disk / "sft") == []


def test_artifacts_that_turn_read_only_are_a_storage_failure(tmp_path):
    ex = LocalExecutor(tmp_path / "state", base_env=stage_env())
    with small_tmpfs(8 * 1024) as disk:
        cfg = sft_config(disk / "sft")
        (disk / "sft").mkdir()
        remount(disk, "ro")
        try:
            status = _wait(ex, _launch_elsewhere_log(ex, cfg, tmp_path))
        finally:
            remount(disk, "rw")
    assert status.state == RunState.FAILED and status.failure == FailureClass.STORAGE, status
    assert "read-only file system" in status.message, status.message


def _launch_elsewhere_log(ex: LocalExecutor, cfg: dict, tmp_path: Path) -> str:
    """The stage.log cannot be on a read-only disk either: put it (and stage.json) beside."""
    config = tmp_path / "stage.json"
    config.write_text(json.dumps(cfg))
    spec = LaunchSpec(attempt_id="j/r1/sft/1", job_id="j", job_name="ro", project="p",
                      round=1, stage="r1/sft", kind="sft", attempt=1, config_path=str(config),
                      output_dir=cfg["output_dir"], log_path=str(tmp_path / "stage.log"))
    return ex.submit(spec)


def test_an_unwritable_stage_folder_fails_that_attempt_as_storage_and_others_still_start(
        tmp_path, monkeypatch, caplog):
    """stage.json cannot be written (disk full): before, the OSError escaped the tick, so no
    stage of any job ever started again; now that attempt fails as STORAGE, the rest runs."""
    import errno

    from saferlhf.service.scheduler import loop
    from saferlhf.service.state.types import AttemptState

    from tests.unit.service.scheduler.helpers import add_job, make_app

    real = loop.write_stage_config

    def write(stage):
        if stage.job_id == "j-1":
            raise OSError(errno.ENOSPC, "No space left on device",
                          f"{stage.output_dir}/stage.json")
        return real(stage)

    monkeypatch.setattr(loop, "write_stage_config", write)
    app, ex, _ = make_app(tmp_path, max_concurrent_stages=2)
    add_job(app, tmp_path, job_id="j-1", max_attempts=2)
    add_job(app, tmp_path, job_id="j-2")
    app.scheduler.tick()
    attempt = app.store.list_attempts("j-1")[0]
    assert attempt.state == AttemptState.FAILED and attempt.failure == FailureClass.STORAGE
    assert "no space left on device writing" in attempt.message
    assert "free space" in attempt.message
    assert [s for s in ex.submitted if s.startswith("j-2/")] == ["j-2/r1/sft/1"]
    assert "Traceback" not in caplog.text
