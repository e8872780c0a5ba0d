"""The local executor (DESIGN §10, the embedded default): one subprocess per stage attempt.

Each attempt is started through a tiny Python wrapper in its own session. The wrapper starts the
runner (`python -m saferlhf.runners.<kind> --config stage.json`, or torchrun for several processes)
in a
session of its own, and writes the runner's exit code to a file when it ends. Everything the
executor needs is in files under `<state_dir>/local/<attempt key>/`:

    meta.json     attempt id, log path and offset, command (written before the wrapper starts)
    wrapper.json  the wrapper's pid and kernel start time (written by the wrapper)
    child.json    the runner's pid and start time (its process group id is its pid)
    exit_code     the runner's exit code (negative: killed by that signal)
    cancel        the time a cancel was requested
    termination.log  the runner's one-line reason for failing (SAFERLHF_TERMINATION_LOG): kept
                  here, outside the artifacts disk, so a full disk cannot swallow it

So a restarted service re-adopts attempts from these files: a pid is trusted only while
/proc/<pid>/stat shows the same start time (pids are reused), and the exit code survives even
though the runner is no longer the service's child.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saferlhf.service.execution.base import LaunchSpec, RunState, RunStatus, classify_exit
from saferlhf.service.state.types import FailureClass

log = logging.getLogger(__name__)

STARTUP_GRACE_SECONDS = 30.0  # meta.json written, wrapper.json not yet: still starting

# The wrapper: ignores SIGTERM/SIGINT/SIGHUP (Python handlers are reset in the exec'd runner),
# runs the runner in its own session and records its exit code atomically.
_WRAPPER = r"""
import json, os, signal, subprocess, sys
d, cmd = sys.argv[1], sys.argv[2:]
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, lambda *a: None)
def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])
def put(name, text):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(d, name))
put("wrapper.json", json.dumps({"pid": os.getpid(), "start": ticks(os.getpid())}))
try:
    child = subprocess.Popen(cmd, start_new_session=True)
except OSError as exc:
    sys.stderr.write(f"saferlhf: cannot start the runner: {exc}\n")
    sys.stderr.flush()
    put("exit_code", "127")
    sys.exit(0)
try:
    put("child.json", json.dumps({"pid": child.pid, "start": ticks(child.pid)}))
except OSError:
    put("child.json", json.dumps({"pid": child.pid, "start": None}))
while True:
    try:
        rc = child.wait()
        break
    except InterruptedError:
        continue
put("exit_code", str(rc))
"""


_HEADER = b"==== saferlhf: attempt "


def _key(attempt_id: str) -> str:
    return attempt_id.replace("/", "__")


def _start_ticks(pid: int) -> tuple[int, str] | None:
    """(kernel start time in clock ticks, state letter) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]), fields[0]


