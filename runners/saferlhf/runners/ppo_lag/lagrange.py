"""The Lagrange multiplier of PPO-Lagrangian (reference §5.6).

λ = exp(log λ) is optimised by plain SGD on loss_λ = −(J_C − d)·exp(log λ), which gives

    log λ ← log λ + lr · (J_C − d) · λ,     then   log λ ← min(log λ, log λ_max)

J_C is the mean of each rank's episode-cost window, averaged over ranks (SUM then divide, so it
runs on gloo and NCCL alike); rank 0 steps and broadcasts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import torch


def lagrange_step(
    log_lambda: float, episode_cost: float, threshold: float, *, lr: float,
    lambda_max: float | None,
) -> float:
    """One SGD step on log λ (pure): log λ + lr·(J_C − d)·exp(log λ), clamped above at log λ_max.

    Golden: log λ = 0, lr = 0.1, J_C = 0.5, d = 0 → 0.05.
    """
    new = log_lambda + lr * (episode_cost - threshold) * math.exp(log_lambda)
    if lambda_max is not None:
        new = min(new, math.log(lambda_max))
    return new


class LagrangeMultiplier:
    """log λ as a torch parameter with its SGD optimizer (state a checkpoint can save)."""

    def __init__(self, lambda_init: float, lr: float, lambda_max: float | None) -> None:
        self.log_lambda = torch.nn.Parameter(torch.tensor(math.log(lambda_init)))
        self.optimizer = torch.optim.SGD([self.log_lambda], lr=lr)
        self.lambda_max = lambda_max

    @property
    def value(self) -> float:
        """λ as a detached Python float."""
        return float(self.log_lambda.detach().exp())

    def step(self, episode_cost: float, threshold: float) -> float:
        """Apply the update with autograd and the SGD optimizer; returns the new λ."""
        self.optimizer.zero_grad()
        loss = -(episode_cost - threshold) * self.log_lambda.exp()
        loss.backward()
        self.optimizer.step()
        if self.lambda_max is not None:
            with torch.no_grad():
                self.log_lambda.clamp_(max=math.log(self.lambda_max))
        return self.value

    def set_log_lambda(self, value: float) -> None:
        with torch.no_grad():
            self.log_lambda.fill_(value)

    def state_dict(self) -> dict:
        return {
            "log_lambda": float(self.log_lambda.detach()),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.set_log_lambda(float(state["log_lambda"]))
        self.optimizer.load_state_dict(state["optimizer"])


class EpisodeCostWindow:
    """The per-rank window of the last W sampled episode costs (reference §5.2)."""

    def __init__(self, size: int, values: Iterable[float] = ()) -> None:
        self.costs: deque[float] = deque(values, maxlen=size)

    def extend(self, costs: Iterable[float]) -> None:
        self.costs.extend(float(c) for c in costs)

    def local_mean(self) -> float:
        """Mean of this rank's window (0 for an empty window)."""
        return sum(self.costs) / len(self.costs) if self.costs else 0.0

    def __len__(self) -> int:
        return len(self.costs)


def mean_over_ranks(local_values: list[float]) -> float:
    """J_C = (1/W) Σ_r mean_r — the value `reduce_mean_scalar` computes across processes."""
    return sum(local_values) / len(local_values)


def reduce_mean_scalar(value: float) -> float:
    """All-reduce a Python float: SUM then divide by the world size (gloo and NCCL alike)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / dist.get_world_size()


def broadcast_scalar(value: float, src: int = 0) -> float:
    """Every rank gets rank `src`'s value (the reference broadcasts log λ from rank 0)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=src)
    return float(t.item())
