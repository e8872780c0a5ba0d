"""The on-disk verdict cache of the model judges (llm, classifier): reruns cost nothing.

One JSON-lines file per judge, `<output_dir>/judge_cache/<judge name>.jsonl`, each line
`{"key": <sha256>, "value": {...}}`, appended and flushed as each judgement arrives, so a stage
killed half-way keeps what it paid for, and its retry (same output_dir) asks only for the rest.
The key hashes the judge's fingerprint (every setting that changes a verdict: model, prompt kind
and version, template, decoding) with the texts judged (prompt, answer — or both answers of a
pair, in order). A line that cannot be read (a write cut short) is skipped. Delete the file to
ask again. Thread-safe; torch-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CACHE_DIR = "judge_cache"


class VerdictCache:
    def __init__(self, path: Path | None, fingerprint: Mapping[str, Any]) -> None:
        """`path` None: caching is off (every lookup misses, nothing is written)."""
        self.path = path
        self._prefix = json.dumps(dict(fingerprint), sort_keys=True, ensure_ascii=False)
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if path is not None and path.is_file():
            self._entries, skipped = _read(path)
            if skipped:
                log.warning("%s: skipped %d unreadable line(s) (a write cut short?)", path,
                            skipped)

    def key(self, *texts: str) -> str:
        payload = json.dumps([self._prefix, *texts], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = value
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
                f.flush()

    def __len__(self) -> int:
        return len(self._entries)


def _read(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    entries: dict[str, dict[str, Any]] = {}
    skipped = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                entries[str(obj["key"])] = dict(obj["value"])
            except (ValueError, KeyError, TypeError):
                skipped += 1
    return entries, skipped


def cache_path(output_dir: str | Path, judge: str, enabled: bool) -> Path | None:
    return Path(output_dir) / CACHE_DIR / f"{judge}.jsonl" if enabled else None
