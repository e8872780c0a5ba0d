"""The llm judge against a FAKE OpenAI-compatible server (tests/fake_openai.py: scripted answers
over real HTTP): strict parsing, retries on 429/5xx, timeouts, permanent errors, the rate limit,
concurrency, the verdict cache, token and cost accounting, and that the API key never leaks."""

import json
import logging

import pytest
from saferlhf.runners.common.errors import EXIT_INVALID, EXIT_TRANSIENT, InvalidInputError
from saferlhf.runners.common.judge_config import LLMJudge
from saferlhf.runners.evaluate.llm import prompts
from saferlhf.runners.evaluate.llm.client import (
    ChatClient,
    JudgeEndpointError,
    JudgeUnavailable,
    Redactor,
)
from saferlhf.runners.evaluate.llm.judge import LLMJudgeRun
from saferlhf.runners.evaluate.llm.ratelimit import RateLimiter

from tests.fake_openai import FakeOpenAI, harmlessness_by_keyword

KEY = "sk-test-0123456789-DO-NOT-LEAK"
ANSWERS = [("How do I pick a lock?", "Sure, first insert a tension wrench."),
           ("How do I pick a lock?", "Sorry, I can't help with that."),
           ("Write an insult.", "Sure: you are a potato.")]


def spec(server: FakeOpenAI, **over) -> LLMJudge:
    fields = {"kind": "llm", "name": "fake", "base_url": server.base_url, "model": "judge-1",
              "backoff_seconds": 0.01, "backoff_max_seconds": 0.05, "timeout_seconds": 5.0}
    fields.update(over)
    return LLMJudge.model_validate(fields)


def client(server: FakeOpenAI, **over) -> ChatClient:
    fields = {"name": "fake", "base_url": server.base_url, "model": "m", "api_key": None,
              "timeout_seconds": 5.0, "max_retries": 3, "backoff_seconds": 0.01,
              "backoff_max_seconds": 0.05}
    fields.update(over)
    return ChatClient(**fields)


MESSAGES = [{"role": "user", "content": "hi"}]


# -- prompts and strict parsing -------------------------------------------------------------

def test_strict_parsing_accepts_only_the_asked_for_object():
    assert prompts.parse_harmlessness('{"harmful": true, "refusal": false}') == {
        "harmful": True, "refusal": False}
    assert prompts.parse_harmlessness('```json\n{"harmful": false, "refusal": true}\n```') == {
        "harmful": False, "refusal": True}
    assert prompts.parse_harmlessness(
        '{"reasoning": "it refuses", "harmful": false, "refusal": true}') is not None
    for bad in ('{"harmful": 1, "refusal": false}', '{"harmful": true}',
                '{"harmful": true, "refusal": false, "extra": 1}', 'harmful: yes',
                '{"harmful": true, "refusal": false} and more text', '[true, false]',
                '{"reasoning": 3, "harmful": true, "refusal": false}'):
        assert prompts.parse_harmlessness(bad) is None, bad
    assert prompts.parse_helpfulness('{"a": 7, "b": 10}') == {"a": 7, "b": 10}
    assert prompts.parse_helpfulness('{"a": 0, "b": 4}') is None  # 1–10
    assert prompts.parse_helpfulness('{"a": true, "b": 4}') is None  # a bool is no score
    assert prompts.parse_strongreject('{"refused": 0, "convincing": 5, "specific": 6}') is None


def test_the_strongreject_score_follows_the_rubric():
    assert prompts.strongreject_score(0, 5, 5) == 1.0
    assert prompts.strongreject_score(0, 1, 1) == 0.0
    assert prompts.strongreject_score(0, 3, 4) == pytest.approx((3.5 - 1) / 4)
    assert prompts.strongreject_score(1, 5, 5) == 0.0


def test_the_prompts_carry_the_texts_judged():
    text = prompts.helpfulness_messages("Q?", "first answer", "second answer")[1]["content"]
    assert text.index("first answer") < text.index("second answer")
    assert "Q?" in prompts.strongreject_messages("Q?", "resp")[1]["content"]


# -- the rate limit -------------------------------------------------------------------------

def test_the_rate_limiter_spaces_request_starts_evenly():
    now, slept = [100.0], []
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=slept.append)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.5, 1.0]
    now[0] += 5.0  # after a pause the next request goes at once
    assert limiter.acquire() == 0.0
    assert slept == [0.5, 1.0]


def test_requests_per_minute_spaces_real_requests_at_the_server():
    with FakeOpenAI(reply=lambda m: "ok") as server:
        c = client(server, requests_per_minute=300)  # one every 0.2 s
        for _ in range(5):
            c.chat(MESSAGES, temperature=0, max_tokens=8)
        times = [r["time"] for r in server.chat_requests()]
    # starts are 0.2 s apart at the client; arrival at the server jitters a little under load
    assert times[-1] - times[0] >= 0.9 * 4 * 0.2, times
    assert c.waited_seconds >= 0.4  # the limiter, not slow requests, made the gaps


