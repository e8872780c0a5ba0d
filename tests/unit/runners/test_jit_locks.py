"""Stale JIT build locks: an old `lock` is removed with a warning naming it; a fresh one (a build
in progress) and everything else in the build folder are left alone."""

from __future__ import annotations

import logging
import os
import time

from saferlhf.runners.common.jit_locks import clear_stale_locks, extensions_root, stale_locks


def make_lock(folder, age_s):
    folder.mkdir(parents=True)
    lock = folder / "lock"
    lock.touch()
    then = time.time() - age_s
    os.utime(lock, (then, then))
    (folder / "op.so").write_bytes(b"built")
    return lock


def test_an_old_lock_goes_and_a_building_one_stays(tmp_path, caplog):
    old = make_lock(tmp_path / "py311_cpu" / "deepspeed_shm_comm", age_s=3 * 3600)
    fresh = make_lock(tmp_path / "fused_adam", age_s=30)
    with caplog.at_level(logging.WARNING):
        removed = clear_stale_locks(tmp_path, max_age_s=600)
    assert removed == [old]
    assert not old.exists() and fresh.exists()
    assert (old.parent / "op.so").exists()  # the cached build itself is kept
    assert str(old) in caplog.text and "stale JIT build lock" in caplog.text


def test_the_age_comes_from_the_lock_file(tmp_path):
    lock = make_lock(tmp_path / "cpu_adam", age_s=700)
    now = time.time()
    assert [p for p, _ in stale_locks(tmp_path, now=now, max_age_s=600)] == [lock]
    assert stale_locks(tmp_path, now=now, max_age_s=800) == []


def test_the_environment_sets_the_age_and_the_root(tmp_path, monkeypatch):
    lock = make_lock(tmp_path / "deepspeed_shm_comm", age_s=120)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_root() == tmp_path
    assert clear_stale_locks() == []  # 120 s is younger than the default
    monkeypatch.setenv("SAFERLHF_JIT_LOCK_MAX_AGE_S", "60")
    assert clear_stale_locks() == [lock]


def test_a_missing_root_is_nothing_to_clear(tmp_path):
    assert clear_stale_locks(tmp_path / "absent", max_age_s=1) == []
