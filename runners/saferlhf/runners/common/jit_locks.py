"""Stale build locks of torch's JIT extensions, which DeepSpeed uses for its ops.

torch builds an op (DeepSpeed's `shm_comm`, FusedAdam, cpu_adam) in
`$TORCH_EXTENSIONS_DIR/<op>/` (default `~/.cache/torch_extensions/py311_cpu/<op>/`) under a
`lock` file it creates exclusively and deletes when done — on *every* load, cached or not. A
process killed while it holds the lock (a timeout, a preempted pod, a session ending) leaves
the file behind, and from then on every DeepSpeed process on that machine waits for it in a
silent loop that never ends (torch's `FileBaton.wait`, no timeout, no message). This was a
whole CI run here: every DeepSpeed stage hung until its test's timeout.

A build takes seconds to a few minutes, so a lock older than `max_age_s` belongs to no live
build: it is removed, with a warning that names it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

# The longest a real build takes here is about 80 s (FusedAdam on a loaded 2-core machine).
DEFAULT_MAX_AGE_S = 600.0


def extensions_root() -> Path:
    """Where torch builds JIT extensions: $TORCH_EXTENSIONS_DIR, else torch's per-user cache
    (its per-Python/CUDA subfolders are searched too)."""
    configured = os.environ.get("TORCH_EXTENSIONS_DIR")
    if configured:
        return Path(configured)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def stale_locks(root: Path, *, now: float, max_age_s: float) -> list[tuple[Path, float]]:
    """(lock, age in s) for the `lock` files in `root/<op>/` or `root/<py>_<cuda>/<op>/` older
    than `max_age_s`."""
    if not root.is_dir():
        return []
    old = []
    for lock in sorted([*root.glob("*/lock"), *root.glob("*/*/lock")]):
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:  # its build just finished
            continue
        if age > max_age_s:
            old.append((lock, age))
    return old


def clear_stale_locks(root: Path | None = None, *, max_age_s: float | None = None) -> list[Path]:
    """Remove the stale build locks under `root` (default: `extensions_root()`); returns them.
    `SAFERLHF_JIT_LOCK_MAX_AGE_S` overrides the age."""
    root = extensions_root() if root is None else root
    if max_age_s is None:
        max_age_s = float(os.environ.get("SAFERLHF_JIT_LOCK_MAX_AGE_S", DEFAULT_MAX_AGE_S))
    removed = []
    for lock, age in stale_locks(root, now=time.time(), max_age_s=max_age_s):
        try:
            lock.unlink()
        except FileNotFoundError:
            continue
        log.warning("removed a stale JIT build lock %s (%.0f s old, no build holds it that "
                    "long): torch would have waited for it forever", lock, age)
        removed.append(lock)
    return removed
