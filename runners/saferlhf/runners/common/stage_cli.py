"""The command line of every training stage: `python -m saferlhf.runners.<kind> --config
stage.json`.

Maps outcomes to the runner contract's exit codes (DESIGN §5): 0 done; 2 invalid config or data
(the message names file / row / field — no traceback); 75 transient (SIGTERM after a checkpoint, a
lost peer); anything else 1 with the traceback in stage.log. Logging goes to `output_dir/stage.log`
and stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from saferlhf.runners.common.config import StageIO, load_stage_config
from saferlhf.runners.common.dist import add_launcher_args, destroy, get_rank
from saferlhf.runners.common.errors import EXIT_INVALID, EXIT_TRANSIENT, RunnerError
from saferlhf.runners.common.storage import (
    EXIT_STORAGE,
    storage_problem,
    write_termination_message,
)

log = logging.getLogger("runners")


def parse_args(kind: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m runners.{kind}")
    parser.add_argument("--config", required=True, help="Resolved stage.json")
    add_launcher_args(parser)
    return parser.parse_args(argv)


def _config_error(path: str, exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        lines = [
            f"  {'.'.join(str(p) for p in err['loc'][1:]) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        return f"invalid stage config {path}:\n" + "\n".join(lines)
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid stage config {path}: not JSON ({exc.msg} at line {exc.lineno})"
    return f"cannot read stage config {path}: {exc}"


def _same_file(stream, path: Path) -> bool:
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except (OSError, ValueError, AttributeError):
        return False


def setup_logging(output_dir: str) -> None:
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    rank = get_rank()
    fmt = logging.Formatter(f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_path = Path(output_dir) / ("stage.log" if rank == 0 else f"stage.rank{rank}.log")
    if not _same_file(sys.stderr, log_path):  # the local executor already sends stderr there
        handlers.append(logging.FileHandler(log_path))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    for noisy in ("transformers", "DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(kind: str, run: Callable[[StageIO, int], None], argv: list[str] | None = None) -> int:
    """Parse args, load the config, run the stage; return the exit code."""
    args = parse_args(kind, argv)
    try:
        cfg = load_stage_config(args.config)
    except Exception as exc:  # every config problem is permanent: report, exit 2
        sys.stderr.write(_config_error(args.config, exc) + "\n")
        return EXIT_INVALID
    if cfg.kind != kind:
        sys.stderr.write(f"{args.config}: kind is {cfg.kind!r}, expected {kind!r}\n")
        return EXIT_INVALID
    try:
        setup_logging(cfg.output_dir)
        run(cfg, args.local_rank)
    except RunnerError as exc:
        if exc.exit_code == EXIT_TRANSIENT:
            log.warning("%s", exc)
        else:
            log.error("%s", exc)
        write_termination_message(str(exc))
        return exc.exit_code
    except Exception as exc:
        problem = storage_problem(exc, cfg.output_dir)
        if problem is not None:  # a full or unwritable disk: say so, no traceback
            log.error("stage %s cannot write its outputs: %s", kind, problem)
            write_termination_message(problem)
            return EXIT_STORAGE
        if isinstance(exc, _transient_types()):
            log.exception("transient failure: %s", exc)
            write_termination_message(f"transient failure: {exc}")
            return EXIT_TRANSIENT
        log.exception("stage %s failed", kind)
        write_termination_message(f"{type(exc).__name__}: {exc}"[:500])
        return 1
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Tear the process group down before the interpreter exits: left to interpreter shutdown,
    a rank of a 2-process gloo run now and then died with SIGABRT ("terminate called without an
    active exception") after its work was done."""
    try:
        destroy()
    except Exception as exc:  # the stage's own exit code stands
        log.warning("destroying the process group failed: %s", exc)


def _transient_types() -> tuple[type[BaseException], ...]:
    import torch.distributed as dist

    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("DistNetworkError", "DistStoreError"):
        t = getattr(dist, name, None)
        if isinstance(t, type):
            types.append(t)
    return tuple(types)