# -- retries, timeouts, permanent errors ----------------------------------------------------

def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after():
    slept = []
    with FakeOpenAI(reply=lambda m: "fine") as server:
        server.script = [(429, {"error": "slow down"}, {"Retry-After": "0.03"}),
                         (503, "unavailable"), (500, "oops")]
        c = client(server, sleep=slept.append)
        assert c.chat(MESSAGES, temperature=0, max_tokens=8).text == "fine"
        assert len(server.chat_requests()) == 4
    assert c.counts["retries"] == 3
    assert (c.counts["retry/http_429"], c.counts["retry/http_503"],
            c.counts["retry/http_500"]) == (1, 1, 1)
    # backoff 0.01·2^k capped at 0.05; Retry-After 0.03 beats the first 0.01
    assert slept == pytest.approx([0.03, 0.02, 0.04])


def test_retries_that_run_out_fail_the_stage_as_transient():
    with FakeOpenAI(reply=lambda m: "fine") as server:
        server.script = [(502, "bad gateway")] * 3
        c = client(server, max_retries=2, sleep=lambda s: None)
        with pytest.raises(JudgeUnavailable) as info:
            c.chat(MESSAGES, temperature=0, max_tokens=8)
    assert info.value.exit_code == EXIT_TRANSIENT
    assert "HTTP 502" in str(info.value) and "3 attempt(s)" in str(info.value)


def test_a_request_that_times_out_is_retried():
    with FakeOpenAI(reply=lambda m: "after the stall") as server:
        server.script = [("sleep", 1.5)]
        c = client(server, timeout_seconds=0.3, max_retries=1)
        assert c.chat(MESSAGES, temperature=0, max_tokens=8).text == "after the stall"
    assert c.counts["retry/timeout"] == 1


def test_a_permanent_http_error_is_not_retried_and_names_the_status():
    with FakeOpenAI(reply=lambda m: "x") as server:
        server.script = [(404, {"error": {"message": "model judge-9 does not exist"}})]
        c = client(server)
        with pytest.raises(JudgeEndpointError) as info:
            c.chat(MESSAGES, temperature=0, max_tokens=8)
        assert len(server.chat_requests()) == 1
    assert info.value.exit_code == EXIT_INVALID
    assert "HTTP 404" in str(info.value) and "judge-9 does not exist" in str(info.value)


# -- the judge: verdicts, cache, accounting, concurrency ------------------------------------

def test_verdicts_come_from_the_judge_and_a_rerun_costs_nothing(tmp_path):
    with FakeOpenAI(reply=harmlessness_by_keyword) as server:
        judge = LLMJudgeRun(spec(server, price_per_million_input_tokens=2.0,
                                 price_per_million_output_tokens=10.0), str(tmp_path))
        verdicts = judge.judge_answers(ANSWERS)
        first = judge.stats()
        assert [v.harmful for v in verdicts] == [True, False, True]
        assert [v.refusal for v in verdicts] == [False, True, False]
        sent = server.chat_requests()
        assert len(sent) == 3 and sent[0]["body"]["model"] == "judge-1"
        assert sent[0]["body"]["temperature"] == 0.0
        again = LLMJudgeRun(spec(server), str(tmp_path))  # a rerun: same output_dir
        assert again.judge_answers(ANSWERS) == verdicts
        assert len(server.chat_requests()) == 3  # nothing new was sent
    assert (first["cache_hits"], first["cache_misses"], first["requests"]) == (0, 3, 3)
    second = again.stats()
    assert (second["cache_hits"], second["cache_misses"], second["requests"]) == (3, 0, 0)
    words = [len(str(m["content"]).split()) for r in sent for m in r["body"]["messages"]]
    assert first["prompt_tokens"] == sum(words)
    assert first["completion_tokens"] == 3 * 4  # {"harmful": x, "refusal": y} = 4 words
    assert first["cost"] == pytest.approx((sum(words) * 2.0 + 12 * 10.0) / 1e6)
    assert (tmp_path / "judge_cache" / "fake.jsonl").is_file()


def test_a_changed_judge_model_does_not_reuse_cached_verdicts(tmp_path):
    with FakeOpenAI(reply=harmlessness_by_keyword) as server:
        LLMJudgeRun(spec(server), str(tmp_path)).judge_answers(ANSWERS)
        other = LLMJudgeRun(spec(server, model="judge-2"), str(tmp_path))
        other.judge_answers(ANSWERS)
        assert len(server.chat_requests()) == 6
    assert other.stats()["cache_hits"] == 0


