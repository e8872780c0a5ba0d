"""stage.log gets each log line once, whether or not the executor already sends stderr there."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CODE = ("import logging, sys; from saferlhf.runners.common.stage_cli import setup_logging; "
        "setup_logging(sys.argv[1]); logging.getLogger('t').info('hello')")


def run(out: Path, stderr) -> None:
    subprocess.run([sys.executable, "-c", CODE, str(out)], cwd=ROOT, stderr=stderr,
                   stdout=subprocess.DEVNULL, check=True)


def test_a_runner_whose_stderr_is_stage_log_writes_each_line_once(tmp_path):
    with (tmp_path / "stage.log").open("a") as f:
        run(tmp_path, f)
    assert (tmp_path / "stage.log").read_text().count("hello") == 1


def test_a_runner_started_by_hand_still_writes_stage_log(tmp_path):
    run(tmp_path, subprocess.DEVNULL)
    assert (tmp_path / "stage.log").read_text().count("hello") == 1
