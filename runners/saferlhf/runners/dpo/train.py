"""The offline preference stages, `dpo` and `safe_dpo`: train the policy directly on labelled
pairs against a frozen reference (losses in saferlhf.runners.dpo.loss).

No reward model, cost model, critic or sampling — two networks' worth of work where PPO-Lag
needs six. The reference log-probs log π_ref(y|x) of every pair are computed once, before
training, by the starting policy itself (or by `reference_path`); the reference model is then
never held beside the policy. That also makes LoRA simple (`lora:`, as in SFT): the adapter is
added after π_ref is fixed, so it can never leak into the reference, and `model/` is the adapter
folder over the starting policy (saferlhf.runners.common.adapters) that later stages load.

Training reuses the SFT / RM / CM loop (saferlhf.runners.common.train_loop): plain PyTorch or
DeepSpeed ZeRO 0–3, gradient accumulation, checkpoints and resume of all state (the reference
log-probs are recomputed on resume: they are a pure function of the data and π_ref), per-epoch
held-out evaluation. Outputs: `model/` (the policy, with its tokenizer), `result.json`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from saferlhf.runners.common import checkpoint as ckpt
from saferlhf.runners.common.adapters import is_adapter_folder
from saferlhf.runners.common.config import DPOConfig, SafeDPOConfig
from saferlhf.runners.common.dist import all_gather_cat, all_reduce_sum, get_rank, get_world_size
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.events import EventSink
from saferlhf.runners.common.models import effective_max_length, load_policy, save_model
from saferlhf.runners.common.optim import total_optimizer_steps
from saferlhf.runners.common.stage_data import eval_batches, train_eval_records
from saferlhf.runners.common.train_loop import build_engine, make_loader, run_training
from saferlhf.runners.common.train_setup import init_stage_distributed
from saferlhf.runners.dpo.loss import PreferenceLoss, dpo_loss, safe_dpo_loss, sequence_logprobs
from saferlhf.runners.dpo.pairs import PairCollator, PairSample, encode_pairs, order_pairs
from saferlhf.runners.dpo.pairs import with_reference as attach_reference
from torch import nn

log = logging.getLogger(__name__)

Config = DPOConfig | SafeDPOConfig


def pair_logprobs(module: nn.Module, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(ỹ_w|x), log π(ỹ_l|x)), each (B,), from one forward over both sides."""
    logits = module(input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"]).logits  # (2B, L, V)
    logp = sequence_logprobs(logits, batch["labels"])  # (2B,)
    b = logp.shape[0] // 2
    return logp[:b], logp[b:]


def objective(cfg: Config, batch: dict[str, torch.Tensor], chosen: torch.Tensor,
              rejected: torch.Tensor) -> PreferenceLoss:
    """The stage's loss on one batch of policy log-probs (B,) and the batch's reference ones."""
    if cfg.kind == "safe_dpo":
        return safe_dpo_loss(chosen, rejected, batch["reference_chosen"],
                             batch["reference_rejected"], batch["chosen_unsafe"],
                             batch["rejected_unsafe"], cfg.beta, cfg.safety_margin)
    return dpo_loss(chosen, rejected, batch["reference_chosen"], batch["reference_rejected"],
                    cfg.beta)


class PreferenceTask:
    def __init__(self, cfg: Config, collate: PairCollator, tokenizer,
                 lora_base: str | None = None) -> None:
        self.cfg, self.collate, self.tokenizer = cfg, collate, tokenizer
        self.lora_base = lora_base  # the folder a LoRA adapter is trained on

    def loss(self, module: nn.Module, batch: dict[str, torch.Tensor]):
        out = objective(self.cfg, batch, *pair_logprobs(module, batch))
        kept = out.kept
        n = out.count.clamp(min=1)
        return out.loss, {
            "train/reward_accuracy": out.reward_accuracy(),
            "train/reward_margin": out.reward_margin(),
            "train/reward_chosen": (out.chosen_rewards * kept).sum() / n,
            "train/reward_rejected": (out.rejected_rewards * kept).sum() / n,
        }

    def evaluate(self, module: nn.Module, samples: Sequence[PairSample]) -> dict[str, float]:
        """Held-out pairs: mean loss, implicit-reward accuracy and margin (exact over ranks)."""
        device = next(module.parameters()).device
        total = torch.zeros(4, dtype=torch.float64)  # loss sum, right, margin sum, count
        for batch, valid in eval_batches(samples, self.cfg.eval_batch_size, self.collate):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = objective(self.cfg, batch, *pair_logprobs(module, batch))
            use = out.kept & valid.to(device)  # (B,)
            margin = out.chosen_rewards - out.rejected_rewards  # (B,)
            right = use & (margin > 0)  # (B,)
            total += torch.tensor([float((out.losses * use).sum()), float(right.sum()),
                                   float((margin * use).sum()), float(use.sum())],
                                  dtype=torch.float64)
        total = all_reduce_sum(total)
        n = float(total[3].clamp(min=1))
        return {"eval/loss": float(total[0]) / n, "eval/reward_accuracy": float(total[1]) / n,
                "eval/reward_margin": float(total[2]) / n}

    def save(self, bare: nn.Module, out_dir: str, state_dict) -> None:
        if self.lora_base is None or self.cfg.lora is None:
            save_model(bare, self.tokenizer, out_dir, state_dict=state_dict)
            return
        from saferlhf.runners.common.adapters import save_adapter

        save_adapter(bare, self.tokenizer, out_dir, base=self.lora_base,
                     merged=self.cfg.lora.save_merged, state_dict=state_dict)


REFERENCE_LOG_EVERY_BATCHES = 200  # a log event now and then: a long pass is not a stall


@torch.no_grad()
def reference_logprobs(model: nn.Module, samples: Sequence[PairSample], collate: PairCollator,
                       batch_size: int, device: torch.device,
                       sink: EventSink | None = None) -> torch.Tensor:  # (N, 2)
    """log π_ref of both sides of every sample, [chosen, rejected] per row. Each rank scores its
    share (positions rank, rank + world, …) and the shares are gathered, so every rank ends with
    all N rows."""
    if not samples:
        return torch.zeros(0, 2)
    was_training = model.training
    model.eval()
    model.to(device)
    world, rank, n = get_world_size(), get_rank(), len(samples)
    positions = list(range(rank, n, world))
    values: list[torch.Tensor] = []
    n_batches = -(-len(positions) // batch_size)
    for i, start in enumerate(range(0, len(positions), batch_size)):
        if sink is not None and i % REFERENCE_LOG_EVERY_BATCHES == 0:
            sink.log(f"reference log-probs: batch {i + 1} of {n_batches} on this rank")
        chunk = positions[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([samples[p] for p in chunk]).items()}
        chosen, rejected = pair_logprobs(model, batch)
        values.append(torch.stack([chosen, rejected], 1).double().cpu())  # (b, 2)
    mine = torch.cat(values) if values else torch.zeros(0, 2, dtype=torch.float64)
    where = all_gather_cat(torch.tensor(positions, dtype=torch.float64))  # (N,)
    got = all_gather_cat(mine.reshape(-1)).reshape(-1, 2)  # (N, 2)
    out = torch.zeros(n, 2, dtype=torch.float64)
    out[where.long()] = got
    model.train(was_training)
    return out.float()


def starting_policy(cfg: Config) -> tuple[nn.Module, object, str | None]:
    """(model, tokenizer, LoRA base folder or None). A LoRA adapter needs a plain folder to
    name as its base: `policy_path` itself, or — when that is an adapter folder (a LoRA SFT
    model, loaded merged) — the merged model written once to `output_dir/base/`, which a
    retried attempt loads back."""
    base_dir = Path(cfg.output_dir) / "base"
    if cfg.lora is not None and (base_dir / "config.json").is_file():
        model, tokenizer = load_policy(base_dir, field="policy_path")
        return model, tokenizer, str(base_dir.resolve())
    model, tokenizer = load_policy(cfg.policy_path, field="policy_path")
    if cfg.lora is None:
        return model, tokenizer, None
    if not is_adapter_folder(cfg.policy_path):
        return model, tokenizer, cfg.policy_path
    from saferlhf.runners.common.adapters import save_base

    save_base(model, tokenizer, base_dir)
    return model, tokenizer, str(base_dir.resolve())


def trainable_policy(model: nn.Module, cfg: Config, sink: EventSink) -> nn.Module:
    """The module the optimizer trains: the policy, or with `lora:` the policy wrapped in LoRA
    adapters (B = 0, so training starts exactly at π_ref, whose log-probs are already fixed)."""
    if cfg.lora is None:
        return model
    from saferlhf.runners.common.lora import add_lora, describe

    model = add_lora(model, cfg.lora, field="lora.target_modules")
    sink.log(f"{cfg.kind}: {describe(model)}")
    return model


def _load_reference(cfg: Config, policy: nn.Module, tokenizer) -> tuple[nn.Module, bool]:
    """(π_ref, whether it is a separate model): the starting policy unless `reference_path`."""
    if cfg.reference_path in (None, cfg.policy_path):
        return policy, False
    reference, ref_tokenizer = load_policy(cfg.reference_path, field="reference_path")
    if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise InvalidInputError(
            f"the reference model's tokenizer differs from the policy's ({cfg.reference_path} "
            f"vs {cfg.policy_path}); the log-ratio needs one vocabulary", field="reference_path")
    return reference, True


def run(cfg: Config, local_rank: int | None = None) -> None:
    info = init_stage_distributed(cfg, local_rank)
    sink = EventSink(cfg.output_dir, enabled=info.is_rank0)
    train_records, eval_records = train_eval_records(cfg, cfg.record_kind)
    train_pairs, counts = order_pairs(train_records, cfg.kind)
    eval_pairs, _ = order_pairs(eval_records, cfg.kind)
    if not train_pairs:
        raise InvalidInputError(
            f"all {len(train_records)} training pairs have two unsafe responses, which SafeDPO "
            "drops (no safe response to prefer); add pairs with at least one safe response",
            field="data")
    ckpt.seed_everything(cfg.seed)
    model, tokenizer, lora_base = starting_policy(cfg)
    max_length = effective_max_length(cfg.max_length_tokens, model.config)
    train_samples = encode_pairs(train_pairs, tokenizer, max_length)
    eval_samples = encode_pairs(eval_pairs, tokenizer, max_length)
    sink.log(f"{cfg.kind}: {len(train_records)} pairs: {counts['keep']} kept, "
             f"{counts['swap']} swapped so the safe response wins, {counts['drop']} dropped as "
             f"both unsafe; training on {len(train_samples)}, {len(eval_samples)} held out")
    collate = PairCollator(tokenizer.pad_token_id)
    reference, separate = _load_reference(cfg, model, tokenizer)
    train_samples = attach_reference(train_samples, reference_logprobs(
        reference, train_samples, collate, cfg.eval_batch_size, info.device, sink))
    eval_samples = attach_reference(eval_samples, reference_logprobs(
        reference, eval_samples, collate, cfg.eval_batch_size, info.device))
    if separate:
        del reference
    loader = make_loader(train_samples, cfg.batch_size, collate, cfg.seed)
    gas = cfg.gradient_accumulation_steps
    total = total_optimizer_steps(len(loader) // gas * gas, cfg.epochs, gas, cfg.max_steps)
    engine = build_engine(trainable_policy(model, cfg, sink), cfg, cfg.optim, total, info)
    task = PreferenceTask(cfg, collate, tokenizer, lora_base)
    final = run_training(cfg, task, engine, loader, eval_samples, sink, total)
    final.update({"data/pairs": float(len(train_records)),
                  "data/pairs_kept": float(counts["keep"]),
                  "data/pairs_swapped": float(counts["swap"]),
                  "data/pairs_dropped": float(counts["drop"])})
    out = str(Path(cfg.output_dir) / "model")
    task.save(engine.bare, out, engine.full_state_dict())
    sink.artifact("model", out)
    sink.result(final)
    sink.close()
