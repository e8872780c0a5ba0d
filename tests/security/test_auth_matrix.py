"""Every RPC of both services × {no token, bad token, another project's token, a runner token on
the wrong job} gets its expected code (bench/reliability/auth.py has the table), the owner and a
read-only token behave as their roles say, and no token appears in the log, /metrics, the stored
events or any file the service wrote."""

from __future__ import annotations

from bench.reliability.auth import run_matrix


def test_every_cell_of_the_auth_matrix_gets_its_expected_code(tmp_path):
    result = run_matrix(tmp_path)
    assert result["cells"] == 44 and result["rpcs"] == 11
    assert result["cells_passed"] == result["cells"], result["failed_cells"]
    assert result["controls_passed"] == result["controls"], result["failed_controls"]
    leaks = result["token_leaks"]
    assert leaks["metrics"] == leaks["events"] == leaks["files"] == leaks["server_log"] == 0
    # the places searched were not empty (a leak check over nothing proves nothing)
    assert leaks["metrics_bytes_scanned"] > 1000 and leaks["events_bytes_scanned"] > 100
    assert leaks["files_scanned"] > 3 and leaks["server_log_bytes_scanned"] > 0
