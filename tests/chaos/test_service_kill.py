"""Service SIGKILL at ≥ 20 moments spread uniformly over the life of a two-round job with every
stage kind (bench/reliability/kills.py): every job finishes, no event is lost or doubled, the
stage running at the kill is adopted, no process is orphaned. Long: `-m chaos` only (CI runs
tests/integration/service/test_restart.py, one kill, and test_scheduler_crash_points.py)."""

from __future__ import annotations

import pytest

from bench.reliability.kills import run_trials


@pytest.mark.chaos
def test_twenty_service_kills_lose_and_double_nothing(tmp_path):
    result = run_trials(tmp_path, 20)
    assert result["baseline_ok"]
    assert result["kills_landed_while_running"] == 20 and result["jobs_finished"] == 20
    assert result["events_lost"] == result["events_doubled"] == 0
    assert result["events_differing"] == 0 and result["orphaned_processes"] == 0
    assert result["trials_passed"] == 20, [t for t in result["per_trial"] if t["job_state"]
                                           != "SUCCEEDED"]
