"""A small client for OpenAI-compatible `POST {base_url}/chat/completions` (OpenAI, vLLM's
server, and the many proxies that speak the same API), built on httpx.

What it guarantees:
- **retries**: a timeout, a connection error, HTTP 429 or any 5xx (and a 200 whose body is not a
  chat completion) is retried up to `max_retries` times, waiting backoff·2^k seconds (k = 0, 1, …)
  capped at `backoff_max_seconds`; a `Retry-After` header in seconds wins when it is longer (still
  capped). When retries run out: `JudgeUnavailable` (a TransientError, exit 75: the scheduler
  retries the stage, and the verdict cache keeps what was already judged).
- **permanent errors** (any other 4xx: a wrong key, model or URL) raise `JudgeEndpointError`
  (exit 2) at once, naming the judge, the status and the server's short message.
- **rate limit**: with `requests_per_minute`, request starts are spaced evenly (ratelimit.py).
- **accounting**: requests, retries by reason, tokens from `usage` (prompt / completion).
- **the API key** is read from its environment variable by the caller and sent only as the
  `Authorization: Bearer` header; every text this client hands back or puts in an error has the
  key replaced by `[redacted]` (a proxy that echoes headers cannot leak it into results or logs).
Thread-safe: one instance serves every worker thread (httpx.Client pools connections).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from saferlhf.runners.common.errors import InvalidInputError, TransientError
from saferlhf.runners.evaluate.llm.ratelimit import RateLimiter

log = logging.getLogger(__name__)
REDACTED = "[redacted]"
BODY_SNIPPET_CHARS = 300


class JudgeEndpointError(InvalidInputError):
    """The endpoint refused the request for good (4xx other than 429): fix the judge settings."""


class JudgeUnavailable(TransientError):
    """The endpoint kept failing (timeouts, 429, 5xx) after every retry."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None


class Redactor:
    """Replaces the secret in any text (no-op without a secret)."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or None

    def __call__(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if self._secret else text


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """A Retry-After header in seconds (HTTP dates are ignored: the backoff applies)."""
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ChatClient:
    def __init__(
        self, *, name: str, base_url: str, model: str, api_key: str | None,
        timeout_seconds: float, max_retries: int, backoff_seconds: float,
        backoff_max_seconds: float, requests_per_minute: float | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.model = name, model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_retries, self.backoff, self.backoff_max = (max_retries, backoff_seconds,
                                                            backoff_max_seconds)
        self.redact = Redactor(api_key)
        self._sleep = sleep
        self.limiter = (RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
                        if requests_per_minute else None)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(headers=headers, timeout=timeout_seconds,
                                  follow_redirects=False)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # requests, retries, retry/<reason>, tokens …
        self.waited_seconds = 0.0  # in the rate limiter and in backoff

    def close(self) -> None:
        self._http.close()

    def _count(self, **deltas: float) -> None:
        with self._lock:
            for k, v in deltas.items():
                if k == "waited_seconds":
                    self.waited_seconds += v
                else:
                    self.counts[k] += int(v)

    def chat(self, messages: Sequence[Mapping[str, str]], *, temperature: float,
             max_tokens: int) -> Completion:
        """One chat completion, retried as the module docstring says."""
        body = {"model": self.model, "messages": list(messages), "temperature": temperature,
                "max_tokens": max_tokens}
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if self.limiter is not None:
                self._count(waited_seconds=self.limiter.acquire())
            self._count(requests=1)
            retry_after = None
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TimeoutException:
                last, reason = "timed out", "timeout"
            except httpx.TransportError as e:
                last, reason = f"connection failed ({type(e).__name__})", "connection"
            else:
                status = response.status_code
                if status == 200:
                    completion = self._completion(response)
                    if completion is not None:
                        return completion
                    last, reason = "HTTP 200 without a chat completion in the body", "bad_body"
                elif status == 429 or status >= 500:
                    last, reason = f"HTTP {status}: {self._snippet(response)}", f"http_{status}"
                    retry_after = retry_after_seconds(response.headers)
                else:
                    raise JudgeEndpointError(
                        f"judge {self.name}: {self.url} answered HTTP {status}: "
                        f"{self._snippet(response)} — check base_url, model and api_key "
                        "(permanent: not retried)", field="judges")
            if attempt == self.max_retries:
                break
            delay = self.backoff * 2.0 ** attempt
            if retry_after is not None:
                delay = max(delay, retry_after)
            delay = min(delay, self.backoff_max)
            self._count(retries=1, **{f"retry/{reason}": 1}, waited_seconds=delay)
            log.warning("judge %s: %s; retry %d/%d in %.1f s", self.name, last, attempt + 1,
                        self.max_retries, delay)
            self._sleep(delay)
        raise JudgeUnavailable(f"judge {self.name}: {self.url}: {last} after "
                               f"{self.max_retries + 1} attempt(s)")

    def _snippet(self, response: httpx.Response) -> str:
        text = self.redact(response.text or "").strip().replace("\n", " ")
        return text[:BODY_SNIPPET_CHARS] or "(empty body)"

    def _completion(self, response: httpx.Response) -> Completion | None:
        try:
            data: Any = response.json()
            content = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
        if not isinstance(content, str):
            return None
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        prompt_tokens = prompt_tokens if isinstance(prompt_tokens, int) else None
        completion_tokens = completion_tokens if isinstance(completion_tokens, int) else None
        self._count(prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0,
                    **({} if usage else {"responses_without_usage": 1}))
        return Completion(self.redact(content), prompt_tokens, completion_tokens)
