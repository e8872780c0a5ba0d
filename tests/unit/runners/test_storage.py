"""Full / unwritable storage is told apart from other failures, and a torn events.jsonl line
(a kill or a full disk mid-write) never swallows the next attempt's first event."""

from __future__ import annotations

import errno
import json

from saferlhf.runners.common import storage
from saferlhf.runners.common.events import EventSink, read_events


def test_a_full_disk_error_anywhere_in_the_cause_chain_is_a_storage_problem(tmp_path):
    inner = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "state.pt"))
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("checkpoint failed") from exc
    except RuntimeError as exc:
        problem = storage.storage_problem(exc, tmp_path)
    assert problem == f"no space left on device writing {tmp_path / 'state.pt'}"


def test_a_read_only_file_system_is_a_storage_problem(tmp_path):
    exc = OSError(errno.EROFS, "Read-only file system", "/x/events.jsonl")
    assert storage.storage_problem(exc, tmp_path) == "read-only file system writing /x/events.jsonl"


def test_a_runtime_error_is_a_storage_problem_only_when_the_disk_is_full(tmp_path, monkeypatch):
    exc = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert storage.storage_problem(exc, tmp_path) is None  # plenty of space here
    monkeypatch.setattr(storage, "free_bytes", lambda path: 4096)
    problem = storage.storage_problem(exc, tmp_path)
    assert problem is not None and "4096 bytes free" in problem and "file write failed" in problem
    assert storage.storage_problem(ValueError("bad"), tmp_path) is None


def test_the_termination_message_goes_to_the_executors_file(tmp_path, monkeypatch):
    target = tmp_path / "termination.log"
    monkeypatch.setenv(storage.TERMINATION_ENV, str(target))
    storage.write_termination_message("no space left on device writing /a")
    assert target.read_text() == "no space left on device writing /a\n"
    monkeypatch.setenv(storage.TERMINATION_ENV, str(tmp_path / "missing" / "t.log"))
    storage.write_termination_message("never raises")  # best effort


def test_a_torn_last_line_is_ended_before_the_next_attempt_appends(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"seq": 1, "attempt": 1, "type": "log"}) + "\n"
                    + '{"seq": 2, "attempt": 1, "ty')  # killed mid-write
    sink = EventSink(tmp_path, attempt=2)
    sink.log("attempt 2 speaking")
    events = read_events(path)
    assert [(e["attempt"], e["seq"]) for e in events] == [(1, 1), (2, 1)]
