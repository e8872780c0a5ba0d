"""Full or unwritable storage, told apart from other failures (DESIGN §5 exit codes).

A stage that cannot write its outputs exits with EXIT_STORAGE (74, sysexits' EX_IOERR) and a
one-line reason such as "no space left on device writing …/checkpoints/.tmp-step-4/state.pt",
so the service classifies the attempt as STORAGE instead of an unknown crash with a traceback.
The reason also goes to SAFERLHF_TERMINATION_LOG when the executor sets it (a file outside the
artifacts disk, like Kubernetes' terminationMessagePath), because stage.log sits on the disk
that is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from saferlhf.runners.common.errors import EXIT_STORAGE

__all__ = ["EXIT_STORAGE", "storage_problem", "write_termination_message"]
TERMINATION_ENV = "SAFERLHF_TERMINATION_LOG"
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted"}
LOW_SPACE_BYTES = 1 << 20  # a write error with less than this free is a full disk


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(path: str | Path) -> int | None:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def storage_problem(exc: BaseException, output_dir: str | Path) -> str | None:
    """The reason when `exc` is a full / unwritable disk, else None. torch.save and safetensors
    report a failed write as a RuntimeError without an errno: those count when the output disk
    has (almost) no space left."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            where = e.filename or output_dir
            return f"{STORAGE_ERRNOS[e.errno]} writing {where}"
    free = free_bytes(output_dir)
    if isinstance(exc, RuntimeError | OSError) and free is not None and free < LOW_SPACE_BYTES:
        return (f"no space left on device writing under {output_dir} ({free} bytes free): "
                f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")
    return None


def write_termination_message(message: str) -> None:
    """Best effort: the executor's file for the one-line reason of a failed attempt."""
    path = os.environ.get(TERMINATION_ENV)
    if not path:
        return
    with contextlib.suppress(OSError):
        Path(path).write_text(message[:4096] + "\n")
