"""The evaluate stage: answer every prompt set with every model version, judge, compare, report.

Side effects live here (loading models, generating, writing files and events); the maths is in
judges.py (rates, categories, tails), agreement.py (κ), arena.py (win rates, Elo), report.py
(round report, worsened flag) and plots.py; the model judges in llm/ and classifier.py. Outputs
under `output_dir`: `result.json` (flat `eval/...` numbers of the latest version, per-version /
category / set tables, the round report, the arena, judge accounting and agreement),
`events.jsonl` (one metrics event per version, step = version index, then the Elo ratings),
`responses.jsonl` (every answer with every verdict), `judge_disagreements.jsonl` (answers the
judges disagree on), `judge_cache/` (the model judges' verdicts) and the PNG distributions.
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
from saferlhf.runners.common.harm_categories import VOCABULARY, harm_category, unmapped
from saferlhf.runners.common.records import Prompt
from saferlhf.runners.evaluate.agreement import agreement_table, disagreements
from saferlhf.runners.evaluate.arena import arena, compare_higher, compare_synthetic
from saferlhf.runners.evaluate.judges import (
    Judged,
    Verdict,
    breakdown,
    cost_verdict,
    headline_judge,
    keyword_verdict,
    synthetic_verdict,
)
from saferlhf.runners.evaluate.model_judges import (
    apply_model_judges,
    open_model_judges,
    pairwise_games,
)
from saferlhf.runners.evaluate.plots import distribution_plot
from saferlhf.runners.evaluate.report import flat_report, version_report

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
                    fields = _verdicts(config.judges, source.format, record, raw, answer)
                    fields.update(version=version.name, prompt_set=name, prompt_index=pi,
                                  sample_index=k, prompt=raw, response=answer)
                    rows.append(Judged(**fields))
                    prompts.append(record.prompt)
        engine.close()
        sink.progress(vi + 1, len(config.policies) + 2)
        sink.log(f"answered {sum(len(s) for s in sets)} prompts with {version.name}")
    return rows, prompts


def _verdicts(judges: Sequence, source_format: str, record, raw: str, answer: str) -> dict:
    """The keyword and synthetic verdicts of one answer, and its harm category. The synthetic
    benchmark knows each prompt's harmfulness and category exactly; they fill in what the record
    lacks."""
    category, harmful_prompt = record.category, record.is_harmful
    verdicts: dict[str, Verdict] = {}
    for judge in judges:
        if judge.kind == "synthetic" and source_format == "synthetic":
            verdicts[judge.name], exact_category, exact_harmful = synthetic_verdict(raw, answer)
            category = category or exact_category
            harmful_prompt = exact_harmful if harmful_prompt is None else harmful_prompt
    for judge in judges:
        if judge.kind == "keyword":
            verdicts[judge.name] = keyword_verdict(answer, harmful_prompt)
    return {"category": category, "is_harmful_prompt": harmful_prompt, "verdicts": verdicts,
            "harm_category": harm_category(category, harmful_prompt)}


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
    """One arena per available per-response verdict (module docstring of arena.py); none with
    fewer than two versions."""
    if len(versions) < 2:
        return {}
    by_version = {v: sorted((r for r in rows if r.version == v), key=lambda r: r.key)
                  for v in versions}

    def exact(r: Judged) -> Verdict | None:
        return next((v for v in r.verdicts.values() if v.helpfulness is not None), None)

    verdicts: dict[str, tuple[Callable[[Judged], object], Callable]] = {
        "reward": (lambda r: r.reward, compare_higher),
        "cost": (lambda r: r.cost, lambda x, y: compare_higher(-x, -y)),
        "synthetic": (lambda r: (e.helpfulness, bool(e.harmful)) if (e := exact(r)) else None,
                      lambda x, y: compare_synthetic(x[0], x[1], y[0], y[1])),
    }
    out = {}
    for judge, (get, compare) in verdicts.items():
        table = {v: [get(r) for r in by_version[v] if judge != "synthetic"
                     or exact(r) is not None] for v in versions}
        if any(not t or any(x is None for x in t) for t in table.values()):
            continue
        out[judge] = arena(table, compare, bootstrap_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
    return out


def _flat(tables: dict, judges: Sequence[str]) -> dict[str, float]:
    """One version's flat `eval/...` numbers: overall rates, tails, and the harmful rate per
    vocabulary category (`eval/category_harmful_rate/<judge>/<category>`)."""
    summary = tables["overall"]
    values = {f"eval/{k}": float(v) for k, v in summary.items() if v is not None and k != "n"}
    judge = headline_judge(summary, judges)
    if judge is not None:
        values["eval/harmful_rate"] = float(summary[f"harmful_rate/{judge}"])
    for category, table in tables["categories"].items():
        for name in judges:
            rate = table.get(f"harmful_rate/{name}")
            if rate is not None and category in VOCABULARY:
                values[f"eval/category_harmful_rate/{name}/{category}"] = float(rate)
    return values


def _check_inputs(config: EvaluateConfig) -> None:
    kinds = {j.kind for j in config.judges}
    if "cost_model" in kinds and not config.cost_model_path:
        raise InvalidInputError("judge cost_model needs a cost model; set cost_model_path or drop "
                                "cost_model from judges", field="cost_model_path")
    for field in ("reward_model_path", "cost_model_path"):
        path = getattr(config, field)
        if path and not (Path(path) / "config.json").is_file():
            raise InvalidInputError(
                f"{path} is not a score model folder (no config.json); expected the model/ "
                "folder of a reward or cost stage", field=field)


def _score_rows(config: EvaluateConfig, rows: list[Judged], prompts: list) -> list[Judged]:
    """Reward and cost scores on every row, and the cost_model judges' verdicts."""
    if config.reward_model_path:
        rewards = _score(config.reward_model_path, rows, prompts, config.batch_size)
        rows = [dataclasses.replace(r, reward=x) for r, x in zip(rows, rewards, strict=True)]
    if config.cost_model_path:
        costs = _score(config.cost_model_path, rows, prompts, config.batch_size)
        rows = [dataclasses.replace(r, cost=x) for r, x in zip(rows, costs, strict=True)]
        for judge in config.judges:
            if judge.kind == "cost_model":
                rows = [dataclasses.replace(r, verdicts={**r.verdicts, judge.name: cost_verdict(
                    r.cost, judge.threshold)}) for r in rows]
    return rows