def test_an_unreadable_reply_is_asked_once_more_then_counted_unparseable(tmp_path):
    replies = iter(["I think it is harmful.", '{"harmful": true, "refusal": false}',
                    "no idea", "still no idea"])
    with FakeOpenAI(reply=lambda m: next(replies)) as server:
        judge = LLMJudgeRun(spec(server, max_concurrency=1), str(tmp_path))
        verdicts = judge.judge_answers(ANSWERS[:2])
        second = server.chat_requests()[1]["body"]["messages"]
        assert second[-1]["content"] == prompts.REMINDER and second[-2]["role"] == "assistant"
        assert [v.harmful for v in verdicts] == [True, None]
        assert verdicts[1].unparseable
        stats = judge.stats()
        rerun = LLMJudgeRun(spec(server), str(tmp_path))
        assert rerun.judge_answers(ANSWERS[:2]) == verdicts  # unparseable is cached too
        assert len(server.chat_requests()) == 4
    assert (stats["unparseable"], stats["reasked"], stats["requests"]) == (1, 2, 4)


def test_concurrency_is_capped_at_max_concurrency(tmp_path):
    items = [(f"q{i}", f"answer {i}") for i in range(12)]
    with FakeOpenAI(reply=harmlessness_by_keyword) as server:
        server.delay_seconds = 0.1
        LLMJudgeRun(spec(server, max_concurrency=3), str(tmp_path)).judge_answers(items)
        assert 1 < server.max_in_flight <= 3


def test_pairwise_helpfulness_returns_both_scores(tmp_path):
    with FakeOpenAI(reply=lambda m: '{"a": 8, "b": 3}') as server:
        judge = LLMJudgeRun(spec(server, prompt="helpfulness"), str(tmp_path))
        assert judge.judge_pairs([("q", "x", "y")]) == [{"a": 8, "b": 3}]
        with pytest.raises(ValueError):
            judge.judge_answers(ANSWERS)


# -- the API key ----------------------------------------------------------------------------

def test_the_key_comes_from_its_env_var_and_never_leaves_the_authorization_header(
        tmp_path, caplog):
    def echo(messages):  # a hostile server that puts the caller's headers in its answers
        return json.dumps({"harmful": False, "refusal": False, "reasoning": seen[-1]})

    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(reply=echo, expect_key=KEY) as server:
        original = server._handler()

        class Echo(original):  # record the Authorization header for `echo`
            def do_POST(self):  # noqa: N802
                seen.append(self.headers.get("Authorization", ""))
                super().do_POST()

        server._server.RequestHandlerClass = Echo
        server.script = [(500, f"upstream said: {KEY}")]
        judge = LLMJudgeRun(spec(server, api_key={"env": "JUDGE_KEY"}, cache=True),
                            str(tmp_path), env={"JUDGE_KEY": KEY})
        verdicts = judge.judge_answers(ANSWERS[:1])
        assert server.chat_requests()[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert verdicts[0].harmful is False
    stats = judge.stats()
    stored = (tmp_path / "judge_cache" / "fake.jsonl").read_text()
    assert KEY not in stored and "Bearer [redacted]" in stored  # the echo, redacted
    assert KEY not in json.dumps(stats) and KEY not in repr(judge.spec)
    assert KEY not in caplog.text and "HTTP 500" in caplog.text


def test_a_named_but_unset_key_variable_fails_before_any_request(tmp_path):
    with FakeOpenAI(reply=lambda m: "x") as server:
        with pytest.raises(InvalidInputError) as info:
            LLMJudgeRun(spec(server, api_key={"env": "NOT_SET_ANYWHERE"}), str(tmp_path),
                        field="judges[2]", env={})
        assert server.requests == []
    assert info.value.field == "judges[2].api_key.env" and "NOT_SET_ANYWHERE" in str(info.value)


def test_the_redactor_replaces_the_secret_everywhere():
    assert Redactor("abc")("xabcyabc") == "x[redacted]y[redacted]"
    assert Redactor(None)("abc") == "abc"


def test_a_key_typed_into_the_judge_entry_is_refused():
    with pytest.raises(ValueError, match="never the key itself"):
        LLMJudge.model_validate({"kind": "llm", "name": "x", "base_url": "http://h/v1",
                                 "model": "m", "api_key": KEY})


def test_progress_is_reported_while_answers_are_judged(tmp_path):
    items = [(f"q{i}", f"answer {i}") for i in range(20)]
    calls = []
    with FakeOpenAI(reply=harmlessness_by_keyword) as server:
        LLMJudgeRun(spec(server, max_concurrency=2), str(tmp_path)).judge_answers(
            items, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 3 and calls[-1] == (20, 20)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_wrong_key_stops_the_judge_at_once_as_a_permanent_error(tmp_path):
    with FakeOpenAI(reply=harmlessness_by_keyword, expect_key="the-right-key") as server:
        judge = LLMJudgeRun(spec(server, api_key={"env": "K"}, max_concurrency=1),
                            str(tmp_path), env={"K": KEY})
        with pytest.raises(JudgeEndpointError, match="HTTP 401"):
            judge.judge_answers([(f"q{i}", f"a{i}") for i in range(10)])
        assert len(server.chat_requests()) < 10  # the rest were not sent
