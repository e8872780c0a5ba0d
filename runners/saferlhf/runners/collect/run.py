"""The collect stage of a round ≥ 2 (DESIGN §4, reference §9): sample, pair, label or export.

- `labeler: oracle` — label every pair with the synthetic benchmark's exact functions (optional
  noise) and write `labelled.jsonl` (PKU-SafeRLHF rows, loadable by the pku_saferlhf loader for
  both the reward and the cost model).
- `labeler: import` — write `export.jsonl` (PKU rows with an `id` and null labels),
  `labelstudio.json` (Label Studio import tasks) and `labelstudio_config.xml` (the matching
  labelling interface); the result says `awaiting_labels: true` and the stage exits 0. The
  planner sets `labels_path` to where the service will store the imported labels; while that file
  does not exist the stage exports, and once it exists (a re-run after ImportLabels) the stage
  validates and merges it into `labelled.jsonl` without sampling again. The service normally does
  that merge itself (`merge_labels`) when the labels are imported.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from saferlhf.runners.collect.labels import (
    LABEL_STUDIO_CONFIG,
    export_row,
    labelstudio_tasks,
    merge_labels,
    write_jsonl,
    write_labelled,
)
from saferlhf.runners.collect.sample import Pair, pair_samples, sample_responses
from saferlhf.runners.common.config import CollectConfig, DataSource
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.records import PromptOnly

log = logging.getLogger(__name__)

LABELLED = "labelled.jsonl"
EXPORT = "export.jsonl"
LABEL_STUDIO_TASKS = "labelstudio.json"
LABEL_STUDIO_XML = "labelstudio_config.xml"


def load_prompts(sources: list[DataSource], seed: int, *, field: str = "prompts"
                 ) -> list[list[PromptOnly]]:
    """Prompt-only records of each source (A's loaders)."""
    from saferlhf.runners.common.data import load_records

    sets = []
    for i, source in enumerate(sources):
        records = [r for r in load_records(source, "prompt_only", seed=seed)
                   if isinstance(r, PromptOnly)]
        if not records:
            raise InvalidInputError("the prompt set is empty", field=f"{field}[{i}]")
        sets.append(records)
    return sets


def _single_turn(records: list[PromptOnly]) -> list[PromptOnly]:
    kept = [r for r in records if isinstance(r.prompt, str)]
    if len(kept) < len(records):
        log.warning("skipped %d multi-turn prompts: PKU-SafeRLHF rows hold one prompt string",
                    len(records) - len(kept))
    return kept


def _import_labels(config: CollectConfig, sink) -> dict:
    out = Path(config.output_dir)
    labels_path = Path(config.labels_path or "")
    rows = merge_labels(out / EXPORT, labels_path.read_bytes(), labels_name=str(labels_path))
    path = write_labelled(rows, out / LABELLED)
    sink.artifact("labelled", path)
    result = {"awaiting_labels": False, "pairs": len(rows), "labeler": "import",
              "labelled_path": str(path)}
    sink.metrics(0, {"collect/pairs": len(rows)})
    sink.result(result)
    return result


def run(config: CollectConfig, sink) -> dict:
    """Run the stage; returns (and writes) the result."""
    out = Path(config.output_dir)
    if config.labeler == "import" and config.labels_path and Path(config.labels_path).is_file():
        return _import_labels(config, sink)
    if config.labeler == "oracle":
        for i, source in enumerate(config.prompts):
            if source.format != "synthetic":
                raise InvalidInputError(
                    f"labeler oracle labels with the synthetic benchmark's exact functions, so it "
                    f"needs synthetic prompts; prompts[{i}] has format {source.format!r} "
                    "(use labeler: import for people to label these)", field="labeler")
    records = [r for s in load_prompts(config.prompts, config.seed) for r in _single_turn(s)]
    if not records:
        raise InvalidInputError("no single-turn prompts to sample from", field="prompts")

    import torch
    from saferlhf.runners.common.rollout_engine.factory import policy_engine

    torch.manual_seed(config.seed)
    engine, tokenizer = policy_engine(config.rollout, config.policy_path, seed=config.seed)
    sink.log(f"sampling {config.samples_per_prompt} responses for {len(records)} prompts "
             f"({engine.name} engine)")
    prompts = [str(r.prompt) for r in records]
    try:
        responses = sample_responses(
            engine, tokenizer, prompts, samples_per_prompt=config.samples_per_prompt,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature,
            batch_size=config.batch_size, seed=config.seed,
        )
    finally:
        engine.close()
    pairs, dropped = pair_samples(prompts, responses)
    if not pairs:
        raise InvalidInputError(
            f"no usable pair: {dropped['identical']} sampled pairs were identical and "
            f"{dropped['empty']} had an empty response; raise temperature or samples_per_prompt",
            field="temperature")
    if dropped["empty"]:
        sink.log(f"collect: dropped {dropped['empty']} pairs with an empty response",
                 level="warning")
    sink.progress(1, 2)
    result: dict = {"pairs": len(pairs), "prompts": len(records),
                    "dropped_identical": dropped["identical"], "dropped_empty": dropped["empty"],
                    "labeler": config.labeler, "round": config.round}
    metrics: dict[str, float] = {"collect/pairs": len(pairs)}
    if config.labeler == "oracle":
        from saferlhf.runners.synthetic import judge

        rows = oracle_rows(pairs, records, round_=config.round, noise=config.label_noise,
                           seed=config.seed)
        path = write_labelled(rows, out / LABELLED)
        sink.artifact("labelled", path)
        verdicts = [judge(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs]
        harmful = sum(v.harmful for v in verdicts) / len(verdicts)
        metrics["collect/harmful_rate"] = harmful
        result.update({"awaiting_labels": False, "labelled_path": str(path),
                       "label_noise": config.label_noise, "collect/harmful_rate": harmful})
    else:
        rows = [
            export_row(_pair_id(config.round, n), p.prompt, p.response_0, p.response_1,
                       round=config.round, source=records[p.prompt_index].source,
                       source_row=records[p.prompt_index].row)
            for n, p in enumerate(pairs)
        ]
        export = write_jsonl(rows, out / EXPORT)
        tasks = out / LABEL_STUDIO_TASKS
        tasks.write_text(json.dumps(labelstudio_tasks(rows), indent=1, ensure_ascii=False))
        (out / LABEL_STUDIO_XML).write_text(LABEL_STUDIO_CONFIG)
        for name, path in (("export", export), ("labelstudio", tasks),
                           ("labelstudio_config", out / LABEL_STUDIO_XML)):
            sink.artifact(name, path)
        result.update({"awaiting_labels": True, "export_path": str(export),
                       "labelstudio_path": str(tasks)})
    sink.metrics(0, metrics)
    sink.progress(2, 2)
    sink.result(result)
    return result


def oracle_rows(pairs: list[Pair], records: list[PromptOnly], *, round_: int, noise: float,
                seed: int) -> list[dict]:
    """PKU rows labelled by the synthetic benchmark's exact functions
    (saferlhf.runners.synthetic.oracle),
    each with its pair id and where its prompt came from."""
    from saferlhf.runners.synthetic import oracle_label_pairs

    rng = random.Random(seed)
    rows = []
    for n, p in enumerate(pairs):
        record = records[p.prompt_index]
        labelled = oracle_label_pairs(p.prompt, p.response_0, p.response_1, noise, rng)
        rows.append({"id": _pair_id(round_, n), **labelled, "round": round_,
                     "source": record.source, "source_row": record.row})
    return rows


def _pair_id(round_: int, n: int) -> str:
    return f"r{round_}-{n:06d}"
