"""Cancel during a stage: every process of the stage (wrapper, runner, the runner's session) is
gone by PID and the job is CANCELLED. CI cancels the one-round tiny job during SFT; `-m chaos`
(and bench.reliability) cancels one job during every kind, RetryJob between, and then runs it
to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.reliability.cancel import KINDS, run_cancels

TINY = (Path(__file__).parents[1] / "integration" / "service" / "tiny_job.yaml").read_text()


def _check(result: dict, final: str) -> None:
    assert result["cancels_passed"] == result["cancels"], result["per_cancel"]
    assert result["pids_checked"] > 0 and result["pids_left"] == 0
    assert result["job_after_retries"] == final, result["job_message"]
    assert result["orphaned_processes"] == []


@pytest.mark.slow
def test_cancel_during_sft_stops_every_process_of_the_stage(tmp_path):
    _check(run_cancels(tmp_path, ("sft",), spec=TINY, finish=False), "CANCELLED")


@pytest.mark.chaos
def test_cancel_during_every_stage_kind_stops_every_process_and_retry_finishes(tmp_path):
    _check(run_cancels(tmp_path, KINDS), "SUCCEEDED")
