"""Run a call under a deadline, so a step that can hang (a weight sync into the rollout engine)
fails the attempt with a retryable error instead of hanging it silently.

The call runs in a daemon worker thread; the caller waits on an Event with a timeout, which
cannot itself hang. On time, the call's result is returned (or its exception re-raised). Late:
every thread's stack is dumped to stderr (faulthandler, C-level: shows where the call was stuck),
`DeadlineExceeded` is raised (exit 75 through the stage CLI), and a backstop is armed — a daemon
timer that ends the process with exit 75 after `grace_seconds` in case the clean exit is itself
blocked by the stuck call (an engine shutdown waiting on it). A call cannot be cancelled, so the
worker thread is abandoned; the process is about to exit anyway.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from saferlhf.runners.common.errors import EXIT_TRANSIENT, TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")
BACKSTOP_GRACE_SECONDS = 120.0


class DeadlineExceeded(TransientError):
    """A call missed its deadline: the attempt fails and is retried (exit 75)."""


def call_with_deadline(
    fn: Callable[[], T],
    seconds: float,
    *,
    what: str,
    hint: str = "",
    grace_seconds: float = BACKSTOP_GRACE_SECONDS,
    hard_exit: Callable[[int], Any] = os._exit,
) -> T:
    """fn() if it finishes within `seconds`; otherwise raise DeadlineExceeded (module docstring).

    `hard_exit` is the backstop's exit (tests pass a fake; the default ends the process).
    """
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller, re-raised there
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name=f"deadline:{what}", daemon=True).start()
    if not done.wait(seconds):
        _dump_stacks()
        _arm_backstop(grace_seconds, hard_exit, what)
        message = f"{what} did not finish within its deadline of {seconds:g} s"
        raise DeadlineExceeded(f"{message}; failing the attempt so it is retried"
                               + (f" ({hint})" if hint else ""))
    if "error" in box:
        raise box["error"]
    return box["value"]


def _dump_stacks() -> None:
    try:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    except (OSError, ValueError, AttributeError):  # stderr closed or not a real file
        log.warning("could not dump thread stacks")


def _arm_backstop(grace_seconds: float, hard_exit: Callable[[int], Any], what: str) -> None:
    def fire() -> None:
        with contextlib.suppress(OSError):
            os.write(2, f"{what}: the process did not exit within {grace_seconds:g} s of missing "
                        f"its deadline; exiting with {EXIT_TRANSIENT}\n".encode())
        hard_exit(EXIT_TRANSIENT)

    timer = threading.Timer(grace_seconds, fire)
    timer.daemon = True
    timer.start()
