"""A small tmpfs for the disk-full tests (root only: CI without mount rights skips them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` KiB; skip the test with the reason when that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full tests mount a small tmpfs, which needs root")
    where = Path(tempfile.mkdtemp(prefix="saferlhf-tmpfs-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): the disk-full tests "
                    "need CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def fill(disk: Path, leave_kib: int) -> Path:
    """Write a filler file so that about `leave_kib` KiB stay free; returns it (delete it to free
    the space)."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave_kib * 1024
    with filler.open("wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            f.write(b"\0" * chunk)
            free -= chunk
    return filler


def remount(disk: Path, mode: str) -> None:
    """`ro` or `rw`: the artifacts disk turns read-only under a running job (EROFS)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True,
                   capture_output=True)
