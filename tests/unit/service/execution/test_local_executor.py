"""The local executor with tiny Python children (no runner, no torch): exit codes, cancel,
adoption by a new executor instance, logs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from saferlhf.service.execution.base import LaunchSpec, RunState
from saferlhf.service.execution.local import LocalExecutor, runner_command
from saferlhf.service.state.types import FailureClass, Resources


def child(script: str):
    """A command builder that runs `script` instead of a runner (argv[1:] = config path)."""
    def build(spec: LaunchSpec, python: str) -> list[str]:
        return [python, "-c", script, spec.config_path]
    return build


def spec(tmp_path: Path, attempt_id: str = "j1/r1/sft/1", attempt: int = 1) -> LaunchSpec:
    return LaunchSpec(
        attempt_id=attempt_id, job_id="j1", job_name="demo", project="p", round=1,
        stage="r1/sft", kind="sft", attempt=attempt, config_path=str(tmp_path / "stage.json"),
        output_dir=str(tmp_path / "out"), env={"SAFERLHF_STAGE_TOKEN": "tok"},
    )


def wait_done(ex: LocalExecutor, handle: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ex.poll(handle)
        if status.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.LOST):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{handle} still {status} after {timeout}s")


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_runner_command_is_python_dash_m_or_torchrun(tmp_path: Path) -> None:
    s = spec(tmp_path)
    assert runner_command(s, "py") == ["py", "-m", "saferlhf.runners.sft",
                                       "--config", s.config_path]
    multi = LaunchSpec(**{**s.__dict__, "resources": Resources(nproc_per_node=2)})
    cmd = runner_command(multi, "py")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in cmd
    assert cmd[-4:] == ["-m", "saferlhf.runners.sft", "--config", s.config_path]


def test_a_successful_child_gets_the_runner_environment_and_logs(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "keys = ['SAFERLHF_ATTEMPT_ID', 'SAFERLHF_ATTEMPT', 'SAFERLHF_STAGE_TOKEN', "
        "'HF_HUB_OFFLINE', 'OMP_NUM_THREADS', 'RANK', 'WORLD_SIZE']\n"
        "print(' '.join(f'{k}={os.environ.get(k)}' for k in keys))\n"
        "import saferlhf.runners; print('runners importable')\n"
        "print('sid-differs', os.getsid(0) != int(os.environ['PARENT_SID']))\n"
    )
    ex = LocalExecutor(tmp_path / "state", command=child(script),
                       base_env={**os.environ, "PARENT_SID": str(os.getsid(0)),
                                 "PYTHONPATH": ""})
    h = ex.submit(spec(tmp_path))
    assert ex.submit(spec(tmp_path)) == h  # idempotent on the attempt id
    status = wait_done(ex, h)
    assert status.state == RunState.SUCCEEDED and status.exit_code == 0
    lines = list(ex.logs(h))
    assert lines[0].startswith("==== saferlhf: attempt 1 of r1/sft (j1/r1/sft/1)")
    assert ("SAFERLHF_ATTEMPT_ID=j1/r1/sft/1 SAFERLHF_ATTEMPT=1 SAFERLHF_STAGE_TOKEN=tok "
            "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 RANK=0 WORLD_SIZE=1") in lines
    assert "runners importable" in lines and "sid-differs True" in lines
    assert (tmp_path / "out" / "stage.log").exists()


@pytest.mark.parametrize(("code", "failure"), [
    (2, FailureClass.INVALID), (75, FailureClass.TRANSIENT), (3, FailureClass.UNKNOWN)])
def test_exit_codes_are_classified(tmp_path: Path, code: int, failure: FailureClass) -> None:
    ex = LocalExecutor(tmp_path / "state", command=child(f"import sys; sys.exit({code})"))
    status = wait_done(ex, ex.submit(spec(tmp_path)))
    assert (status.state, status.exit_code, status.failure) == (RunState.FAILED, code, failure)


def test_cancel_sends_sigterm_and_a_child_that_exits_on_it_is_killed(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "def bye(*a):\n    print('checkpoint on SIGTERM', flush=True); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    )
    ex = LocalExecutor(tmp_path / "state", command=child(script))
    h = ex.submit(spec(tmp_path))
    wait_for(lambda: "ready" in list(ex.logs(h)))
    ex.cancel(h, grace_seconds=30)
    status = wait_done(ex, h)
    assert status.exit_code == 143 and status.failure == FailureClass.KILLED
    assert "checkpoint on SIGTERM" in list(ex.logs(h))


def test_cancel_sends_sigkill_after_the_grace_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    ex = LocalExecutor(tmp_path / "state", command=child(script))
    h = ex.submit(spec(tmp_path))
    wait_for(lambda: "ready" in list(ex.logs(h)))
    t0 = time.monotonic()
    ex.cancel(h, grace_seconds=0.5)
    status = wait_done(ex, h)
    assert status.exit_code == -9 and status.failure == FailureClass.KILLED
    assert "cancel requested" in status.message
    assert 0.4 < time.monotonic() - t0 < 15


def test_a_new_executor_adopts_a_running_child_and_sees_its_exit_code(tmp_path: Path) -> None:
    flag = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        "sys.exit(75)\n"
    )
    first = LocalExecutor(tmp_path / "state", command=child(script))
    h = first.submit(spec(tmp_path))
    wait_for(lambda: first.poll(h).state == RunState.RUNNING)
    first._procs.clear()  # the "service" goes away: its child handles are gone with it

    second = LocalExecutor(tmp_path / "state", command=child(script))
    assert second.adopt() == {"j1/r1/sft/1": h}
    assert second.poll(h).state == RunState.RUNNING
    flag.write_text("")
    status = wait_done(second, h)
    assert (status.exit_code, status.failure) == (75, FailureClass.TRANSIENT)
    assert second.submit(spec(tmp_path)) == h  # still idempotent: never started twice


def test_a_reused_pid_is_not_mistaken_for_the_attempt(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", command=child("import time; time.sleep(60)"))
    h = ex.submit(spec(tmp_path))
    wait_for(lambda: (ex.root / h / "child.json").exists())
    # Pretend the recorded processes were started at another time (a recycled pid).
    for name in ("child.json", "wrapper.json"):
        p = ex.root / h / name
        p.write_text(p.read_text().replace('"start": ', '"start": 1'))
    status = ex.poll(h)
    assert status.state == RunState.FAILED and status.failure == FailureClass.UNKNOWN
    os.killpg(int(__import__("json").loads((ex.root / h / "child.json").read_text())["pid"]), 9)


def test_logs_follow_streams_until_the_attempt_ends(tmp_path: Path) -> None:
    script = "import time\nfor i in range(3):\n    print('line', i, flush=True); time.sleep(0.3)\n"
    ex = LocalExecutor(tmp_path / "state", command=child(script))
    h = ex.submit(spec(tmp_path))
    lines = list(ex.logs(h, follow=True, poll_seconds=0.05))
    assert lines[1:] == ["line 0", "line 1", "line 2"]


def test_logs_of_an_attempt_stop_at_the_next_attempts_header(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", command=child("print('hello')"))
    h1 = ex.submit(spec(tmp_path))
    wait_done(ex, h1)
    h2 = ex.submit(spec(tmp_path, "j1/r1/sft/2", attempt=2))
    wait_done(ex, h2)
    assert list(ex.logs(h1))[1:] == ["hello"]
    assert list(ex.logs(h2))[0].startswith("==== saferlhf: attempt 2")


def test_an_unknown_handle_is_lost(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", python=sys.executable)
    assert ex.poll("nope").state == RunState.LOST
