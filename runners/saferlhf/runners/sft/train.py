"""The SFT stage (reference §2): train a causal LM on prompt → response demonstrations.

For a builtin model the BPE tokenizer is trained on this stage's training texts (plus the synthetic
benchmark's dictionary when the data is synthetic, `tokenizer_lexicon`) and saved with the model,
so every later stage shares it. Held-out data (eval_data or eval_split_ratio) gives
`eval/loss` each epoch — the reference has no SFT eval; we add one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch
from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.batching import SupervisedCollator, encode_supervised
from saferlhf.runners.common.config import SFTConfig
from saferlhf.runners.common.data import tokenizer_lexicon
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.common.models import (
    build_policy,
    effective_max_length,
    is_builtin,
    load_policy,
    save_model,
)
from saferlhf.runners.common.optim import total_optimizer_steps
from saferlhf.runners.common.stage_data import eval_batches, train_eval_records
from saferlhf.runners.common.template import format_prompt, format_training_text
from saferlhf.runners.common.train_loop import build_engine, make_loader, run_training
from saferlhf.runners.common.train_setup import init_stage_distributed
from saferlhf.runners.sft.loss import sft_loss, sft_loss_terms
from torch import nn

log = logging.getLogger(__name__)


class SFTTask:
    def __init__(self, collate: SupervisedCollator, eval_batch_size: int, tokenizer,
                 lora_base: LoraBase | None = None, save_merged: bool = False) -> None:
        self.collate, self.eval_batch_size, self.tokenizer = collate, eval_batch_size, tokenizer
        self.lora_base, self.save_merged = lora_base, save_merged

    def loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        logits = module(input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"]).logits  # (B, L, V)
        return sft_loss(logits, batch["labels"]), {}

    def evaluate(self, module: nn.Module, samples: Sequence) -> dict[str, float]:
        from saferlhf.runners.common.dist import all_reduce_sum

        device = next(module.parameters()).device
        total = torch.zeros(2, dtype=torch.float64)
        for batch, valid in eval_batches(samples, self.eval_batch_size, self.collate):
            labels = batch["labels"].clone()
            labels[~valid] = -100
            logits = module(input_ids=batch["input_ids"].to(device),
                            attention_mask=batch["attention_mask"].to(device)).logits
            nll, count = sft_loss_terms(logits, labels.to(device))
            total += torch.tensor([float(nll), float(count)], dtype=torch.float64)
        total = all_reduce_sum(total)
        return {"eval/loss": float(total[0] / total[1].clamp(min=1))}

    def save(self, bare: nn.Module, out_dir: str, state_dict) -> None:
        if self.lora_base is None:
            save_model(bare, self.tokenizer, out_dir, state_dict=state_dict)
            return
        from saferlhf.runners.common.adapters import save_adapter

        save_adapter(bare, self.tokenizer, out_dir, base=self.lora_base.path,
                     revision=self.lora_base.revision, merged=self.save_merged,
                     state_dict=state_dict)


def tokenizer_texts(cfg: SFTConfig, train_records: Sequence) -> Iterable[str]:
    """What a builtin model's tokenizer is trained on: the training texts, plus the synthetic
    benchmark's dictionary when the data is synthetic. Nothing for a pretrained model."""
    if not is_builtin(cfg.model.path):
        return ()
    return chain((format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
                  for r in train_records), tokenizer_lexicon(cfg.data))


@dataclass(frozen=True)
class LoraBase:
    """What a LoRA SFT adapter is trained on: a folder (or a pinned hub id)."""

    path: str
    revision: str | None = None


def starting_policy(cfg: SFTConfig, train_records: Sequence):
    """(model, tokenizer, LoraBase | None). With LoRA the base needs a folder the adapter can
    name: the model's own folder, unless the model is built here (builtin) or its embeddings
    were resized for missing special tokens — then it is written to `output_dir/base/` first,
    and a retried attempt loads that same base back."""
    base_dir = Path(cfg.output_dir) / "base"
    if cfg.lora is not None and (base_dir / "config.json").is_file():
        model, tokenizer = load_policy(base_dir)
        return model, tokenizer, LoraBase(str(base_dir.resolve()))
    model, tokenizer = build_policy(cfg.model, tokenizer_texts(cfg, train_records))
    if cfg.lora is None:
        return model, tokenizer, None
    if not is_builtin(cfg.model.path) and not _embeddings_resized(cfg.model, model):
        return model, tokenizer, LoraBase(cfg.model.path, cfg.model.revision)
    from saferlhf.runners.common.adapters import save_base

    save_base(model, tokenizer, base_dir)
    return model, tokenizer, LoraBase(str(base_dir.resolve()))


def _embeddings_resized(spec, model: nn.Module) -> bool:
    from transformers import AutoConfig

    kwargs = {"revision": spec.revision} if spec.revision else {}
    original = AutoConfig.from_pretrained(spec.path, **kwargs)
    rows = model.get_input_embeddings().weight.shape[0]
    return rows != getattr(original, "vocab_size", rows)


def run(cfg: SFTConfig, local_rank: int | None = None) -> None:
    info = init_stage_distributed(cfg, local_rank)
    sink = EventSink(cfg.output_dir, enabled=info.is_rank0)
    train_records, eval_records = train_eval_records(cfg, "supervised")
    ckpt.seed_everything(cfg.seed)
    model, tokenizer, lora_base = starting_policy(cfg, train_records)
    if cfg.lora is not None:
        from saferlhf.runners.common.lora import add_lora, describe

        model = add_lora(model, cfg.lora, field="lora.target_modules")
        sink.log(f"sft: {describe(model)}")
    max_length = effective_max_length(cfg.max_length_tokens, model.config)
    train_samples = encode_supervised(train_records, tokenizer, max_length)
    eval_samples = encode_supervised(eval_records, tokenizer, max_length)
    sink.log(f"sft: {len(train_samples)} training, {len(eval_samples)} held-out samples")
    collate = SupervisedCollator(tokenizer.pad_token_id)
    loader = make_loader(train_samples, cfg.batch_size, collate, cfg.seed)
    total = total_optimizer_steps(len(loader) // cfg.gradient_accumulation_steps
                                  * cfg.gradient_accumulation_steps, cfg.epochs,
                                  cfg.gradient_accumulation_steps, cfg.max_steps)
    engine = build_engine(model, cfg, cfg.optim, total, info)
    task = SFTTask(collate, cfg.eval_batch_size, tokenizer, lora_base,
                   cfg.lora is not None and cfg.lora.save_merged)
    final = run_training(cfg, task, engine, loader, eval_samples, sink, total)
    out = str(Path(cfg.output_dir) / "model")
    task.save(engine.bare, out, engine.full_state_dict())
    sink.artifact("model", out)
    sink.result(final)
    sink.close()