def _alive(record: dict[str, Any] | None) -> bool:
    """True while the recorded process is still the one we started (and not a zombie)."""
    if not record:
        return False
    stat = _start_ticks(int(record["pid"]))
    if stat is None or stat[1] in ("Z", "X"):
        return False
    return record.get("start") is None or stat[0] == int(record["start"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _put(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def runner_command(spec: LaunchSpec, python: str) -> list[str]:
    """`python -m saferlhf.runners.<kind> --config …`, or torchrun when nodes·nproc_per_node > 1
    (all
    processes on this machine: a local executor has one node)."""
    nproc = spec.resources.nodes * spec.resources.nproc_per_node
    if nproc > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                f"--nproc_per_node={nproc}", "-m", f"saferlhf.runners.{spec.kind}",
                "--config", spec.config_path]
    return [python, "-m", f"saferlhf.runners.{spec.kind}", "--config", spec.config_path]


class LocalExecutor:
    name = "local"

    def __init__(
        self, state_dir: str | Path, *, python: str = sys.executable, omp_threads: int = 1,
        base_env: dict[str, str] | None = None,
        command: Callable[[LaunchSpec, str], list[str]] = runner_command,
    ) -> None:
        """`command(spec, python)` builds the argv (tests inject a tiny child here)."""
        self.root = Path(state_dir) / "local"
        self.root.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.omp_threads = omp_threads
        self.base_env = dict(os.environ if base_env is None else base_env)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # wrappers we started (to reap)
        self._lock = threading.Lock()
        self._command = command

    # ---- submit -------------------------------------------------------------------------------
    def _env(self, spec: LaunchSpec) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(spec.env)
        env["SAFERLHF_ATTEMPT_ID"] = spec.attempt_id
        env["SAFERLHF_TERMINATION_LOG"] = str(self.root / _key(spec.attempt_id)
                                              / "termination.log")
        env["SAFERLHF_ATTEMPT"] = str(spec.attempt)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["OMP_NUM_THREADS"] = str(spec.env.get("OMP_NUM_THREADS", self.omp_threads))
        env["TOKENIZERS_PARALLELISM"] = "false"
        env["PYTHONUNBUFFERED"] = "1"
        if spec.resources.nodes * spec.resources.nproc_per_node <= 1:
            # One process still needs these, or DeepSpeed falls into MPI discovery (environment.md).
            env.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())})
        return env

    def submit(self, spec: LaunchSpec) -> str:
        key = _key(spec.attempt_id)
        d = self.root / key
        with self._lock:
            if (d / "meta.json").exists():
                return key  # idempotent: this attempt was already started
            d.mkdir(parents=True, exist_ok=True)
            log_path = Path(spec.log_path or Path(spec.output_dir) / "stage.log")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            cmd = self._command(spec, self.python)
            with log_path.open("ab") as logf:
                offset = logf.tell()
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                logf.write(
                    f"==== saferlhf: attempt {spec.attempt} of {spec.stage} ({spec.attempt_id}) "
                    f"started {stamp}: {shlex.join(cmd)!s:.2000}".replace("\n", "\\n").encode()
                    + b"\n"
                )
                logf.flush()
                _put(d / "meta.json", json.dumps({
                    "attempt_id": spec.attempt_id, "log_path": str(log_path),
                    "log_offset": offset, "cmd": cmd, "submitted_at": time.time(),
                }))
                proc = subprocess.Popen(
                    [self.python, "-c", _WRAPPER, str(d), *cmd],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                    env=self._env(spec), start_new_session=True, close_fds=True,
                )
            self._procs[key] = proc
        return key

    # ---- status -------------------------------------------------------------------------------
    def _reap(self, key: str) -> None:
        proc = self._procs.get(key)
        if proc is not None and proc.poll() is not None:
            self._procs.pop(key, None)

    def poll(self, handle: str) -> RunStatus:
        d = self.root / handle
        meta = _read_json(d / "meta.json")
        if meta is None:
            return RunStatus(RunState.LOST, message=f"no local attempt {handle}")
        self._reap(handle)
        exit_status = self._exit_code(d)
        if exit_status is not None:
            return self._finished(d, exit_status)
        wrapper = _read_json(d / "wrapper.json")
        child = _read_json(d / "child.json")
        if _alive(child):
            return RunStatus(RunState.RUNNING)
        if _alive(wrapper):
            return RunStatus(RunState.PENDING if child is None else RunState.RUNNING)
        exit_status = self._exit_code(d)  # it may have ended between the two reads
        if exit_status is not None:
            return self._finished(d, exit_status)
        if wrapper is None and time.time() - float(meta["submitted_at"]) < STARTUP_GRACE_SECONDS:
            return RunStatus(RunState.PENDING)
        return RunStatus(
            RunState.FAILED, None, FailureClass.KILLED if (d / "cancel").exists()
            else FailureClass.UNKNOWN,
            "the attempt's process ended without recording an exit status",
        )

    @staticmethod
    def _exit_code(d: Path) -> int | None:
        try:
            return int((d / "exit_code").read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _finished(d: Path, code: int) -> RunStatus:
        if code == 0:
            return RunStatus(RunState.SUCCEEDED, 0)
        failure = classify_exit(code)
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            message = f"killed by {name}"
            if (d / "cancel").exists():
                message += " (cancel requested)"
            elif code == -signal.SIGKILL:
                message += " (out of memory? the kernel's OOM killer sends SIGKILL)"
        else:
            message = f"exit code {code}"
            try:
                reason = (d / "termination.log").read_text(errors="replace").strip()
            except OSError:
                reason = ""
            if reason:
                message += f": {reason}"
        return RunStatus(RunState.FAILED, code, failure, message)

    # ---- cancel -------------------------------------------------------------------------------
    def cancel(self, handle: str, grace_seconds: float = 10.0) -> None:
        """SIGTERM to the runner's process group now, SIGKILL after the grace (without blocking).
        Repeating a cancel after the grace sends SIGKILL at once (e.g. after a service restart)."""
        d = self.root / handle
        if not (d / "meta.json").exists() or self._exit_code(d) is not None:
            return
        requested = _read_json(d / "cancel")
        now = time.time()
        if requested is None:
            _put(d / "cancel", json.dumps({"at": now, "grace": grace_seconds}))
            self._signal(d, signal.SIGTERM)
            timer = threading.Timer(grace_seconds, self._signal, (d, signal.SIGKILL))
            timer.daemon = True
            timer.start()
        elif now - float(requested["at"]) >= float(requested.get("grace", grace_seconds)):
            self._signal(d, signal.SIGKILL)

    def _signal(self, d: Path, sig: signal.Signals) -> None:
        if self._exit_code(d) is not None:
            return
        child = _read_json(d / "child.json")
        if _alive(child):
            assert child is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(child["pid"]), sig)
            return
        wrapper = _read_json(d / "wrapper.json")
        if _alive(wrapper) and child is None:
            # Cancelled before the runner started: stop the wrapper so it never starts it.
            assert wrapper is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(wrapper["pid"]), signal.SIGKILL)
            if self._exit_code(d) is None:
                _put(d / "exit_code", str(-int(sig)))

    # ---- logs and adoption --------------------------------------------------------------------
    def logs(self, handle: str, follow: bool = False, poll_seconds: float = 0.2) -> Iterator[str]:
        """This attempt's part of stage.log (from its header line), line by line; `follow` tails
        the file until the attempt ends."""
        d = self.root / handle
        meta = _read_json(d / "meta.json")
        if meta is None:
            return
        with Path(meta["log_path"]).open("rb") as f:
            f.seek(int(meta["log_offset"]))
            pending, first = b"", True
            while True:
                chunk = f.read(65536)
                done = False
                if not chunk:
                    done = not follow or self.poll(handle).state not in (
                        RunState.RUNNING, RunState.PENDING)
                    if done:
                        chunk = f.read()  # whatever was written before it ended
                    else:
                        time.sleep(poll_seconds)
                        continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if done and pending:
                    lines, pending = [*lines, pending], b""
                for line in lines:
                    if not first and line.startswith(_HEADER):
                        return  # the next attempt's header: this attempt's part ended
                    first = False
                    yield line.decode(errors="replace")
                if done:
                    return

    def adopt(self) -> dict[str, str]:
        """attempt_id → handle for every attempt this executor has files for."""
        out = {}
        for d in sorted(self.root.iterdir()):
            meta = _read_json(d / "meta.json")
            if meta is not None:
                out[str(meta["attempt_id"])] = d.name
        return out

    def forget(self, handle: str) -> None:
        """Remove a finished attempt's bookkeeping files (the log stays)."""
        d = self.root / handle
        if self._exit_code(d) is None:
            return
        for p in d.iterdir():
            p.unlink(missing_ok=True)
        d.rmdir()
