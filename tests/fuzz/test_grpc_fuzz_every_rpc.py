"""Every RPC of JobService and RunnerService fuzzed with hypothesis against the real server in
its own process (bench/reliability/fuzz.py): never INTERNAL or UNKNOWN, never a hang, no
traceback in the server's log, the server still up. CI sends a few hundred requests; `-m chaos`
(and `python -m bench.reliability`) sends 10,000."""

from __future__ import annotations

import pytest

from bench.reliability.fuzz import RPCS, run_fuzz


def _check(result: dict, n: int) -> None:
    assert result["requests"] == n
    assert result["internal_or_unknown"] == 0, result["bad_examples"]
    assert result["deadline_exceeded"] == 0, result["bad_examples"]
    assert result["tracebacks_in_server_log"] == 0
    assert result["server_alive_at_end"]
    assert set(result["by_rpc"]) == set(RPCS)  # every RPC was exercised


def test_a_few_hundred_fuzzed_requests_over_every_rpc(tmp_path):
    _check(run_fuzz(tmp_path, 400, seed=1), 400)


@pytest.mark.chaos
def test_ten_thousand_fuzzed_requests_over_every_rpc(tmp_path):
    result = run_fuzz(tmp_path, 10_000, seed=2)
    _check(result, 10_000)
    # glibc arenas keep freed 10 MB requests: RSS climbs, then plateaus (~250–280 MB measured)
    assert result["rss_growth_mb_after_warmup"] < 200, result["rss_mb_series"]
