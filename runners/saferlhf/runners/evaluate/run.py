"""The evaluate stage: answer every prompt set with every model version, judge, compare, plot.

Side effects live here (loading models, generating, writing files and events); the maths is in
judges.py (rates), arena.py (win rates, Elo) and plots.py. Outputs under `output_dir`:
`result.json` (flat `eval/...` numbers of the latest version, per-version/set/category tables,
the arena), `events.jsonl` (one metrics event per version, step = version index, then the Elo
ratings), `responses.jsonl` (every answer with its verdicts) and the PNG distributions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from saferlhf.runners.collect.run import load_prompts
from saferlhf.runners.collect.sample import sample_responses
from saferlhf.runners.common.config import DataSource, EvaluateConfig
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import Prompt
from saferlhf.runners.evaluate.arena import arena, compare_higher, compare_synthetic
from saferlhf.runners.evaluate.judges import (
    JUDGES,
    Judged,
    breakdown,
    headline_judge,
    keyword_verdict,
    synthetic_verdict,
)
from saferlhf.runners.evaluate.plots import distribution_plot

log = logging.getLogger(__name__)
ARENA_ORDER = ("reward", "synthetic", "cost")  # the first available one gives eval/elo/<version>
BOOTSTRAP_RESAMPLES = 200  # Elo 95% intervals (resampling prompts × samples)


def prompt_set_names(sources: Sequence[DataSource]) -> list[str]:
    """Readable unique names: `<format>:<split or file stem>` (`#2`, `#3` for repeats)."""
    names: list[str] = []
    for s in sources:
        base = s.split or (Path(s.path).stem if s.path else s.hub) or str(len(names))
        name, n = f"{s.format}:{base}", 2
        while name in names:
            name, n = f"{s.format}:{base}#{n}", n + 1
        names.append(name)
    return names


def _last_user_turn(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]


def _answer(config: EvaluateConfig, names: list[str], sets, sink) -> tuple[list[Judged], list]:
    """Generate and judge (keyword, synthetic) every answer; returns rows and their prompts."""
    from saferlhf.runners.common.rollout_engine.factory import policy_engine

    judges: set[str] = set(config.judges)
    rows: list[Judged] = []
    prompts: list[Prompt] = []
    for vi, version in enumerate(config.policies):
        engine, tokenizer = policy_engine(config.rollout, version.path, seed=config.seed,
                                          field=f"policies[{vi}].path")
        for si, (name, source, records) in enumerate(zip(names, config.prompts, sets,
                                                         strict=True)):
            responses = sample_responses(
                engine, tokenizer, [r.prompt for r in records],
                samples_per_prompt=config.samples_per_prompt,
                max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                batch_size=config.batch_size, seed=config.seed + 10_007 * si,
            )
            for pi, (record, answers) in enumerate(zip(records, responses, strict=True)):
                raw = _last_user_turn(record.prompt)
                for k, answer in enumerate(answers):
                    fields = _verdicts(judges, source.format, record, raw, answer)
                    fields.update(version=version.name, prompt_set=name, prompt_index=pi,
                                  sample_index=k, prompt=raw, response=answer)
                    rows.append(Judged(**fields))
                    prompts.append(record.prompt)
        engine.close()
        sink.progress(vi + 1, len(config.policies) + 1)
        sink.log(f"answered {sum(len(s) for s in sets)} prompts with {version.name}")
    return rows, prompts


def _verdicts(judges: set[str], source_format: str, record, raw: str, answer: str) -> dict:
    """The keyword and synthetic verdicts of one answer. The synthetic benchmark knows each
    prompt's harmfulness and category exactly; they fill in what the record lacks."""
    fields: dict = {"category": record.category, "is_harmful_prompt": record.is_harmful}
    if "keyword" in judges:
        fields["refusal"] = keyword_verdict(answer)
    if "synthetic" in judges and source_format == "synthetic":
        exact = synthetic_verdict(raw, answer)
        category, harmful_prompt = exact.pop("category"), exact.pop("is_harmful_prompt")
        fields["category"] = fields["category"] or category
        if fields["is_harmful_prompt"] is None:
            fields["is_harmful_prompt"] = harmful_prompt
        fields.update(exact)
    return fields


def _score(path: str, rows: list[Judged], prompts: list[Prompt], batch_size: int) -> list[float]:
    """End scores of prompt + response texts under the score model at `path`."""
    from saferlhf.runners.common.score_model import ScoreModel, rescore
    from saferlhf.runners.common.template import format_prompt
    from transformers import AutoTokenizer

    model = ScoreModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    eos = tokenizer.eos_token or ""
    texts = [format_prompt(p, eos) + r.response for p, r in zip(prompts, rows, strict=True)]
    return [float(x) for x in rescore(texts, model, tokenizer, batch_size=batch_size)]