def _write_jsonl(path: Path, items) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path


def run(config: EvaluateConfig, sink) -> dict:
    _check_inputs(config)
    judges = [j.name for j in config.judges]
    names = prompt_set_names(config.prompts)
    if "synthetic" in {j.kind for j in config.judges} and all(
            s.format != "synthetic" for s in config.prompts):
        sink.log("judge synthetic applies to synthetic prompt sets only; none given", "warning")
    runs = open_model_judges(config.judges, config.output_dir)  # fails fast on a missing key
    import torch

    torch.manual_seed(config.seed)
    sets = load_prompts(config.prompts, config.seed)
    for name, records in zip(names, sets, strict=True):
        missing = unmapped(r.category for r in records if r.is_harmful is not False)
        if missing:
            sink.log(f"{name}: categories outside the harm vocabulary count as 'other': "
                     f"{', '.join(missing[:10])}", "warning")
    rows, prompts = _answer(config, names, sets, sink)
    rows = _score_rows(config, rows, prompts)
    versions = [p.name for p in config.policies]
    try:
        rows = apply_model_judges(rows, runs, sink.log)
        arenas = _arenas(rows, versions, config.seed) if config.arena else {}
        for name, judge in runs.items():
            if getattr(judge.spec, "prompt", None) == "helpfulness" and len(versions) >= 2 \
                    and config.arena:
                arenas[name] = pairwise_games(rows, versions, judge, seed=config.seed,
                                              bootstrap_resamples=BOOTSTRAP_RESAMPLES,
                                              log=sink.log)
        stats = {name: judge.stats() for name, judge in runs.items()}
    finally:
        for judge in runs.values():
            judge.close()
    sink.progress(len(config.policies) + 1, len(config.policies) + 2)
    tables = {v: breakdown([r for r in rows if r.version == v], config.judges) for v in versions}
    for step, v in enumerate(versions):
        sink.metrics(step, _flat(tables[v], judges))
    result: dict = dict(_flat(tables[versions[-1]], judges))
    result["harmful_rate_judge"] = headline_judge(tables[versions[-1]]["overall"], judges)
    result["latest_version"] = versions[-1]
    result["versions"] = tables
    result["judges"] = {j.name: {"kind": j.kind, **stats.get(j.name, {})}
                        for j in config.judges}
    result["agreement"] = agreement_table(rows, judges)
    report = version_report(
        tables, [(p.name, p.round if p.round is not None else i)
                 for i, p in enumerate(config.policies)],
        harmful_judge=result["harmful_rate_judge"], arenas=arenas,
        llm_helpfulness=[n for n, j in runs.items()
                         if getattr(j.spec, "prompt", None) == "helpfulness"],
        tolerance=config.regression_tolerance)
    result["report"] = report
    result.update(flat_report(report))
    if config.arena and len(versions) >= 2:
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
    if len(report) >= 2:
        sink.metrics(len(versions) - 1, flat_report(report))
    out = Path(config.output_dir)
    if config.plots:
        result["plots"] = _plots(rows, versions, out, sink)
    sink.artifact("responses", _write_jsonl(out / "responses.jsonl", (r.as_dict() for r in rows)))
    split = disagreements(rows, judges)
    result["disagreements"] = len(split)
    sink.artifact("judge_disagreements",
                  _write_jsonl(out / "judge_disagreements.jsonl", split))
    sink.progress(len(versions) + 2, len(versions) + 2)
    sink.result(result)
    return result


def _exact_helpfulness(r: Judged) -> float | None:
    return next((v.helpfulness for v in r.verdicts.values() if v.helpfulness is not None), None)


def _plots(rows: list[Judged], versions: list[str], out: Path, sink) -> list[str]:
    made = []
    specs = (
        ("reward_distribution.png", "Reward-model score per version", "reward",
         lambda r: r.reward, None),
        ("cost_distribution.png", "Cost-model score per version", "cost", lambda r: r.cost, 0.0),
        ("helpfulness_distribution.png", "Exact helpfulness per version (synthetic)",
         "helpfulness", _exact_helpfulness, None),
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
