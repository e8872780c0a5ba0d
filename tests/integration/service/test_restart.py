"""kill -9 the service mid-job, restart it: the job completes with real runners, and its stored
events equal the runners' events.jsonl — nothing lost, nothing doubled (DESIGN §6) — the attempt
that ran through the kill is adopted, not rerun, and no process is left behind.

The CI-sized member of the service-SIGKILL suite; `python -m bench.reliability` runs ≥ 20 kills at
moments spread over a two-round job (bench/reliability/kills.py, the same code)."""

from __future__ import annotations

from pathlib import Path

import pytest
from saferlhf.v1 import resources_pb2 as pb

from bench.reliability.kills import ok, run_job

SPEC = (Path(__file__).parent / "tiny_job.yaml").read_text()
pytestmark = pytest.mark.slow


def _reward_running(service, job_id, got) -> bool:
    return any(s.id == "r1/reward" and s.state == pb.ATTEMPT_STATE_RUNNING for s in got.stages)


def test_a_job_survives_kill_9_of_the_service_with_every_event_stored_once(tmp_path):
    # Kill while the reward model trains: its runner keeps writing events meanwhile.
    trial = run_job(tmp_path, spec=SPEC, on_live=_reward_running, down_seconds=5.0,
                    timeout=1200)
    assert trial["job_state"] == "SUCCEEDED", trial
    assert "r1/reward" in trial["stages_live_at_kill"]
    assert set(trial["attempts_live_at_kill"].values()) == {"adopted"}, trial
    assert trial["events"]["in_files"] > 0 and trial["events"]["lost"] == 0, trial
    assert trial["events"]["doubled"] == trial["events"]["differing"] == 0, trial
    assert trial["orphaned_processes"] == [] and trial["service_starts"] == 2
    assert trial["tracebacks_in_service_log"] == 0
    assert ok(trial)
