"""WatchJob fan-out: many watchers share one upstream watch; any cursor still replays all."""

from __future__ import annotations

import threading

from saferlhf.service.api import fanout
from saferlhf.service.api.fanout import WatchHub
from saferlhf.service.state.types import JobState

from tests.unit.service.api.fake_controlplane import FakeControlPlane

SPEC = "kind: SafeRLHFJob\nmetadata: {name: t}\n"


class CountingApp(FakeControlPlane):
    def __init__(self) -> None:
        super().__init__()
        self.watch_calls = 0

    def watch_job(self, job_id, *, after_cursor=0):
        self.watch_calls += 1
        return super().watch_job(job_id, after_cursor=after_cursor)


def _job(app: FakeControlPlane) -> str:
    return app.create_job(SPEC, project=None, request_id="", validate_only=False).id


def test_twenty_watchers_share_one_upstream_watch_and_all_see_every_update():
    app = CountingApp()
    job_id = _job(app)
    hub = WatchHub(app)
    seen: list[list[int]] = []
    lock = threading.Lock()
    started = threading.Barrier(21)

    def watch() -> None:
        updates = hub.watch(job_id, 0)
        started.wait()
        got = [u.cursor for u in updates]
        with lock:
            seen.append(got)
    threads = [threading.Thread(target=watch) for _ in range(20)]
    for t in threads:
        t.start()
    started.wait()
    for state in (JobState.RUNNING, JobState.PAUSED, JobState.RUNNING, JobState.SUCCEEDED):
        app.set_state(job_id, state)
    for t in threads:
        t.join(timeout=10)
    assert seen == [[1, 2, 3, 4, 5]] * 20
    assert app.watch_calls == 1


def test_a_cursor_older_than_the_window_is_replayed_from_the_control_plane(monkeypatch):
    monkeypatch.setattr(fanout, "WINDOW", 3)
    app = CountingApp()
    job_id = _job(app)
    for _ in range(5):
        app.set_state(job_id, JobState.RUNNING)
        app.set_state(job_id, JobState.PAUSED)
    app.set_state(job_id, JobState.SUCCEEDED)  # cursors 1..12
    hub = WatchHub(app)
    assert [u.cursor for u in hub.watch(job_id, 0)] == list(range(1, 13))
    assert [u.cursor for u in hub.watch(job_id, 9)] == [10, 11, 12]


def test_a_watcher_resuming_mid_stream_gets_only_later_updates():
    app = CountingApp()
    job_id = _job(app)
    app.set_state(job_id, JobState.RUNNING)
    app.set_state(job_id, JobState.FAILED)
    hub = WatchHub(app)
    assert [u.cursor for u in hub.watch(job_id, 2)] == [3]
    assert [u.kind for u in hub.watch(job_id, 0)] == ["job", "job", "job"]


def test_a_feed_starts_at_its_first_watchers_cursor_and_older_cursors_still_replay():
    app = CountingApp()
    job_id = _job(app)
    for _ in range(3):
        app.set_state(job_id, JobState.RUNNING)
        app.set_state(job_id, JobState.PAUSED)  # cursors 1..7
    hub = WatchHub(app)
    late = hub.watch(job_id, 6)
    early = hub.watch(job_id, 0)
    app.set_state(job_id, JobState.SUCCEEDED)  # cursor 8
    assert [u.cursor for u in late] == [7, 8]
    assert [u.cursor for u in early] == list(range(1, 9))
