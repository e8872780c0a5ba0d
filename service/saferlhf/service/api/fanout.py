"""WatchJob fan-out: one upstream `app.watch_job` per watched job, shared by every watcher.

Without it, N watchers of a job each re-read the store for every update (N queries per event).
A `JobFeed` pumps the job's updates once, from its first watcher's cursor, into a bounded window
of updates encoded once; each watcher reads the window from its own cursor and waits on one
condition variable. A watcher whose cursor is older than the window (resuming far back, or too
slow to keep up) is served straight from the control plane, so any cursor replays everything.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from saferlhf.service.controlplane import ControlPlane, WatchUpdate

log = logging.getLogger(__name__)

WINDOW = 20_000  # updates kept per job; older ones come from the control plane
POLL_SECONDS = 1.0  # how often a waiting watcher checks that its client is still there


def _same(update: WatchUpdate) -> Any:
    return update


class JobFeed:
    def __init__(self, app: ControlPlane, job_id: str, on_idle: Callable[[JobFeed], None],
                 encode: Callable[[WatchUpdate], Any] = _same, start: int = 0):
        self.app, self.job_id, self._on_idle, self._encode = app, job_id, on_idle, encode
        self._cursors: list[int] = []
        self._updates: list[Any] = []  # encoded once, shared by every watcher
        # The feed starts at its first watcher's cursor (no replay of history nobody asked for);
        # updates with cursor <= floor are not in the window: older cursors read the store.
        self.floor = start
        self.done = False
        self.stopped_idle = False  # the pump stopped because nobody watched, not at the job's end
        self.error: BaseException | None = None
        self.watchers = 0
        self._cond = threading.Condition()
        self._source = app.watch_job(job_id, after_cursor=start)  # NotFound raises here

    def start(self) -> None:
        threading.Thread(target=self._pump, name=f"watch-{self.job_id}", daemon=True).start()

    def _pump(self) -> None:
        try:
            for update in self._source:
                encoded = self._encode(update)
                with self._cond:
                    self._cursors.append(update.cursor)
                    self._updates.append(encoded)
                    if len(self._updates) > 2 * WINDOW:
                        self.floor = self._cursors[WINDOW - 1]
                        del self._cursors[:WINDOW], self._updates[:WINDOW]
                    self._cond.notify_all()
                    if self.watchers == 0:
                        self.stopped_idle = True  # nobody listens; a new feed starts later
                        break
        except BaseException as exc:  # handed to the watchers, which raise it
            self.error = exc
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()
            self._on_idle(self)

    def follow(self, after: int, active: Callable[[], bool]) -> Iterator[Any]:
        position = after
        while True:
            with self._cond:
                if position < self.floor:
                    fallback = True
                else:
                    fallback = False
                    start = bisect.bisect_right(self._cursors, position)
                    batch = self._updates[start:]
                    cursors = self._cursors[start:]
                    if not batch and self.done:
                        if self.error is not None:
                            raise self.error
                        if not self.stopped_idle:
                            return  # the job ended and every update was delivered
                        fallback = True
                    elif not batch:
                        self._cond.wait(timeout=POLL_SECONDS)
                        if not active():
                            return
                        continue
            if fallback:
                for update in self.app.watch_job(self.job_id, after_cursor=position):
                    yield self._encode(update)
                return
            for cursor, encoded in zip(cursors, batch, strict=True):
                position = cursor
                yield encoded


class WatchHub:
    """The feeds of the jobs being watched right now."""

    def __init__(self, app: ControlPlane, encode: Callable[[WatchUpdate], Any] = _same) -> None:
        self.app = app
        self._encode = encode
        self._feeds: dict[str, JobFeed] = {}
        self._lock = threading.Lock()

    def _drop(self, feed: JobFeed) -> None:
        with self._lock:
            if self._feeds.get(feed.job_id) is feed:
                del self._feeds[feed.job_id]

    def watch(self, job_id: str, after_cursor: int,
              active: Callable[[], bool] = lambda: True) -> Iterator[Any]:
        with self._lock:
            existing = self._feeds.get(job_id)
            if existing is None or existing.done:
                feed = JobFeed(self.app, job_id, self._drop, self._encode, after_cursor)
                self._feeds[job_id] = feed
                feed.watchers += 1
                feed.start()
            else:
                feed = existing
                feed.watchers += 1
        return self._follow(feed, after_cursor, active)

    def _follow(self, feed: JobFeed, after: int, active: Callable[[], bool]
                ) -> Iterator[Any]:
        try:
            yield from feed.follow(after, active)
        finally:
            with self._lock:
                feed.watchers -= 1
