"""DPO and SafeDPO losses: pure functions of per-sequence log-probabilities (no model inside).

Notation: for a prompt x and a response y, ρ(y) = log π_θ(y|x) − log π_ref(y|x), the log-ratio of
the policy to the frozen reference, summed over the response tokens; β·ρ(y) is DPO's implicit
reward. σ is the logistic function.

DPO (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7), on pairs y_w ≻ y_l:
    L_DPO = −E[ log σ( β·ρ(y_w) − β·ρ(y_l) ) ]

SafeDPO (Kim et al., "SafeDPO: A Simple Approach to Direct Preference Optimization with Enhanced
Safety", arXiv:2505.20065, ICLR 2026 — the SafeDPO objective, §4): every pair also carries
per-response harm indicators h = 1 (unsafe) / 0 (safe). A safety-aware transformation T of the
data first reorders the pairs:
    h_w = 0            → (ỹ_w, ỹ_l) = (y_w, y_l)   kept as it is
    h_w = 1, h_l = 0   → (ỹ_w, ỹ_l) = (y_l, y_w)   swapped: the safe response becomes the winner
    h_w = 1, h_l = 1   → dropped                     (both unsafe: no safe response to prefer)
and then
    L_SafeDPO(θ; Δ) = −E_{T(D)}[ log σ( β·ρ(ỹ_w) − β·ρ(ỹ_l) − (h̃_l − h̃_w)·Δ ) ]
with the safety margin Δ ≥ 0, the method's one extra hyperparameter. After T every winner is
safe, so h̃_l − h̃_w is 1 for a safe-vs-unsafe pair and 0 for a safe-vs-safe pair: Δ only asks the
safe response to beat an unsafe one by a larger implicit-reward margin (the paper's Proposition
4.4: Δ leaves the optimal policy unchanged and speeds the move away from unsafe responses). With
every response safe, SafeDPO is exactly DPO.

Reduction (both losses): seq_mean — the mean of the per-pair losses over the pairs the objective
keeps (every pair for DPO). `PreferenceLoss` also carries the per-pair losses and the kept count,
so shards can SUM both, then divide (tested: split batches give the whole batch's loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

KEEP, SWAP, DROP = "keep", "swap", "drop"


def safe_dpo_order(winner_unsafe: bool, loser_unsafe: bool) -> str:
    """What the SafeDPO transformation T does with one pair: keep | swap | drop (module doc).
    The single rule both the data pipeline (records) and `safe_dpo_transform` (tensors) follow."""
    if not winner_unsafe:
        return KEEP
    return DROP if loser_unsafe else SWAP


def sequence_logprobs(
    logits: torch.Tensor,  # (B, L, V) next-token logits at each position
    labels: torch.Tensor,  # (B, L) input ids with prompt and padding = -100
) -> torch.Tensor:  # (B,)
    """log π(y|x) = Σ_t log π(y_t | x, y_<t) over the response tokens of each sequence (a token
    SUM, as DPO's likelihood ratio needs — not a mean). A row without response tokens gives 0."""
    shift_logits = logits[:, :-1, :].float()  # (B, L-1, V)
    shift_labels = labels[:, 1:]  # (B, L-1)
    mask = shift_labels != IGNORE_INDEX  # (B, L-1)
    safe_labels = shift_labels.masked_fill(~mask, 0)  # (B, L-1)
    token_logp = torch.gather(shift_logits.log_softmax(-1), 2,
                              safe_labels.unsqueeze(-1)).squeeze(-1)  # (B, L-1)
    return (token_logp * mask).sum(-1)  # (B,)


@dataclass(frozen=True)
class PreferenceLoss:
    """What a DPO-family loss gives: the reduced loss and its per-pair parts (for metrics)."""

    loss: torch.Tensor  # () seq_mean over kept pairs
    losses: torch.Tensor  # (B,) per-pair loss (0 where dropped)
    chosen_rewards: torch.Tensor  # (B,) β·ρ(ỹ_w), detached
    rejected_rewards: torch.Tensor  # (B,) β·ρ(ỹ_l), detached
    kept: torch.Tensor  # (B,) bool: pairs the objective trains on

    @property
    def count(self) -> torch.Tensor:  # () number of kept pairs
        return self.kept.sum()

    def reward_accuracy(self) -> torch.Tensor:
        """Share of kept pairs whose implicit reward ranks the winner first (0 when none)."""
        right = (self.chosen_rewards > self.rejected_rewards) & self.kept
        return right.sum() / self.count.clamp(min=1)

    def reward_margin(self) -> torch.Tensor:
        """Mean β·ρ(ỹ_w) − β·ρ(ỹ_l) over kept pairs."""
        diff = (self.chosen_rewards - self.rejected_rewards) * self.kept
        return diff.sum() / self.count.clamp(min=1)


def _reduced(losses: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """seq_mean over kept pairs; a batch with none kept gives 0 with a graph, not NaN."""
    return (losses * kept).sum() / kept.sum().clamp(min=1)


def dpo_loss(
    policy_chosen: torch.Tensor,  # (B,) log π_θ(y_w|x)
    policy_rejected: torch.Tensor,  # (B,) log π_θ(y_l|x)
    reference_chosen: torch.Tensor,  # (B,) log π_ref(y_w|x)
    reference_rejected: torch.Tensor,  # (B,) log π_ref(y_l|x)
    beta: float,
) -> PreferenceLoss:
    """L_DPO = mean_i −log σ(β·ρ_i(y_w) − β·ρ_i(y_l))  (seq_mean; module doc)."""
    chosen = beta * (policy_chosen - reference_chosen)  # (B,)
    rejected = beta * (policy_rejected - reference_rejected)  # (B,)
    losses = -F.logsigmoid(chosen - rejected)  # (B,)
    kept = torch.ones_like(losses, dtype=torch.bool)
    return PreferenceLoss(_reduced(losses, kept), losses, chosen.detach(), rejected.detach(),
                          kept)


def safe_dpo_transform(
    winner_unsafe: torch.Tensor,  # (B,) bool h_w
    loser_unsafe: torch.Tensor,  # (B,) bool h_l
) -> tuple[torch.Tensor, torch.Tensor]:
    """T as masks: (swap (B,) bool, kept (B,) bool) — swap where h_w = 1, h_l = 0; drop (not
    kept) where both are unsafe (`safe_dpo_order`)."""
    h_w, h_l = winner_unsafe.bool(), loser_unsafe.bool()
    return h_w & ~h_l, ~(h_w & h_l)


def safe_dpo_loss(
    policy_chosen: torch.Tensor,  # (B,) log π_θ(y_w|x), y_w the helpfulness winner
    policy_rejected: torch.Tensor,  # (B,) log π_θ(y_l|x)
    reference_chosen: torch.Tensor,  # (B,) log π_ref(y_w|x)
    reference_rejected: torch.Tensor,  # (B,) log π_ref(y_l|x)
    winner_unsafe: torch.Tensor,  # (B,) bool h_w
    loser_unsafe: torch.Tensor,  # (B,) bool h_l
    beta: float,
    safety_margin: float,
) -> PreferenceLoss:
    """L_SafeDPO(θ; Δ) on the untransformed pairs: applies T, then
    mean_{kept i} −log σ(β·ρ_i(ỹ_w) − β·ρ_i(ỹ_l) − (h̃_l − h̃_w)·Δ)  (seq_mean; module doc).

    The rewards in the result are those of the transformed pairs (ỹ_w, ỹ_l)."""
    if safety_margin < 0:
        raise ValueError(f"safety_margin Δ must be ≥ 0, got {safety_margin}")
    swap, kept = safe_dpo_transform(winner_unsafe, loser_unsafe)
    chosen = beta * (policy_chosen - reference_chosen)  # (B,) β·ρ(y_w)
    rejected = beta * (policy_rejected - reference_rejected)  # (B,) β·ρ(y_l)
    chosen, rejected = torch.where(swap, rejected, chosen), torch.where(swap, chosen, rejected)
    h_w = torch.where(swap, loser_unsafe, winner_unsafe).to(chosen.dtype)  # (B,) h̃_w
    h_l = torch.where(swap, winner_unsafe, loser_unsafe).to(chosen.dtype)  # (B,) h̃_l
    losses = -F.logsigmoid(chosen - rejected - (h_l - h_w) * safety_margin)  # (B,)
    losses = losses * kept  # (B,) dropped pairs contribute nothing
    return PreferenceLoss(_reduced(losses, kept), losses, chosen.detach(), rejected.detach(),
                          kept)
