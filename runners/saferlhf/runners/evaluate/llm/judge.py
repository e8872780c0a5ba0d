"""The `llm` judge: our prompts (prompts.py) sent through the chat client (client.py), with the
verdict cache (cache.py) in front and a thread pool of `max_concurrency` workers behind.

- Single-answer prompts (`harmlessness`, `strongreject`) give one Verdict per answer.
- `helpfulness` compares two answers; `judge_pairs` asks for one ordering per call, and the
  arena asks both orderings (position swap) and combines them (arena.py `llm_games`).
- A reply that does not parse is asked once more with a reminder; if that fails too, the
  judgement is **unparseable**: cached as such (a rerun does not pay for it again), counted in the
  stage result, and it has no verdict (left out of every rate).
- The cache is consulted first; only the answers it lacks are sent. Identical (prompt, answer)
  texts are judged once.
- A permanent endpoint error stops the stage at once (exit 2); requests that still fail after
  their retries are collected and the stage then fails as transient (exit 75) — what was judged
  stays in the cache, so the scheduler's retry asks only for the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.judge_config import LLMJudge
from saferlhf.runners.evaluate.cache import VerdictCache, cache_path
from saferlhf.runners.evaluate.judges import Verdict
from saferlhf.runners.evaluate.llm import prompts
from saferlhf.runners.evaluate.llm.client import ChatClient, JudgeUnavailable

log = logging.getLogger(__name__)
REPLY_CHARS = 2000  # how much of a judge's reply the cache keeps (for audits)
Progress = Callable[[int, int], None]


def read_api_key(spec: LLMJudge, env: Mapping[str, str], field: str) -> str | None:
    """The key from its environment variable; a clear error when it is named but unset."""
    if spec.api_key is None:
        return None
    value = env.get(spec.api_key.env, "")
    if not value:
        raise InvalidInputError(
            f"judge {spec.name}: environment variable {spec.api_key.env} is not set; export it "
            "where the service runs (local executor), or give api_key.secret (Kubernetes)",
            field=f"{field}.api_key.env")
    return value


def fingerprint(spec: LLMJudge) -> dict[str, Any]:
    """Every setting that changes a verdict (the cache key's prefix)."""
    return {"kind": "llm", "base_url": spec.base_url, "model": spec.model,
            "prompt": spec.prompt, "prompt_version": prompts.PROMPT_VERSION,
            "temperature": spec.temperature, "max_tokens": spec.max_tokens}


class LLMJudgeRun:
    """One llm judge for one stage run: call `judge_answers` / `judge_pairs`, then `stats()`."""

    def __init__(self, spec: LLMJudge, output_dir: str, *, field: str = "judges",
                 env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        key = read_api_key(spec, os.environ if env is None else env, field)
        self.client = ChatClient(
            name=spec.name, base_url=spec.base_url, model=spec.model, api_key=key,
            timeout_seconds=spec.timeout_seconds, max_retries=spec.max_retries,
            backoff_seconds=spec.backoff_seconds, backoff_max_seconds=spec.backoff_max_seconds,
            requests_per_minute=spec.requests_per_minute, sleep=sleep, clock=clock)
        self.cache = VerdictCache(cache_path(output_dir, spec.name, spec.cache),
                                  fingerprint(spec))
        self.judgements = 0
        self.unparseable = 0
        self.reasked = 0
        self._started = clock()
        self._clock = clock

    def close(self) -> None:
        self.client.close()

    # --- asking ----------------------------------------------------------------------------
    def _ask(self, messages: prompts.Messages, kind: str) -> dict[str, Any]:
        """One judgement: ask, parse, ask once more on a bad reply. The cache value."""
        parse = prompts.PARSERS[kind]
        sampling = {"temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens}
        reply = self.client.chat(messages, **sampling).text
        parsed = parse(reply)
        reasked = parsed is None
        if reasked:
            again = [*messages, {"role": "assistant", "content": reply},
                     {"role": "user", "content": prompts.REMINDER}]
            reply = self.client.chat(again, **sampling).text
            parsed = parse(reply)
        return {"parsed": parsed, "reasked": reasked, "reply": reply[:REPLY_CHARS]}

    def _resolve(self, items: Sequence[tuple[str, ...]], kind: str,
                 progress: Progress | None) -> list[dict[str, Any]]:
        """Cache values for `items` (texts tuples), asking the endpoint for the missing ones."""
        keys = [self.cache.key(*texts) for texts in items]
        found = {k: v for k in dict.fromkeys(keys) if (v := self.cache.get(k)) is not None}
        todo = {k: texts for k, texts in zip(keys, items, strict=True) if k not in found}
        build = prompts.BUILDERS[kind]
        failures: list[str] = []
        done = len(items) - sum(k in todo for k in keys)
        step = max(1, len(todo) // 10)
        with ThreadPoolExecutor(max_workers=self.spec.max_concurrency,
                                thread_name_prefix=f"judge-{self.spec.name}") as pool:
            futures = {pool.submit(self._ask, build(*texts), kind): k for k, texts in todo.items()}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        value = future.result()
                    except JudgeUnavailable as e:
                        failures.append(str(e))
                        continue
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        raise
                    self.cache.put(futures[future], value)
                    found[futures[future]] = value
                    done += 1
                    if progress is not None and (done % step == 0 or not pending):
                        progress(done, len(items))
        if failures:
            raise JudgeUnavailable(
                f"{len(failures)} of {len(todo)} judgements of judge {self.spec.name} failed "
                f"after retries (last: {failures[-1]}); the {len(todo) - len(failures)} that "
                "succeeded are cached, so a retry of the stage asks only for the rest")
        values = [found[k] for k in keys]
        self.judgements += len(values)
        self.unparseable += sum(v["parsed"] is None for v in values)
        self.reasked += sum(bool(v.get("reasked")) for k, v in found.items() if k in todo)
        return values

    # --- verdicts --------------------------------------------------------------------------
    def verdict(self, value: Mapping[str, Any]) -> Verdict:
        parsed = value.get("parsed")
        if parsed is None:
            return Verdict(unparseable=True)
        if self.spec.prompt == "strongreject":
            score = prompts.strongreject_score(parsed["refused"], parsed["convincing"],
                                               parsed["specific"])
            return Verdict(harmful=score >= self.spec.harmful_threshold,
                           refusal=bool(parsed["refused"]), score=score)
        return Verdict(harmful=parsed["harmful"], refusal=parsed["refusal"])

    def judge_answers(self, items: Sequence[tuple[str, str]],
                      progress: Progress | None = None) -> list[Verdict]:
        """One Verdict per (prompt, answer); single-answer prompts only."""
        if self.spec.prompt == "helpfulness":
            raise ValueError("the helpfulness prompt compares pairs: use judge_pairs")
        return [self.verdict(v) for v in self._resolve(items, self.spec.prompt, progress)]

    def judge_pairs(self, items: Sequence[tuple[str, str, str]],
                    progress: Progress | None = None) -> list[dict[str, int] | None]:
        """{"a": score, "b": score} (1–10) per (prompt, answer A, answer B), None if unparseable."""
        if self.spec.prompt != "helpfulness":
            raise ValueError(f"judge_pairs needs the helpfulness prompt, not {self.spec.prompt}")
        return [v.get("parsed") for v in self._resolve(items, "helpfulness", progress)]

    def stats(self) -> dict[str, Any]:
        """The judge's accounting for result.json (no secret in it: counts only)."""
        counts = self.client.counts
        cost = (counts["prompt_tokens"] * self.spec.price_per_million_input_tokens
                + counts["completion_tokens"] * self.spec.price_per_million_output_tokens) / 1e6
        return {
            "kind": "llm", "prompt": self.spec.prompt, "model": self.spec.model,
            "judgements": self.judgements, "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses, "cached_entries": len(self.cache),
            "unparseable": self.unparseable, "reasked": self.reasked,
            "requests": counts["requests"], "retries": counts["retries"],
            "retry_reasons": {k.split("/", 1)[1]: v for k, v in sorted(counts.items())
                              if k.startswith("retry/")},
            "prompt_tokens": counts["prompt_tokens"],
            "completion_tokens": counts["completion_tokens"],
            "responses_without_usage": counts["responses_without_usage"],
            "cost": cost, "waited_seconds": round(self.client.waited_seconds, 3),
            "seconds": round(self._clock() - self._started, 3),
        }
