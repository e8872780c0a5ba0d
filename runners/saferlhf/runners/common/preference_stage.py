"""What the reward and cost stages share: data → score model → training → saved model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.batching import PairCollator
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.common.models import effective_max_length, resolve_model_path
from saferlhf.runners.common.optim import total_optimizer_steps
from saferlhf.runners.common.stage_data import train_eval_records
from saferlhf.runners.common.train_loop import build_engine, make_loader, run_training
from saferlhf.runners.common.train_setup import init_stage_distributed


def load_score_backbone(cfg: Any, score_type: str):
    """(ScoreModel, tokenizer): from the SFT policy (reference) or, with `init_from: model`, from
    another local folder whose tokenizer may differ from the policy's (reference §5.1)."""
    from saferlhf.runners.common.score_model import ScoreModel
    from transformers import AutoTokenizer

    if cfg.init_from == "model":
        if cfg.model is None:
            raise InvalidInputError("init_from: model needs `model: {path: ...}`", field="model")
        path = resolve_model_path(cfg.model.path, cfg.model.revision, field="model.path")
    else:
        path = resolve_model_path(cfg.policy_path, field="policy_path")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        raise InvalidInputError(f"the tokenizer in {path} has no pad token", field="policy_path")
    tokenizer.padding_side = "right"
    return ScoreModel.from_policy(path, score_type=score_type), tokenizer


def run_preference_stage(cfg: Any, local_rank: int | None, *, kind: str,
                         encode: Callable, make_task: Callable) -> None:
    info = init_stage_distributed(cfg, local_rank)
    sink = EventSink(cfg.output_dir, enabled=info.is_rank0)
    train_records, eval_records = train_eval_records(cfg, kind)
    ckpt.seed_everything(cfg.seed)
    model, tokenizer = load_score_backbone(cfg, make_task.score_type)
    if cfg.lora is not None:  # saved merged by ScoreModel.save_pretrained
        from saferlhf.runners.common.lora import add_lora_to_score_model, describe

        model = add_lora_to_score_model(model, cfg.lora, field="lora.target_modules")
        sink.log(f"{cfg.kind}: {describe(model)}")
    max_length = effective_max_length(cfg.max_length_tokens, model.config)
    train_samples = encode(train_records, tokenizer, max_length)
    eval_samples = encode(eval_records, tokenizer, max_length)
    sink.log(f"{cfg.kind}: {len(train_samples)} training, {len(eval_samples)} held-out pairs")
    collate = PairCollator(tokenizer.pad_token_id)
    loader = make_loader(train_samples, cfg.batch_size, collate, cfg.seed)
    gas = cfg.gradient_accumulation_steps
    total = total_optimizer_steps(len(loader) // gas * gas, cfg.epochs, gas, cfg.max_steps)
    engine = build_engine(model, cfg, cfg.optim, total, info)
    task = make_task(cfg, collate, tokenizer)
    final = run_training(cfg, task, engine, loader, eval_samples, sink, total)
    out = str(Path(cfg.output_dir) / "model")
    task.save(engine.bare, out, engine.full_state_dict())
    sink.artifact("model", out)
    sink.result(final)
    sink.close()