def _arenas(rows: list[Judged], versions: list[str], seed: int) -> dict:
    """One arena per available per-response verdict (module docstring of arena.py)."""
    by_version = {v: sorted((r for r in rows if r.version == v), key=lambda r: r.key)
                  for v in versions}
    verdicts: dict[str, tuple[Callable[[Judged], object], Callable]] = {
        "reward": (lambda r: r.reward, compare_higher),
        "cost": (lambda r: r.cost, lambda x, y: compare_higher(-x, -y)),
        "synthetic": (lambda r: (r.synthetic_helpfulness, r.synthetic_harmful),
                      lambda x, y: compare_synthetic(x[0], x[1], y[0], y[1])),
    }
    out = {}
    for judge, (get, compare) in verdicts.items():
        table = {v: [get(r) for r in by_version[v] if r.synthetic_helpfulness is not None
                     or judge != "synthetic"] for v in versions}
        if any(not t or any(x is None for x in t) for t in table.values()):
            continue
        out[judge] = arena(table, compare, bootstrap_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return out


def _flat(summary: dict, judges: Sequence[str]) -> dict[str, float]:
    values = {f"eval/{k}": float(v) for k, v in summary.items() if v is not None and k != "n"}
    judge = headline_judge(summary, judges)
    if judge is not None:
        values["eval/harmful_rate"] = float(summary[f"harmful_rate/{judge}"])
    return values


def run(config: EvaluateConfig, sink) -> dict:
    judges = list(dict.fromkeys(config.judges))
    if "cost_model" in judges and not config.cost_model_path:
        raise InvalidInputError("judge cost_model needs a cost model; set cost_model_path or drop "
                                "cost_model from judges", field="cost_model_path")
    for field in ("reward_model_path", "cost_model_path"):
        path = getattr(config, field)
        if path and not (Path(path) / "config.json").is_file():
            raise InvalidInputError(
                f"{path} is not a score model folder (no config.json); expected the model/ "
                "folder of a reward or cost stage", field=field)
    names = prompt_set_names(config.prompts)
    if "synthetic" in judges and all(s.format != "synthetic" for s in config.prompts):
        sink.log("judge synthetic applies to synthetic prompt sets only; none given", "warning")
    import torch

    torch.manual_seed(config.seed)
    sets = load_prompts(config.prompts, config.seed)
    rows, prompts = _answer(config, names, sets, sink)
    if config.reward_model_path:
        rewards = _score(config.reward_model_path, rows, prompts, config.batch_size)
        rows = [dataclasses.replace(r, reward=x) for r, x in zip(rows, rewards, strict=True)]
    if config.cost_model_path:
        costs = _score(config.cost_model_path, rows, prompts, config.batch_size)
        rows = [dataclasses.replace(r, cost=x) for r, x in zip(rows, costs, strict=True)]
    order = [j for j in judges if j in JUDGES]
    versions = [p.name for p in config.policies]
    tables = {v: breakdown([r for r in rows if r.version == v]) for v in versions}
    for step, v in enumerate(versions):
        sink.metrics(step, _flat(tables[v]["overall"], order))
    result: dict = dict(_flat(tables[versions[-1]]["overall"], order))
    result["harmful_rate_judge"] = headline_judge(tables[versions[-1]]["overall"], order)
    result["latest_version"] = versions[-1]
    result["versions"] = tables
    if config.arena and len(versions) >= 2:
        arenas = _arenas(rows, versions, config.seed)
        result["arena"] = arenas
        elo_values: dict[str, float] = {}
        for judge, table in arenas.items():
            for v, rating in table["elo"].items():
                elo_values[f"eval/elo/{judge}/{v}"] = rating
        headline = next((j for j in ARENA_ORDER if j in arenas), None)
        if headline is not None:
            result["elo_judge"] = headline
            for v, rating in arenas[headline]["elo"].items():
                elo_values[f"eval/elo/{v}"] = rating
        result.update(elo_values)
        if elo_values:
            sink.metrics(len(versions) - 1, elo_values)
    out = Path(config.output_dir)
    if config.plots:
        result["plots"] = _plots(rows, versions, out, sink)
    responses = out / "responses.jsonl"
    with responses.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n")
    sink.artifact("responses", responses)
    sink.progress(len(versions) + 1, len(versions) + 1)
    sink.result(result)
    return result


def _plots(rows: list[Judged], versions: list[str], out: Path, sink) -> list[str]:
    made = []
    specs = (
        ("reward_distribution.png", "Reward-model score per version", "reward",
         lambda r: r.reward, None),
        ("cost_distribution.png", "Cost-model score per version", "cost", lambda r: r.cost, 0.0),
        ("helpfulness_distribution.png", "Exact helpfulness per version (synthetic)",
         "helpfulness", lambda r: r.synthetic_helpfulness, None),
    )
    for filename, title, xlabel, get, threshold in specs:
        scores = {v: [get(r) for r in rows if r.version == v and get(r) is not None]
                  for v in versions}
        path = distribution_plot(scores, title=title, xlabel=xlabel, path=out / filename,
                                 threshold=threshold)
        if path is not None:
            sink.artifact(filename.removesuffix(".png"), path)
            made.append(str(path))
    return made
